"""Training's reads of rows stored in float32 (the baseline) against float16, as `bovw`'s are stored, or
against uint8, as raw pixels' are (`--pixels`).

    python tests/benchmarks/bench_float16_rows.py                  # CIFAR-10's bovw shape: 45,000 rows x 6,400
    python tests/benchmarks/bench_float16_rows.py --rows 20000 --dim 1764
    python tests/benchmarks/bench_float16_rows.py --pixels --dim 3072 --hold   # CIFAR-10's pixels, held as training holds them

Writes the same random non-negative rows (gamma-distributed, as pooled codes are) to a float32 file and a
float16 one in a temporary folder, then reads one epoch of minibatches of 256 rows at random positions
through pipeline.artifacts.StandardizedRows, training's read, from each, alternately, --repeats times
(after one warm-up each), and also the float16 rows standardized by numpy's own arithmetic (the way
tried first). With `--pixels` the rows are 8-bit intensities k / 255 instead, stored as float32 and as
uint8 (pipeline.storage, read through IntensityRows). With `--hold` each file's leading rows are held in
memory first, up to training's budget (pipeline.artifacts.hold_rows: 512 MB), as a training stage does.
Prints the median seconds an epoch each way, the ratios to float32, and the largest difference of the
standardized rows (float16 rounding of the stored values; none for uint8).
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

from pipeline.artifacts import MappedRows, NpyWriter, StandardizedRows, hold_rows, release_rows, stored_features  # noqa: E402
from pipeline.storage import stored_rows  # noqa: E402


class NumpyStandardized(StandardizedRows):
    """The float16 rows standardized by numpy's arithmetic: (rows - mean) / scale."""

    def rows(self, indices):
        return ((self.source.rows(indices) - self.mean) / self.scale).astype(np.float32)


def write(path: Path, rows: np.ndarray, dtype):
    with NpyWriter(path, len(rows), rows.shape[1:], dtype) as writer:
        for start in range(0, len(rows), 4096):
            writer.write(stored_rows(rows[start : start + 4096], dtype))
    return stored_features(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=45000)
    parser.add_argument("--dim", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pixels", action="store_true", help="rows of 8-bit intensities k / 255: float32 against uint8")
    parser.add_argument("--hold", action="store_true", help="hold each file's leading rows in memory first, as training does")
    args = parser.parse_args()
    generator = np.random.default_rng(0)
    if args.pixels:
        rows = generator.integers(0, 256, size=(args.rows, args.dim), dtype=np.uint8).astype(np.float32) / np.float32(255)
    else:
        rows = generator.gamma(0.5, 0.4, size=(args.rows, args.dim)).astype(np.float32)
    mean, scale = rows.mean(0), rows.std(0) + 1e-3
    with tempfile.TemporaryDirectory() as folder:
        single = write(Path(folder) / "f32.npy", rows, np.float32)
        if args.pixels:
            ways = {"float32": StandardizedRows(single, mean, scale), "uint8": StandardizedRows(write(Path(folder) / "u8.npy", rows, np.uint8), mean, scale)}
        else:
            half = write(Path(folder) / "f16.npy", rows, np.float16)
            ways = {
                "float32": StandardizedRows(single, mean, scale),
                "float16": StandardizedRows(half, mean, scale),
                "float16, numpy's arithmetic": NumpyStandardized(half, mean, scale),
            }
        del rows
        order = generator.permutation(args.rows)
        batches = [order[start : start + 256] for start in range(0, args.rows, 256)]
        seconds = {way: [] for way in ways}
        held = {}
        for repeat in range(args.repeats + 1):
            for way, source in ways.items() if repeat % 2 == 0 else reversed(list(ways.items())):
                if args.hold:  # one way's rows held at a time, each with the whole budget
                    release_rows()
                    held[way] = hold_rows([source])
                start = time.perf_counter()
                for batch in batches:
                    source.rows(batch)
                if repeat:  # the first round warms the page cache
                    seconds[way].append(time.perf_counter() - start)
        release_rows()
        other = "uint8" if args.pixels else "float16"
        difference = float(np.abs(ways[other].rows(batches[0]) - ways["float32"].rows(batches[0])).max())
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    print(f"{args.rows} rows x {args.dim}, minibatches of 256 at random positions, median of {args.repeats} epochs:")
    for way, median in medians.items():
        memory = f", {held[way] / 2**20:.0f} MB held" if args.hold else ""
        print(f"  {way:<28} {median:6.2f} s an epoch, {medians['float32'] / median:.2f}x float32's speed{memory}")
    print(f"largest difference of the standardized rows, {other} against float32: {difference:.2e}")


if __name__ == "__main__":
    main()
