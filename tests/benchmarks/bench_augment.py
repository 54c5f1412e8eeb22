"""The MLP's `flip+shift` augmentation: a flip then a shift (the baseline) against the one gather of both.

A script, not a test:
    python tests/benchmarks/bench_augment.py --rows 128 --repeats 7
On minibatches of CIFAR-10-shaped pixel rows (32 x 32 x 3, the MLP's batch size), alternately, it times
`horizontal_flip` then `random_shift` against `flip_then_shift` (models/augment.py), checks that both give
the same rows from the same seed, and prints the median milliseconds per minibatch, their ratio, and
the share of one forward and backward pass of the default MLP (3,072 -> 1,024 -> 10) each takes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.augment import flip_then_shift, horizontal_flip, random_shift  # noqa: E402
from models.mlp import MLP, MLPConfig  # noqa: E402

IMAGE_SHAPE = (32, 32, 3)


def milliseconds(step, calls: int = 100) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = torch.randn(args.rows, 32 * 32 * 3)
    flip, shift, both = horizontal_flip(IMAGE_SHAPE), random_shift(IMAGE_SHAPE), flip_then_shift(IMAGE_SHAPE)
    one, two = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    if not torch.equal(shift(flip(rows, one), one), both(rows, two)):
        raise SystemExit("the two ways give different rows")
    model = MLP(MLPConfig(32 * 32 * 3, 10, hidden_sizes=[1024]))
    labels = torch.randint(0, 10, (args.rows,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(rows), labels)
        torch.autograd.grad(loss, list(model.parameters()))

    ways = {"flip, then shift": lambda: shift(flip(rows, one), one), "one gather": lambda: both(rows, two), "MLP forward and backward": step}
    times = {way: [] for way in ways}
    for _ in range(args.repeats):
        for way, call in ways.items():
            times[way].append(milliseconds(call, 20 if way.startswith("MLP") else 100))
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(f"{args.rows} rows of 32x32x3, torch threads {torch.get_num_threads()}, median of {args.repeats}:")
    for way, value in medians.items():
        print(f"  {way}: {value:.2f} ms a minibatch")
    baseline, fused, mlp = medians["flip, then shift"], medians["one gather"], medians["MLP forward and backward"]
    print(f"one gather {baseline / fused:.2f}x faster, the same rows; per minibatch {baseline / (baseline + mlp):.0%} of "
          f"augment + MLP step before, {fused / (fused + mlp):.0%} now")


if __name__ == "__main__":
    main()
