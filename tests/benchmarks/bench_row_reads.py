"""Training's minibatch reads from disk against rows held in memory (pipeline.artifacts.hold_rows).

    python tests/benchmarks/bench_row_reads.py                      # CIFAR-10's HoG shape: 45,000 rows x 1,764, and their mirrored rows
    python tests/benchmarks/bench_row_reads.py --rows 45000 --dim 6400

Writes a train file and a mirrored one of random float32 rows, then times, in the same run, (1) 300 reads
of 256 rows at random positions and (2) one epoch of a linear softmax classifier (models.training.train)
over both files, batch 256, each read from the memory-mapped files and from rows held in memory (median
of --repeats after one warm-up), and prints the ratios. The values read are the same either way (checked).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLP, MLPConfig  # noqa: E402
from models.precision import median_seconds  # noqa: E402
from models.training import TrainConfig, train  # noqa: E402
from pipeline.artifacts import AppendedRows, MappedRows, NpyWriter, StandardizedRows, hold_rows, release_rows  # noqa: E402


def write(path: Path, rows: int, dim: int, seed: int) -> MappedRows:
    rng = np.random.default_rng(seed)
    with NpyWriter(path, rows, (dim,), np.float32) as writer:
        for start in range(0, rows, 5000):
            writer.write(rng.random((min(5000, rows - start), dim), dtype=np.float32))
    return MappedRows(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=45000)
    parser.add_argument("--dim", type=int, default=1764)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        parts = [write(Path(folder) / f"{name}.npy", args.rows, args.dim, seed) for seed, name in enumerate(("train", "train_mirrored"))]
        source = StandardizedRows(AppendedRows(parts), np.zeros(args.dim), np.ones(args.dim))
        labels = torch.from_numpy(np.random.default_rng(2).integers(0, 10, len(source)))
        batches = [np.random.default_rng(3).choice(len(source), 256, replace=False) for _ in range(300)]
        config = TrainConfig(loss="softmax", learning_rate=0.001, epochs=1, batch_size=256, precision="fp32")

        def reads():
            for batch in batches:
                source.rows(batch)

        def epoch():
            train(MLP(MLPConfig(args.dim, 10, [])), config, source, labels, source, labels[:0], torch.device("cpu"), progress=False)

        expected = source.rows(batches[0])
        results = {"disk": (median_seconds(reads, args.repeats), median_seconds(epoch, args.repeats))}
        held = hold_rows([source], budget=10**12)
        assert np.array_equal(source.rows(batches[0]), expected)
        results["memory"] = (median_seconds(reads, args.repeats), median_seconds(epoch, args.repeats))
        release_rows()
    print(f"{args.rows:,} rows x {args.dim:,} float32, twice (train and mirrored); {held / 2**20:,.0f} MB held; median of {args.repeats}")
    for where, (read_seconds, epoch_seconds) in results.items():
        print(f"  from {where:<6}: 256 random rows {read_seconds / len(batches) * 1000:6.2f} ms, one epoch {epoch_seconds:6.2f} s")
    disk, memory = results["disk"], results["memory"]
    print(f"  held in memory: reads {disk[0] / memory[0]:.1f}x faster, an epoch {disk[1] / memory[1]:.1f}x faster")


if __name__ == "__main__":
    main()
