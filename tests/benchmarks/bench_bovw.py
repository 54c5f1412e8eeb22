"""Time the `bovw` encoder against torch.matmul on its shapes and against the previous encoder, on CIFAR-10.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_bovw.py --n 200
One codebook (the params.yaml defaults unless overridden: 1600 words, 6x6 patches, stride 1, ZCA,
triangle, 2x2 pooling) is fit on the first --fit images; then, for --repeats rounds, in turn:
- the encoder (`BagOfVisualWords.transform`) on the same --n images;
- the previous encoder (`previous_encode`, below: torch, 16 images a chunk, every operation on
  torch's threads), kept here so that the speed-up is measured in the same run;
- torch.matmul alone on the shapes of the encoder's distance product, (729 x 108) @ (108 x 1600) per
  image, run two ways: on the encoder's threads (as many Python threads as torch has, torch
  single-threaded in each, an image each) and as torch runs it (one product of a 16-image chunk on
  torch's threads); the faster of the two is the reference.
Then, for --pair-repeats rounds (default 3), the images and their left-right mirrors encoded the old
way (transform twice: the images, then the mirrored images) against `transform_with_mirror` (the
mirrors' codes derived from the images' distances); the ratio of their medians is printed with the
largest difference between the two ways' mirrored codes.
Medians over the rounds give images/second; GFLOP/s counts only the distance product's 2 * P * K * D
floating-point operations (P patches, K words, D values a patch), for the encoders and torch.matmul
alike, so the ratio says how much of the product's speed the whole encoder keeps. It also prints the
largest difference between the two encoders (float32 both; exit status 1 above 1e-4 of the largest
feature). Medians and ratios come from the same run: on a shared machine only those compare.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from features import get_extractor  # noqa: E402  (needs the repository on sys.path)
from features.bovw import dense_patches, normalize_patches, region_bounds  # noqa: E402
from tests.cifar_sample import SHARED_CIFAR10_JPEG, first_images  # noqa: E402

PREVIOUS_IMAGES_PER_CHUNK = 16


def previous_encode(extractor, images: np.ndarray) -> np.ndarray:
    """The encoder as it was before issue #16 (features/bovw.py at d985e36), triangle or hard.

    Per chunk of 16 images: unfold, normalize and whiten every patch, addmm for the distances, then
    separate passes for |x|^2, clamp, sqrt, the code and a pooling that stacks the regions.
    """
    rows = (images.shape[1] - extractor.patch_size) // extractor.stride + 1
    cols = (images.shape[2] - extractor.patch_size) // extractor.stride + 1
    codebook = torch.from_numpy(extractor.codebook_)
    squared_norms = (codebook * codebook).sum(1)
    out = np.empty((len(images), extractor.output_dim(images.shape[1:])), np.float32)
    distances = None
    for start in range(0, len(images), PREVIOUS_IMAGES_PER_CHUNK):
        chunk = images[start : start + PREVIOUS_IMAGES_PER_CHUNK]
        patches = normalize_patches(dense_patches(chunk, extractor.patch_size, extractor.stride).reshape(-1, codebook.shape[1]))
        if extractor.whitening:
            patches = (patches - torch.from_numpy(extractor.patch_mean_)) @ torch.from_numpy(extractor.whitening_)
        if distances is None or distances.shape[0] != len(patches):
            distances = torch.empty(len(patches), extractor.n_clusters)
        torch.addmm(squared_norms, patches, codebook.T, alpha=-2, out=distances)
        distances.add_((patches * patches).sum(1, keepdim=True)).clamp_(min=0).sqrt_()
        if extractor.encoding == "hard":
            codes = F.one_hot(distances.argmin(1), extractor.n_clusters).float()
        else:
            mean = distances.mean(dim=1, keepdim=True)
            codes = distances.neg_().add_(mean).clamp_(min=0)
        codes = codes.view(len(chunk), rows, cols, extractor.n_clusters)
        regions = [
            codes[:, top:bottom, left:right].sum((1, 2)) / ((bottom - top) * (right - left))
            for top, bottom in region_bounds(rows, extractor.pooling_grid)
            for left, right in region_bounds(cols, extractor.pooling_grid)
        ]
        out[start : start + len(chunk)] = torch.stack(regions, 1).reshape(len(chunk), -1).numpy()
    return out


def matmul_on_workers(n_images: int, patches: int, dim: int, codebook: torch.Tensor) -> None:
    """torch.matmul of one image's shape n_images times, spread like the encoder: torch's thread count
    of Python threads, torch single-threaded in each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def worker(index: int) -> None:
        torch.set_num_threads(1)  # as the encoder's workers do: MKL's thread count is per thread
        left, out = torch.randn(patches, dim), torch.empty(patches, codebook.shape[1])
        for _ in range(index, n_images, threads):
            torch.matmul(left, codebook, out=out)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
    finally:
        torch.set_num_threads(threads)


