"""Training's reads of rows stored in float32 (the baseline) against float16, as `bovw`'s are stored.

    python tests/benchmarks/bench_float16_rows.py                  # CIFAR-10's bovw shape: 45,000 rows x 6,400
    python tests/benchmarks/bench_float16_rows.py --rows 20000 --dim 1764

Writes the same random non-negative rows (gamma-distributed, as pooled codes are) to a float32 file and a
float16 one in a temporary folder, then reads one epoch of minibatches of 256 rows at random positions
through pipeline.artifacts.StandardizedRows, training's read, from each, alternately, --repeats times
(after one warm-up each), and also the float16 rows standardized by numpy's own arithmetic (the way
tried first). Prints the median seconds an epoch each way, the ratios to float32, and the largest
difference of the standardized rows (float16 rounding of the stored values).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.artifacts import MappedRows, NpyWriter, StandardizedRows  # noqa: E402


class NumpyStandardized(StandardizedRows):
    """The float16 rows standardized by numpy's arithmetic: (rows - mean) / scale."""

    def rows(self, indices):
        return ((self.source.rows(indices) - self.mean) / self.scale).astype(np.float32)


def write(path: Path, rows: np.ndarray, dtype) -> MappedRows:
    with NpyWriter(path, len(rows), rows.shape[1:], dtype) as writer:
        for start in range(0, len(rows), 4096):
            writer.write(rows[start : start + 4096].astype(dtype))
    return MappedRows(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=45000)
    parser.add_argument("--dim", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generator = np.random.default_rng(0)
    rows = generator.gamma(0.5, 0.4, size=(args.rows, args.dim)).astype(np.float32)
    mean, scale = rows.mean(0), rows.std(0) + 1e-3
    with tempfile.TemporaryDirectory() as folder:
        single, half = write(Path(folder) / "f32.npy", rows, np.float32), write(Path(folder) / "f16.npy", rows, np.float16)
        del rows
        ways = {
            "float32": StandardizedRows(single, mean, scale),
            "float16": StandardizedRows(half, mean, scale),
            "float16, numpy's arithmetic": NumpyStandardized(half, mean, scale),
        }
        order = generator.permutation(args.rows)
        batches = [order[start : start + 256] for start in range(0, args.rows, 256)]
        seconds = {way: [] for way in ways}
        for repeat in range(args.repeats + 1):
            for way, source in ways.items() if repeat % 2 == 0 else reversed(list(ways.items())):
                start = time.perf_counter()
                for batch in batches:
                    source.rows(batch)
                if repeat:  # the first round warms the page cache
                    seconds[way].append(time.perf_counter() - start)
        difference = float(np.abs(ways["float16"].rows(batches[0]) - ways["float32"].rows(batches[0])).max())
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    print(f"{args.rows} rows x {args.dim}, minibatches of 256 at random positions, median of {args.repeats} epochs:")
    for way, median in medians.items():
        print(f"  {way:<28} {median:6.2f} s an epoch, {medians['float32'] / median:.2f}x float32's speed")
    print(f"largest difference of the standardized rows, float16 against float32: {difference:.2e}")


if __name__ == "__main__":
    main()
