"""Time `features.hog.hog_batch` against a per-image `skimage.feature.hog` loop on CIFAR-10.

A script, not a test (pytest collects only test_*.py): run from anywhere,
    python tests/benchmarks/bench_hog.py --n 1000
Both run on the same images in the same process, one warm-up each, then alternate for --repeats
rounds; the medians give images/second. It also prints the largest absolute difference between the
two and exits with status 1 when that exceeds --tolerance.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.color import rgb2gray
from skimage.feature import hog

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from features.hog import BLOCK_NORMS, hog_batch  # noqa: E402  (needs the repository on sys.path)
from tests.cifar_sample import SHARED_CIFAR10_JPEG as CIFAR10_JPEG, first_images  # noqa: E402


def skimage_loop(images: np.ndarray, params: dict) -> np.ndarray:
    pixels, cells = params["pixels_per_cell"], params["cells_per_block"]
    return np.stack([
        hog(
            image,
            orientations=params["orientations"],
            pixels_per_cell=(pixels, pixels),
            cells_per_block=(cells, cells),
            block_norm=params["block_norm"],
            feature_vector=True,
            channel_axis=params["channel_axis"],
        )
        for image in images
    ])


def seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of CIFAR-10 images (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each, medians reported (default 3)")
    parser.add_argument("--orientations", type=int, default=9)
    parser.add_argument("--pixels-per-cell", type=int, default=4)
    parser.add_argument("--cells-per-block", type=int, default=2)
    parser.add_argument("--block-norm", choices=BLOCK_NORMS, default="L2-Hys")
    parser.add_argument("--colour", action="store_true", help="RGB in [0, 1] with channel_axis=-1 instead of rgb2gray")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted |difference| (default 1e-5)")
    parser.add_argument("--archive", type=Path, default=CIFAR10_JPEG, help=f"CIFAR-10 JPEG archive (default {CIFAR10_JPEG})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rgb = first_images(args.n, args.archive)
    images = rgb / 255.0 if args.colour else rgb2gray(rgb)
    params = dict(
        orientations=args.orientations,
        pixels_per_cell=args.pixels_per_cell,
        cells_per_block=args.cells_per_block,
        block_norm=args.block_norm,
        channel_axis=-1 if args.colour else None,
    )
    expected = skimage_loop(images, params)  # also the warm-up of the loop
    out = hog_batch(images, **params)  # and of the batch
    loop_seconds, batch_seconds = [], []
    for _ in range(args.repeats):
        loop_seconds.append(seconds(skimage_loop, images, params))
        batch_seconds.append(seconds(lambda: hog_batch(images, **params)))
    max_diff = float(np.abs(out - expected).max())
    loop_rate = args.n / np.median(loop_seconds)
    batch_rate = args.n / np.median(batch_seconds)
    print(f"{args.n} CIFAR-10 images, {'colour' if args.colour else 'grayscale'}, "
          + ", ".join(f"{key}={value}" for key, value in params.items() if key != "channel_axis"))
    print(f"skimage loop: {loop_rate:.0f} img/s  batch: {batch_rate:.0f} img/s  "
          f"speed-up: {batch_rate / loop_rate:.1f} x  max |diff|: {max_diff:.2e}")
    if max_diff > args.tolerance:
        print(f"max |diff| {max_diff:.2e} exceeds the tolerance {args.tolerance:.0e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