def matmul_on_torch_threads(n_images: int, patches: int, dim: int, codebook: torch.Tensor) -> None:
    """torch.matmul as torch runs it: one product per 16-image chunk, on torch's own threads."""
    chunk = PREVIOUS_IMAGES_PER_CHUNK
    left, out = torch.randn(chunk * patches, dim), torch.empty(chunk * patches, codebook.shape[1])
    for start in range(0, n_images, chunk):
        rows = min(chunk, n_images - start) * patches
        torch.matmul(left[:rows], codebook, out=out[:rows])


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images transformed per round (default 200)")
    parser.add_argument("--fit", type=int, default=3000, help="images the codebook is fit on (default 3000)")
    parser.add_argument("--clusters", type=int, default=1600)
    parser.add_argument("--encoding", choices=("triangle", "hard"), default="triangle")
    parser.add_argument("--kmeans-iterations", type=int, default=50, help="fewer fit faster; the codebook's quality hardly changes the timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pair-repeats", type=int, default=3, help="rounds of the images-and-mirrors comparison (default 3)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch's threads (default: its own choice, one per core)")
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR10_JPEG)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    images = first_images(max(args.fit, args.n), args.archive)
    extractor = get_extractor("bovw", n_clusters=args.clusters, encoding=args.encoding, kmeans_iterations=args.kmeans_iterations)
    extractor.fit(images[: args.fit])
    sample = images[: args.n]
    rows, cols = extractor._check_size(sample.shape[1:])
    patches, dim = rows * cols, extractor.codebook_.shape[1]
    codebook = torch.from_numpy(np.ascontiguousarray(extractor.codebook_.T))
    gigaflop = 2 * args.n * patches * args.clusters * dim / 1e9
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}; {os.cpu_count()} CPUs")
    print(f"codebook: {args.clusters} words fit on {args.fit} images; {args.encoding}; transforming {args.n} images "
          f"({patches} patches x {args.clusters} words x {dim} values each), {args.repeats} rounds")

    runs = {
        "encoder": lambda: extractor.transform(sample),
        "previous": lambda: previous_encode(extractor, sample),
        "matmul_workers": lambda: matmul_on_workers(args.n, patches, dim, codebook),
        "matmul_torch": lambda: matmul_on_torch_threads(args.n, patches, dim, codebook),
    }
    times = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            seconds, results[name] = timed(run)
            times[name].append(seconds)
    rate = {name: args.n / np.median(seconds) for name, seconds in times.items()}
    gflops = {name: gigaflop / np.median(seconds) for name, seconds in times.items()}
    reference = max(gflops["matmul_workers"], gflops["matmul_torch"])
    labels = {
        "encoder": "bovw transform (this encoder)",
        "previous": "previous encoder (16-image chunks)",
        "matmul_workers": "torch.matmul, encoder's threads",
        "matmul_torch": "torch.matmul, torch's threads",
    }
    for name, label in labels.items():
        spread = f"{args.n / np.max(times[name]):.0f}-{args.n / np.min(times[name]):.0f}"
        print(f"{label:36s} {rate[name]:8.1f} images/s ({spread})  {gflops[name]:6.1f} GFLOP/s")
    difference = np.abs(results["encoder"] - results["previous"]).max() / np.abs(results["previous"]).max()
    print(f"encoder / torch.matmul (the faster way): {gflops['encoder'] / reference:.0%} of its GFLOP/s")
    print(f"speed-up over the previous encoder: {rate['encoder'] / rate['previous']:.2f}x   largest difference: {difference:.1e} of the largest feature")
    print(f"60,000 CIFAR-10 images at this rate: {60000 / rate['encoder'] / 60:.1f} min (previous: {60000 / rate['previous'] / 60:.1f} min)")

    mirrored_sample = np.ascontiguousarray(sample[:, :, ::-1])  # as the extract stage's mirrored batches were read
    pair_runs = {
        "twice": lambda: (extractor.transform(sample), extractor.transform(mirrored_sample)),
        "with_mirror": lambda: extractor.transform_with_mirror(sample),
    }
    pair_times = {name: [] for name in pair_runs}
    for _ in range(args.pair_repeats):
        for name, run in pair_runs.items():
            seconds, results[name] = timed(run)
            pair_times[name].append(seconds)
    twice, with_mirror = (float(np.median(pair_times[name])) for name in pair_runs)
    mirror_difference = np.abs(results["with_mirror"][1] - results["twice"][1]).max() / np.abs(results["twice"][1]).max()
    print(f"images and their mirrors, median of {args.pair_repeats}: transform twice {2 * args.n / twice:.1f} images/s, "
          f"transform_with_mirror {2 * args.n / with_mirror:.1f} images/s")
    print(f"transform twice / transform_with_mirror: {twice / with_mirror:.2f}x   largest difference of the mirrored codes: {mirror_difference:.1e} of the largest feature")
    return 0 if difference < 1e-4 and mirror_difference < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
