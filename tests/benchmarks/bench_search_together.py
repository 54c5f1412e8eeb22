"""A linear stage's search, its trials one after another (the baseline) against trained together in one pass.

A script, not a test. Run it inside a project whose features are extracted (`dvc repro` has run: it
reads `data/`), e.g. a CIFAR-10 workspace:
    python PATH/TO/tests/benchmarks/bench_search_together.py --feature-set hog+color_hist --epochs 3
It opens the feature set as a train stage does (`pipeline.train.load_training_data`: standardized row
sources, mirrored rows, the row cache), builds the linear section's search (params.yaml's learning rates,
regularization, batch size; `--epochs` instead of its epochs, to keep the run short), then runs the
search both ways, alternately, `--repeats` times each, checks that every trial ends with the same weights
both ways to float32 rounding (tests/benchmarks/agreement.py), and prints the median seconds and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLPConfig  # noqa: E402
from models.search import SearchSpace, candidates, search  # noqa: E402
from models.training import TrainConfig  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.train import linear_loss, load_training_data  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402


def one_after_another(function, items, shared):
    return [function(shared, item) for item in items]


def open_linear_stage(description: str, feature_set: str, flags: tuple[str, ...] = ()) -> tuple:
    """(args, section, data, base config) of a linear stage, from the command line (--feature-set,
    --classifier, --epochs, --repeats and each of `flags`, a switch) and params.yaml, its rows opened
    as the train stage opens them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--feature-set", default=feature_set)
    parser.add_argument("--classifier", default="svm", choices=["svm", "softmax"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    for flag in flags:
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args()
    params = load_params()
    section = params.linear.for_feature_set(args.feature_set)
    data = load_training_data(params.feature_set_members(args.feature_set), args.feature_set, section.augment)
    return args, section, data, linear_base(section, args.classifier, params.seed)


def linear_base(section, classifier: str, seed: int) -> TrainConfig:
    """The TrainConfig a linear stage starts `classifier`'s candidates from (pipeline.train's settings)."""
    return TrainConfig(
        loss=linear_loss(classifier, section.svm_loss), regularization=section.regularization, batch_size=section.batch_size,
        momentum=section.momentum, lr_schedule=section.lr_schedule, keep=section.keep, seed=section.training_seed(seed),
    )


def main() -> None:
    args, section, data, base = open_linear_stage(__doc__.splitlines()[0], "hog+color_hist")
    space = SearchSpace(list(section.learning_rates), list(section.reg_strengths), [[]], [args.epochs])
    configs = candidates(space, base, MLPConfig(data.train.dim, len(data.class_names)), "grid", space.size(), 0)
    print(f"{args.classifier} on {args.feature_set}: {len(configs)} trials x {args.epochs} epochs over {len(data.train)} rows "
          f"({data.train.dim} columns); torch threads {torch.get_num_threads()}", flush=True)
    seconds = {"one after another": [], "together": []}
    results = {}
    for repeat in range(args.repeats):
        ways = list(seconds) if repeat % 2 == 0 else list(reversed(seconds))  # alternate who reads a cold cache first
        for way in ways:
            start = time.perf_counter()
            _, trials = search(configs, data.train, data.train_labels, data.val, data.val_labels, torch.device("cpu"), progress=False,
                               map_trials=one_after_another if way == "one after another" else None)
            seconds[way].append(time.perf_counter() - start)
            results[way] = trials
            print(f"  {way}: {seconds[way][-1]:.1f} s", flush=True)
    difference = max(largest_difference(left.model, right.model) for left, right in zip(results["together"], results["one after another"]))
    agreement = check_agreement("a trial", difference)
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    print(f"median of {args.repeats}: one after another {medians['one after another']:.1f} s, together {medians['together']:.1f} s: "
          f"{medians['one after another'] / medians['together']:.2f}x faster; {agreement} "
          f"(val accuracy {', '.join(f'{t.val_accuracy:.4f}' for t in results['together'])})")


if __name__ == "__main__":
    main()
