"""Training's minibatch reads: positioned reads from disk, a memory map per read, rows held in memory.

    python tests/benchmarks/bench_row_reads.py                      # CIFAR-10's HoG shape: 45,000 rows x 1,764, and their mirrored rows
    python tests/benchmarks/bench_row_reads.py --rows 45000 --dim 6400

Writes a train file and a mirrored one of random float32 rows, then times, in the same run, (1) 300 reads
of 256 rows at random positions and (2) one epoch of a linear softmax classifier (models.training.train)
over both files, batch 256, each read four ways (median of --repeats after one warm-up): from disk as the
data layer reads (pipeline.artifacts.MappedRows: one os.preadv per row, straight into one output array
for both files), from disk through a fresh np.memmap per read (the data layer's first design, kept here
as the baseline), from disk as the data layer read before a9fc3af (each file's rows into an array of
their own, copied into the output, concatenated again as a feature set), and from rows held in memory
(hold_rows); prints the ratios. The values read are the same every way (checked).
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
from pipeline.artifacts import AppendedRows, ColumnConcatenation, MappedRows, NpyWriter, StandardizedRows, hold_rows, release_rows  # noqa: E402


class MemoryMappedRows(MappedRows):
    """The baseline: every read maps the file, gathers the rows in file order, unmaps."""

    def _read(self, indices: np.ndarray) -> np.ndarray:
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        out[order] = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)[indices[order]]
        return out


class CopiedAppendedRows(AppendedRows):
    """The reader before a9fc3af: each file's rows into an array of their own, then copied into the output."""

    def rows(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        out = None
        for index, part in enumerate(self.parts):
            chosen = np.flatnonzero(which == index)
            if len(chosen):
                rows = part.rows(indices[chosen] - self.starts[index])
                out = np.empty((len(indices), *rows.shape[1:]), rows.dtype) if out is None else out
                out[chosen] = rows
        return out


class CopiedConcatenation(ColumnConcatenation):
    """The feature set before a9fc3af: its members' rows concatenated, one member or several."""

    def rows(self, indices) -> np.ndarray:
        return np.concatenate([part.rows(indices) for part in self.parts], axis=1)


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
        mapped = StandardizedRows(AppendedRows([MemoryMappedRows(part.path) for part in parts]), np.zeros(args.dim), np.ones(args.dim))
        # as a training stage reads a one-member feature set and its mirrored rows
        source = StandardizedRows(AppendedRows([ColumnConcatenation([part]) for part in parts]), np.zeros(args.dim), np.ones(args.dim))
        copied = StandardizedRows(CopiedAppendedRows([CopiedConcatenation([part]) for part in parts]), np.zeros(args.dim), np.ones(args.dim))
        labels = torch.from_numpy(np.random.default_rng(2).integers(0, 10, len(source)))
        batches = [np.random.default_rng(3).choice(len(source), 256, replace=False) for _ in range(300)]
        config = TrainConfig(loss="softmax", learning_rate=0.001, epochs=1, batch_size=256, precision="fp32")

        def timed(rows) -> tuple[float, float]:
            def reads():
                for batch in batches:
                    rows.rows(batch)

            def epoch():
                train(MLP(MLPConfig(args.dim, 10, [])), config, rows, labels, rows, labels[:0], torch.device("cpu"), progress=False)

            return median_seconds(reads, args.repeats), median_seconds(epoch, args.repeats)

        expected = mapped.rows(batches[0])
        assert np.array_equal(source.rows(batches[0]), expected)
        assert np.array_equal(copied.rows(batches[0]), expected)
        results = {"memory map": timed(mapped), "disk, copied": timed(copied), "disk": timed(source)}
        held = hold_rows([source], budget=10**12)
        assert np.array_equal(source.rows(batches[0]), expected)
        results["memory"] = timed(source)
        release_rows()
    print(f"{args.rows:,} rows x {args.dim:,} float32, twice (train and mirrored); {held / 2**20:,.0f} MB held; median of {args.repeats}")
    for where, (read_seconds, epoch_seconds) in results.items():
        print(f"  from {where:<12}: 256 random rows {read_seconds / len(batches) * 1000:6.2f} ms, one epoch {epoch_seconds:6.2f} s")
    baseline, copied, disk, memory = results["memory map"], results["disk, copied"], results["disk"], results["memory"]
    print(f"  read into one array against per-file copies: reads {copied[0] / disk[0]:.1f}x faster, an epoch {copied[1] / disk[1]:.1f}x faster")
    print(f"  positioned reads against a memory map: reads {baseline[0] / disk[0]:.1f}x faster, an epoch {baseline[1] / disk[1]:.1f}x faster")
    print(f"  held in memory against positioned reads: reads {disk[0] / memory[0]:.1f}x faster, an epoch {disk[1] / memory[1]:.1f}x faster")


if __name__ == "__main__":
    main()
