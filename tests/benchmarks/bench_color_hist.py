"""color_hist's HSV histograms: skimage's rgb2hsv and numpy's bincount (the baseline) against the compiled pass.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_color_hist.py                      # params.yaml's setting: per_channel, hsv, 10 bins, 2x2
    python tests/benchmarks/bench_color_hist.py --mode hue --grid 1  # the lecture's hue histogram
Draws `--n` random 32x32 images (or reads the first `--n` of a prepared split, `--images` PATH to its
*_images.npy), and times, in turn, `--repeats` times each: the histograms as the extractor computed them
before (float64 HSV images from skimage.color.rgb2hsv, each pixel's bins, one np.bincount over codes),
and `ColorHistogram.transform` (features/color_hist.py: each pixel's bins counted in one compiled pass,
rgb2hsv's arithmetic repeated). Prints the median milliseconds per 1,000 images both ways, the ratio,
and whether the features are identical (they must be, bit for bit).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.color import rgb2hsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from features import get_extractor  # noqa: E402
from tests.benchmarks.timing import alternating_medians  # noqa: E402


def numpy_histograms(images: np.ndarray, bins: int, mode: str, grid: int) -> np.ndarray:
    """The extractor's HSV histograms as it computed them before the compiled pass."""
    n, height, width = images.shape[:3]
    bin_index = np.minimum((rgb2hsv(images) * bins).astype(np.int64), bins - 1)
    if mode == "hue":
        histograms, length, codes = 1, bins, bin_index[..., :1]
    elif mode == "per_channel":
        histograms, length, codes = 3, bins, bin_index + np.arange(3) * bins
    else:
        histograms, length = 1, bins**3
        codes = ((bin_index[..., 0] * bins + bin_index[..., 1]) * bins + bin_index[..., 2])[..., None]
    region = (np.arange(height)[:, None] * grid // height) * grid + np.arange(width)[None, :] * grid // width
    slots = histograms * length
    flat = (np.arange(n)[:, None, None, None] * grid**2 + region[None, :, :, None]) * slots + codes
    counts = np.bincount(flat.ravel(), minlength=n * grid**2 * slots).reshape(n, grid**2, histograms, length)
    return (counts / counts.sum(-1, keepdims=True)).reshape(n, -1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--images", type=Path, default=None, help="a prepared split's *_images.npy instead of random images")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--mode", choices=["hue", "per_channel", "joint"], default="per_channel")
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.images is not None:
        images = np.array(np.load(args.images, mmap_mode="r")[: args.n])
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    extractor = get_extractor("color_hist", bins=args.bins, mode=args.mode, color_space="hsv", grid=args.grid)
    extractor.transform(images[:4])  # compiles (or loads numba's cache) outside the timing
    ways = {
        "skimage + bincount": lambda: numpy_histograms(images, args.bins, args.mode, args.grid),
        "compiled": lambda: extractor.transform(images),
    }
    medians = {way: seconds * 1e6 for way, seconds in alternating_medians(ways, args.repeats, len(images)).items()}  # ms per 1,000
    identical = np.array_equal(ways["skimage + bincount"]().view(np.uint32), ways["compiled"]().view(np.uint32))
    print(f"{len(images)} images {images.shape[1]}x{images.shape[2]}, {args.mode}, {args.bins} bins, {args.grid}x{args.grid} grid, median of {args.repeats}:")
    print(f"  skimage + bincount {medians['skimage + bincount']:.1f} ms per 1,000 images, compiled {medians['compiled']:.1f} ms: "
          f"{medians['skimage + bincount'] / medians['compiled']:.1f}x faster; features identical: {identical}")


if __name__ == "__main__":
    main()
