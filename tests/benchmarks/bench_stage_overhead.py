"""The fixed cost of a training stage, before and after, measured in the same run.

A script, not a test (pytest collects only test_*.py): run from anywhere,
    python tests/benchmarks/bench_stage_overhead.py --repeats 5
It makes two tiny projects in a temporary folder that share one prepared `shapes` data set (300
images, raw pixels): one holds this checkout's code, the other the code of `--before` (a git ref;
default: the commit this work started from), taken with `git archive`. In each it runs
`python -m pipeline.train softmax pixels` (one epoch on 270 images: the training itself is a few
hundredths of a second, so the stage's time is its fixed cost: imports, MLflow store and run set-up,
figures, model logging, shutdown). Each project's first run creates its MLflow store and is not
counted; then the two alternate for --repeats rounds. It prints the medians of wall time and of CPU
time (user + system of the stage process: steadier than wall time on a shared machine) and their ratios.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
CODE = ["pipeline", "features", "models", "experiments", "pyproject.toml", "dvc.yaml"]
BASE_COMMIT = "fa7d417ff511"  # main when the stage overhead work (issue #16) began
STAGE = ["-m", "pipeline.train", "softmax", "pixels"]


def tiny_params(ref: str | None) -> dict:
    """The params.yaml of `ref` (None: this checkout), shrunk: each code refuses keys it does not know."""
    text = (REPOSITORY / "params.yaml").read_text() if ref is None else subprocess.run(
        ["git", "-C", str(REPOSITORY), "show", f"{ref}:params.yaml"], capture_output=True, text=True, check=True).stdout
    params = yaml.safe_load(text)
    params["data"]["shapes"] = {"n_train": 300, "n_test": 100}
    params["linear"].update(learning_rates=[0.01], reg_strengths=[0.0001], epochs=1, overrides={})
    return params


def checkout(ref: str | None, project: Path) -> None:
    """This checkout's code (ref None) or that of a git ref, copied into `project`."""
    project.mkdir(parents=True)
    if ref is None:
        for name in CODE:
            source = REPOSITORY / name
            copy = shutil.copytree if source.is_dir() else shutil.copy
            copy(source, project / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    else:
        archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", ref, *CODE], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(ref), sort_keys=False))


def environment(project: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "FEATUREBENCH_RUN_GROUP")}
    env["PYTHONPATH"] = str(project)
    return env


def run(project: Path, arguments: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python ARGUMENTS` in `project`; fails loudly if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *arguments], cwd=project, env=environment(project), capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed in {project}:\n{result.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BASE_COMMIT, help="git ref of the code to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stage-overhead-") as scratch:
        projects = {"before": Path(scratch) / "before", "after": Path(scratch) / "after"}
        checkout(args.before, projects["before"])
        checkout(None, projects["after"])
        run(projects["after"], ["-m", "pipeline.prepare"])
        run(projects["after"], ["-m", "pipeline.extract", "pixels"])
        for outputs in ("data", "results"):  # what prepare and extract wrote
            shutil.copytree(projects["after"] / outputs, projects["before"] / outputs)
        for project in projects.values():
            run(project, STAGE)  # creates the MLflow store: a one-off, not the per-stage cost
        times = {name: [] for name in projects}
        for round_ in range(args.repeats):
            for name, project in projects.items():
                times[name].append(run(project, STAGE))
                print(f"round {round_ + 1} {name:6s} wall {times[name][-1][0]:6.2f} s  cpu {times[name][-1][1]:6.2f} s", flush=True)
    medians = {name: (statistics.median(t[0] for t in runs), statistics.median(t[1] for t in runs)) for name, runs in times.items()}
    print(f"\nfixed cost of `python {' '.join(STAGE)}` on 270 train images, medians of {args.repeats} runs each:")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:6s} ({args.before if name == 'before' else 'this checkout'}): wall {wall:6.2f} s, cpu {cpu:6.2f} s")
    (wall_before, cpu_before), (wall_after, cpu_after) = medians["before"], medians["after"]
    print(f"  before / after: wall {wall_before / wall_after:.2f}x, cpu {cpu_before / cpu_after:.2f}x")


if __name__ == "__main__":
    main()
