"""An extractor's features of images and of their left-right mirrors: transform twice (the baseline)
against `transform_with_mirror` (one pass where the extractor derives the mirror's features).

A script, not a test:
    python tests/benchmarks/bench_mirror_pairs.py --extractors color_hist pixels hog --n 2000
On `--n` random 32x32 colour images, each extractor with params.yaml's settings (fit on the images),
alternately, median of `--repeats`; it checks both ways give the same features and prints images/s and
the ratio. `bovw` has its own, with CIFAR-10 images: tests/benchmarks/bench_bovw.py --pair-repeats.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from features import get_extractor  # noqa: E402
from pipeline.params import load_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["color_hist"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    images = np.random.default_rng(0).integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    for name in args.extractors:
        extractor = get_extractor(name, **params.extractors[name]).fit(images)
        ways = {
            "transform twice": lambda: (extractor.transform(images), extractor.transform(np.ascontiguousarray(images[:, :, ::-1]))),
            "transform_with_mirror": lambda: extractor.transform_with_mirror(images),
        }
        seconds, pairs = {way: [] for way in ways}, {}
        for _ in range(args.repeats):
            for way, call in ways.items():
                start = time.perf_counter()
                pairs[way] = call()
                seconds[way].append(time.perf_counter() - start)
        if not all(np.array_equal(a, b) for a, b in zip(*pairs.values())):
            raise SystemExit(f"{name}: the two ways give different features")
        twice, once = (statistics.median(seconds[way]) for way in ways)
        print(f"{name}: {args.n} images and their mirrors, median of {args.repeats}: transform twice {args.n / twice:,.0f} images/s, "
              f"transform_with_mirror {args.n / once:,.0f} images/s, {twice / once:.2f}x; the same features")


if __name__ == "__main__":
    main()
