"""A linear stage's loss gradients: through autograd (the baseline) against written out (models.losses).

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_loss_gradients.py
    python tests/benchmarks/bench_loss_gradients.py --models 4 --batch-size 256    # bovw's stage: 2 candidates, 2 twins
A linear stage's models train stacked (models.training.LinearStack): each minibatch, the scores of every
model, (rows, models, classes), give each model's mean loss and its gradient with respect to the scores.
Times that step both ways, half the models on the squared hinge and half on the softmax as in a stage
with both classifiers, over `--steps` random minibatches, `--repeats` rounds in turn; prints the median
microseconds a minibatch, the ratio, and whether the gradients are identical (they are, bit for bit:
tests/models/test_losses.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.losses import EXAMPLE_LOSSES, EXAMPLE_LOSSES_AND_GRADIENTS  # noqa: E402
from tests.benchmarks.timing import alternating_medians  # noqa: E402

LOSSES = ("squared_hinge", "softmax")


def through_autograd(scores, labels, upstreams):
    tracked = scores.requires_grad_()
    total = sum((EXAMPLE_LOSSES[loss](tracked[:, part], labels[:, part]) * upstream).sum() for loss, part, upstream in upstreams)
    (gradients,) = torch.autograd.grad(total, tracked)
    scores.requires_grad_(False)
    return gradients


def written_out(scores, labels, upstreams):
    gradients = torch.empty_like(scores)
    for loss, part, upstream in upstreams:
        gradients[:, part] = EXAMPLE_LOSSES_AND_GRADIENTS[loss](scores[:, part], labels[:, part], upstream)[1]
    return gradients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12, help="stacked models (a stage with 3 rates: 6 candidates, 6 twins)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    half = args.models // 2
    parts = [slice(0, half), slice(half, args.models)]
    batches = []
    for _ in range(args.steps):
        scores = torch.randn(args.batch_size, args.models, args.classes, generator=generator)
        labels = torch.randint(0, args.classes, (args.batch_size, 1), generator=generator).expand(args.batch_size, args.models)
        upstream = torch.rand(args.batch_size, args.models, generator=generator) / args.batch_size
        batches.append((scores, labels, [(loss, part, upstream[:, part]) for loss, part in zip(LOSSES, parts)]))
    ways = {way: (lambda learn=learn: [learn(*batch) for batch in batches]) for way, learn in (("autograd", through_autograd), ("written out", written_out))}
    medians = {way: seconds * 1e6 for way, seconds in alternating_medians(ways, args.repeats, args.steps).items()}  # us a minibatch
    scores, labels, upstreams = batches[0]
    identical = torch.equal(through_autograd(scores, labels, upstreams), written_out(scores, labels, upstreams))
    print(f"{args.models} stacked models ({', '.join(LOSSES)}), {args.classes} classes, minibatches of {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"median of {args.repeats} x {args.steps} minibatches: autograd {medians['autograd']:.0f} us, written out {medians['written out']:.0f} us: "
          f"{medians['autograd'] / medians['written out']:.2f}x faster; gradients identical: {identical}")


if __name__ == "__main__":
    main()
