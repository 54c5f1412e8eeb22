"""An MLP's training step: weight gradients written out then stepped (the baseline) against fused into the velocities.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_mlp_step.py
Builds the MLP the `mlp` section trains on CIFAR-10 pixels (3,072 inputs, one hidden layer of 1,024, ten
classes; `--inputs`, `--hidden` for others) and two runs of it from the same seeded weights, SGD with
momentum 0.9 and an L2 penalty, fp32, minibatches of `--batch-size` random rows. For `--repeats` rounds,
in turn, each takes `--steps` steps: `learn_by_gradients` (autograd writes every weight gradient, then
the penalty and the momentum update read it: models.training) and `learn_fused` (the gradient of each
layer's output, its weight gradient computed straight into the velocity). Prints the median
milliseconds a step both ways, their ratio, torch.matmul's time for the step's two large products
for scale, and the largest difference between the two runs' weights after all the steps (float32
rounding: tests/benchmarks/agreement.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLP, MLPConfig  # noqa: E402
from models.training import TrainConfig, _Run  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=3072)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = TrainConfig(learning_rate=0.001, reg_strength=1e-4, momentum=0.9, batch_size=args.batch_size)
    runs = {}
    for way in ("from gradients", "fused"):
        torch.manual_seed(0)
        runs[way] = _Run(MLP(MLPConfig(args.inputs, 10, hidden_sizes=[args.hidden])), config, 1, torch.device("cpu"))
        runs[way].start_epoch(0)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, args.inputs, generator=generator), torch.randint(0, 10, (args.batch_size,), generator=generator)) for _ in range(args.steps)]
    learn = {"from gradients": runs["from gradients"].learn_by_gradients, "fused": runs["fused"].learn_fused}
    print(f"MLP {args.inputs} -> {args.hidden} -> 10, minibatches of {args.batch_size}, fp32, torch threads {torch.get_num_threads()}", flush=True)
    milliseconds = {way: [] for way in learn}
    for repeat in range(args.repeats):
        for way in learn if repeat % 2 == 0 else reversed(list(learn)):
            start = time.perf_counter()
            for inputs, labels in batches:
                learn[way](inputs, labels)
            milliseconds[way].append((time.perf_counter() - start) * 1e3 / args.steps)
    inputs, weight = batches[0][0], runs["fused"].parameters[0].detach()
    output_gradient, products = torch.randn(args.hidden, args.batch_size, generator=generator), []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            inputs @ weight.T  # the first layer's forward product, and its weight gradient's, the same size
            output_gradient @ inputs
        products.append((time.perf_counter() - start) * 1e3 / args.steps)
    medians = {way: statistics.median(times) for way, times in milliseconds.items()}
    agreement = check_agreement("the weights", largest_difference(runs["fused"].parameters, runs["from gradients"].parameters))
    print(f"median of {args.repeats} x {args.steps} steps: from gradients {medians['from gradients']:.2f} ms, fused {medians['fused']:.2f} ms: "
          f"{medians['from gradients'] / medians['fused']:.2f}x faster; the first layer's two products alone {statistics.median(products):.2f} ms; {agreement}")


if __name__ == "__main__":
    main()
