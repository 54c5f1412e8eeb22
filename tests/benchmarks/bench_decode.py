"""Reading an image folder: every file decoded in the stage's own process (the baseline) against worker processes.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_decode.py --path ../shared/data/cifar10-jpeg.tar.gz --repeats 3
    python tests/benchmarks/bench_decode.py --photos 300 --repeats 3   # camera-sized JPEGs and PNGs it draws
Times `load_imagefolder` (pipeline/datasets/imagefolder.py) on the folder or archive, in turn, with one
process (FEATUREBENCH_DECODE_WORKERS=1) and with `--workers` (default: one per usable core), reading every
split back, and prints the median seconds both ways, the ratio, and whether the prepared images and labels
are identical (they must be, byte for byte). `--photos N` first writes N random 3000x2000 photos (JPEG and
PNG, ten classes) to a temporary folder and reads that.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.datasets.decoding import WORKERS_VARIABLE, decode_workers  # noqa: E402
from pipeline.datasets.imagefolder import load_imagefolder  # noqa: E402
from tests.benchmarks.timing import alternating_medians  # noqa: E402


def write_photos(root: Path, n: int, size: tuple[int, int] = (3000, 2000)) -> None:
    """n smooth random photos, half JPEG and half PNG, in ten class folders."""
    rng = np.random.default_rng(0)
    for index in range(n):
        small = rng.integers(0, 256, (size[1] // 100, size[0] // 100, 3), dtype=np.uint8)
        photo = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        folder = root / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        photo.save(folder / f"{index:05d}.{'jpg' if index % 2 == 0 else 'png'}")


def read_all(path: Path, image_size: int, workers: int) -> list[np.ndarray]:
    """Every split's images and labels, read with `workers` decoding processes."""
    os.environ[WORKERS_VARIABLE] = str(workers)
    data = load_imagefolder(path, image_size=image_size, progress=False)
    splits = [data.train] + ([data.test] if data.test is not None else [])
    return [array for split in splits for array in (np.concatenate(list(split.batches())), split.labels)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, help="an image folder or archive (default: --photos)")
    parser.add_argument("--photos", type=int, default=200, help="random photos to write and read when no --path")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=decode_workers())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        path = args.path
        if path is None:
            path = Path(scratch) / "photos"
            write_photos(path, args.photos)
        outputs = {}

        def way(workers: int):
            def run():
                outputs[workers] = read_all(path, args.image_size, workers)
            return run

        medians = alternating_medians({"one process": way(1), f"{args.workers} workers": way(args.workers)}, args.repeats)
    identical = all(np.array_equal(a, b) for a, b in zip(outputs[1], outputs[args.workers]))
    (one, baseline), (many, seconds) = medians.items()
    print(f"{path}: {len(outputs[1][0]) + (len(outputs[1][2]) if len(outputs[1]) > 2 else 0)} images, median of {args.repeats}")
    print(f"  {one}: {baseline:.2f} s")
    print(f"  {many}: {seconds:.2f} s   ({baseline / seconds:.2f}x)")
    print(f"  identical: {identical}")


if __name__ == "__main__":
    main()
