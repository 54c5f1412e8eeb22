"""Time the `bovw` encoder against a plain numpy encoder of the same features, on CIFAR-10.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_bovw.py --n 1000
One codebook (the params.yaml defaults unless overridden: 1600 words, 6x6 patches, stride 1, ZCA,
triangle, 2x2 pooling) is fit on the first --fit images; then both encoders transform the same --n
images, alternating for --repeats rounds, and the medians give images/second. The plain encoder is
what one writes first: every patch of a --batch of images at once in numpy float32, fresh arrays for
each step (its distance matrix alone is --batch x 729 x 1600 x 4 bytes). It also prints the largest
relative difference between the two (float32 both; exit status 1 above 1e-2).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from features import get_extractor  # noqa: E402  (needs the repository on sys.path)
from tests.cifar_sample import SHARED_CIFAR10_JPEG, first_images  # noqa: E402


def plain_numpy_encode(extractor, images: np.ndarray, batch: int) -> np.ndarray:
    """The same triangle features, written the obvious way: numpy, whole batches of patches at once."""
    p, g, k = extractor.patch_size, extractor.pooling_grid, extractor.n_clusters
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch].astype(np.float32)
        n, height, width = chunk.shape[:3]
        rows, cols = height - p + 1, width - p + 1
        patches = np.stack([chunk[:, r : r + p, c : c + p].transpose(0, 3, 1, 2).reshape(n, -1) for r in range(rows) for c in range(cols)], 1)
        patches = patches.reshape(-1, patches.shape[-1])
        patches = patches - patches.mean(1, keepdims=True)
        patches = patches / np.sqrt(patches.var(1, keepdims=True) + 10)
        patches = (patches - extractor.patch_mean_) @ extractor.whitening_
        codebook = extractor.codebook_
        distances = np.sqrt(np.maximum((patches**2).sum(1, keepdims=True) - 2 * patches @ codebook.T + (codebook**2).sum(1), 0))
        codes = np.maximum(distances.mean(1, keepdims=True) - distances, 0).reshape(n, rows, cols, k)
        edges = [(rows * i + g - 1) // g for i in range(g + 1)]
        pooled = [codes[:, a:b, c:d].mean((1, 2)) for a, b in zip(edges, edges[1:]) for c, d in zip(edges, edges[1:])]
        out.append(np.stack(pooled, 1).reshape(n, -1))
    return np.concatenate(out)


def timed(function, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images transformed per round (default 1000)")
    parser.add_argument("--fit", type=int, default=5000, help="images the codebook is fit on (default 5000)")
    parser.add_argument("--clusters", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=100, help="images per batch of the plain encoder (default 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR10_JPEG)
    args = parser.parse_args(argv)

    images = first_images(args.fit, args.archive)
    extractor = get_extractor("bovw", n_clusters=args.clusters).fit(images)
    sample = images[: args.n]
    print(f"codebook: {args.clusters} words fit on {args.fit} images; transforming {args.n} images, {args.repeats} rounds")
    plain_times, batched_times = [], []
    for _ in range(args.repeats):
        seconds, plain = timed(plain_numpy_encode, extractor, sample, args.batch)
        plain_times.append(seconds)
        seconds, batched = timed(extractor.transform, sample)
        batched_times.append(seconds)
    plain_rate, batched_rate = args.n / np.median(plain_times), args.n / np.median(batched_times)
    difference = np.abs(plain - batched).max() / np.abs(plain).max()
    print(f"plain numpy ({args.batch} images a batch): {plain_rate:8.1f} images/s")
    print(f"bovw transform (torch, chunked):     {batched_rate:8.1f} images/s")
    print(f"speed ratio: {batched_rate / plain_rate:.2f}x   largest relative difference: {difference:.2e}")
    print(f"60,000 CIFAR-10 images at this rate: {60000 / batched_rate / 60:.1f} min (plain: {60000 / plain_rate / 60:.1f} min)")
    # both in float32: the triangle code, mean distance minus distance, cancels about three digits
    return 0 if difference < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
