"""A linear stage's SVM and softmax: one after another (the baseline: a stage each, as before) against together.

A script, not a test. Run it inside a project whose features are extracted (`dvc repro` has run: it
reads `data/`), e.g. a CIFAR-10 workspace:
    python PATH/TO/tests/benchmarks/bench_classifiers_together.py --feature-set hog+color_hist --epochs 3
It opens the feature set once, as a train stage does (`pipeline.train.load_training_data`), plans each
classifier of `linear.classifiers` as the stage does (`pipeline.train.plan_classifier`: the section's learning
rates and settings for that feature set, `--epochs` instead of its epochs to keep the run short), then
fits and scores them both ways, alternately, `--repeats` times each: `fit_and_score` per classifier,
and `fit_and_score_many` over all of them. It checks that every classifier's model is the same both ways
to float32 rounding (tests/benchmarks/agreement.py), prints the share of test predictions that differ,
the median seconds and their ratio. What it leaves out of the
stage's gain: the second stage's start-up (imports, store, statistics pass), a few seconds each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.params import load_params  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402
from pipeline.train import fit_and_score, fit_and_score_many, load_training_data, plan_classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-set", default="hog+color_hist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params()
    section = params.linear.for_feature_set(args.feature_set)
    data = load_training_data(params.feature_set_members(args.feature_set), args.feature_set, section.augment)
    cpu, refit_chosen = torch.device("cpu"), section.refits(len(data.train_only))
    groups = [
        [(replace(config, epochs=args.epochs), model) for config, model in plan_classifier(classifier, params, section, data, cpu, refit_chosen).configs]
        for classifier in params.linear.classifiers
    ]
    print(f"{' and '.join(params.linear.classifiers)} on {args.feature_set}: {len(groups[0])} trial(s) each x {args.epochs} epochs over "
          f"{len(data.train)} train rows ({data.train.dim} columns), refit {refit_chosen}; torch threads {torch.get_num_threads()}", flush=True)
    seconds, results = {"one after another": [], "together": []}, {}
    for repeat in range(args.repeats):
        ways = list(seconds) if repeat % 2 == 0 else list(reversed(seconds))  # alternate who reads a cold cache first
        for way in ways:
            start = time.perf_counter()
            if way == "together":
                results[way] = fit_and_score_many(data, groups, cpu, refit_chosen)
            else:
                results[way] = [fit_and_score(data, configs, cpu, refit_chosen) for configs in groups]
            seconds[way].append(time.perf_counter() - start)
            print(f"  {way}: {seconds[way][-1]:.1f} s", flush=True)
    differences, predictions = [], []
    for ours, theirs in zip(results["together"], results["one after another"]):
        differences.append(largest_difference(ours.model, theirs.model))
        predictions.append(float(np.mean(ours.test_predictions != theirs.test_predictions)))
    agreement = check_agreement("a classifier", max(differences))
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    print(f"median of {args.repeats}: one after another {medians['one after another']:.1f} s, together {medians['together']:.1f} s: "
          f"{medians['one after another'] / medians['together']:.2f}x faster; {agreement}; test predictions that differ: "
          f"{', '.join(f'{share:.2%}' for share in predictions)}")


if __name__ == "__main__":
    main()
