"""Peak memory and speed of each stage as the data set grows: does memory stay flat from 20k to 200k images?

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_scale.py --sizes 20000 100000 200000
For each size it builds a project folder (params.yaml of the repository with data.shapes.n_train = size,
n_test = size / 5, extractors pixels and hog, softmax on both and an MLP on pixels, one epoch, one
setting, no refit) and runs every stage module (`python -m pipeline.prepare`, `extract`, `train`) under
`/usr/bin/time -f %M`, printing each stage's peak resident memory and images per second. The MLflow
store is a SQLite file in the project folder; the folders are left under --work for inspection.

    python tests/benchmarks/bench_scale.py --dvc --sizes 20000 200000
runs the same params as one `dvc repro` of the whole pipeline (prepare, extract pixels and hog, the two
softmax stages, the MLP, compare) in a new git + DVC repository per size, under `/usr/bin/time -f %M`,
whose figure is the largest process of the tree (wait4's maximum over the waited-for descendants):
issue #14's measure. Mirrored rows are not extracted there (extract.mirror: false): they double the time
and change no stage's memory.

    python tests/benchmarks/bench_scale.py --layout 200000
times the two on-disk layouts the data layer could use for N 32x32 images: one `.npy` per split
written through open_memmap (what pipeline/artifacts.py does) against 10k-image `.npy` shards, for a
sequential pass and for random 256-image minibatches.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

SCALE_PARAMS = {
    "extractors": {"pixels": {}, "hog": {"orientations": 9, "pixels_per_cell": 4, "cells_per_block": 2, "block_norm": "L2-Hys", "color": True}},
    "linear": {"classifiers": ["softmax"], "feature_sets": ["pixels", "hog"], "learning_rates": [0.001], "reg_strengths": [0.0001], "epochs": 1, "refit": False, "budget": 1, "overrides": {}},
    "mlp": {"feature_sets": ["pixels"], "hidden_sizes": [1024], "learning_rates": [0.01], "reg_strengths": [0.0001], "epochs": 1, "refit": False, "budget": 1, "overrides": {}},
}


def project_params(n_train: int) -> dict:
    params = yaml.safe_load((REPOSITORY / "params.yaml").read_text())
    params["data"].update(name="shapes", path=None)
    params["data"]["shapes"] = {"n_train": n_train, "n_test": max(n_train // 5, 10)}
    params["extractors"] = SCALE_PARAMS["extractors"]
    params["linear"].update(SCALE_PARAMS["linear"])
    params["mlp"].update(SCALE_PARAMS["mlp"])
    return params


def run_stage(command: list[str], project: Path, env: dict) -> tuple[int, float]:
    """(peak RSS in MB, wall seconds) of one stage process, measured by /usr/bin/time."""
    report = project / "time.txt"
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-m", *command], cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return int(report.read_text().split()[-1]) // 1024, seconds


def images_through(project: Path, stage: list[str]) -> int:
    """Images a stage handled: prepare writes every split; extract reads them and the mirrored train and val;
    training passes over the train rows once (one epoch), plus its val and test scoring."""
    counts = json.loads((project / "data/prepared/meta.json").read_text())["counts"]
    n = {split: sum(counts[split]) for split in counts}
    if stage[0] == "pipeline.prepare":
        return n["train"] + n["val"] + n["test"]
    mirrored = n["train"] + n["val"] if stage[0] == "pipeline.extract" or stage[2] != "pixels" else 0
    return n["train"] + n["val"] + n["test"] + mirrored


def work_rate(project: Path, stage: list[str]) -> float | None:
    """Images per second of the stage's own work, without interpreter start and imports: extract's
    transform rate from its metrics file, training's rows per second of search (one epoch plus scoring)."""
    if stage[0] == "pipeline.extract":
        return json.loads((project / f"results/extract/{stage[1]}.json").read_text())["images_per_second"]
    if stage[0] == "pipeline.train":
        metrics = json.loads((project / f"results/train/{stage[1]}-{stage[2]}/metrics.json").read_text())
        return images_through(project, stage) / max(metrics["search_seconds"], 1e-9)
    return None


def bench_size(n_train: int, work: Path) -> list[dict]:
    project = work / f"shapes-{n_train}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    (project / "params.yaml").write_text(yaml.safe_dump(project_params(n_train)))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "TQDM_DISABLE": "1"}
    stages = [
        ["pipeline.prepare"],
        ["pipeline.extract", "pixels"],
        ["pipeline.extract", "hog"],
        ["pipeline.train", "softmax", "pixels"],
        ["pipeline.train", "softmax", "hog"],
        ["pipeline.train", "mlp", "pixels"],
    ]
    rows = []
    for stage in stages:
        peak_mb, seconds = run_stage(stage, project, env)
        images = images_through(project, stage)
        rate = work_rate(project, stage)
        row = {
            "n_train": n_train,
            "stage": " ".join(stage[1:] if stage[0] != "pipeline.prepare" else ["prepare"]),
            "peak_rss_mb": peak_mb,
            "seconds": round(seconds, 1),
            "images_per_second": round(images / seconds),  # the whole process, start-up included
            "work_images_per_second": round(rate) if rate else None,  # the stage's own work
        }
        print(
            f"{row['n_train']:>8} {row['stage']:<16} {row['peak_rss_mb']:>6} MB {row['seconds']:>8.1f} s "
            f"{row['images_per_second']:>7} images/s (work alone: {row['work_images_per_second'] or '-'})",
            flush=True,
        )
        rows.append(row)
    return rows


def bench_dvc(n_train: int, work: Path) -> dict:
    """One `dvc repro` of the pipeline on n_train shapes images: the largest process's peak RSS and the wall time."""
    from tests.pipeline.conftest import make_project  # the tests' own project set-up: git, DVC, plot templates

    project = work / f"dvc-shapes-{n_train}"
    shutil.rmtree(project, ignore_errors=True)
    params = project_params(n_train)
    params["extract"]["mirror"] = False
    _, env = make_project(project, params)
    env["TQDM_DISABLE"] = "1"
    report = project / "time.txt"
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), "dvc", "repro"], cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"dvc repro failed at {n_train}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    n_images = n_train + max(n_train // 5, 10)
    row = {"n_train": n_train, "stage": "dvc repro", "peak_rss_mb": int(report.read_text().split()[-1]) // 1024,
           "seconds": round(seconds, 1), "images_per_second": round(n_images / seconds)}
    print(f"{n_train:>8} dvc repro (all stages) {row['peak_rss_mb']:>6} MB largest process {seconds:>8.1f} s "
          f"{row['images_per_second']:>7} images/s of the data set", flush=True)
    return row


def bench_layout(n_images: int, shard_size: int = 10000, steps: int = 200, batch: int = 256) -> None:
    """One .npy per split vs shards: write, sequential read, random minibatch read (seconds)."""
    from pipeline.artifacts import MappedRows, NpyWriter

    images = np.random.default_rng(0).integers(0, 256, (shard_size, 32, 32, 3), dtype=np.uint8)  # one shard's worth, reused
    rng = np.random.default_rng(1)
    minibatches = [np.sort(rng.choice(n_images, batch, replace=False)) for _ in range(steps)]
    with tempfile.TemporaryDirectory(dir=REPOSITORY) as scratch:
        scratch = Path(scratch)
        start = time.perf_counter()
        with NpyWriter(scratch / "split.npy", n_images, (32, 32, 3), np.uint8) as writer:
            for _ in range(0, n_images, shard_size):
                writer.write(images)
        one_write = time.perf_counter() - start
        start = time.perf_counter()
        for index in range(0, n_images, shard_size):
            np.save(scratch / f"shard-{index // shard_size:05d}.npy", images)
        shard_write = time.perf_counter() - start

        mapped = MappedRows(scratch / "split.npy")
        start = time.perf_counter()
        for _ in mapped.batches(shard_size):
            pass
        one_pass = time.perf_counter() - start
        start = time.perf_counter()
        for path in sorted(scratch.glob("shard-*.npy")):
            np.load(path)
        shard_pass = time.perf_counter() - start

        start = time.perf_counter()
        for indices in minibatches:
            mapped.rows(indices)
        one_random = time.perf_counter() - start
        shards = [MappedRows(path) for path in sorted(scratch.glob("shard-*.npy"))]
        start = time.perf_counter()
        for indices in minibatches:
            which = indices // shard_size
            np.concatenate([shards[shard].rows(indices[which == shard] - shard * shard_size) for shard in np.unique(which)])
        shard_random = time.perf_counter() - start
    print(f"{n_images} images 32x32: {'':<14} one .npy   {shard_size // 1000}k shards")
    print(f"  write                     {one_write:8.2f} s {shard_write:8.2f} s")
    print(f"  sequential read           {one_pass:8.2f} s {shard_pass:8.2f} s")
    print(f"  {steps} random {batch}-batches    {one_random:8.2f} s {shard_random:8.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000, 200000], help="data.shapes.n_train values")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featurebench-scale")
    parser.add_argument("--layout", type=int, default=None, help="time the two layouts on this many images instead")
    parser.add_argument("--dvc", action="store_true", help="one `dvc repro` per size instead of each stage module")
    args = parser.parse_args()
    if args.layout:
        bench_layout(args.layout)
        return
    rows = []
    for n_train in args.sizes:
        rows += [bench_dvc(n_train, args.work)] if args.dvc else bench_size(n_train, args.work)
    peaks = {}
    for row in rows:
        peaks.setdefault(row["stage"], []).append(row["peak_rss_mb"])
    print("\nlargest / smallest peak RSS per stage:", {stage: round(max(values) / min(values), 2) for stage, values in peaks.items()})
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
