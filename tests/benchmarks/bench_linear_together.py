"""A linear stage's models on one minibatch: each its own matrix products and update (the baseline) against
the models stacked (`models.training.LinearStack`: one product for the scores of all, one for their
gradients, one update).

A script, not a test. Run it inside a project whose features are extracted (`dvc repro` has run: it
reads `data/`), e.g. a CIFAR-10 workspace:
    python PATH/TO/tests/benchmarks/bench_linear_together.py --feature-sets bovw pixels hog+color_hist
For each feature set it opens the rows as a train stage does (`pipeline.train.load_training_data`), builds
the models the stage trains on each minibatch (`pipeline.train.plan_classifier` for every classifier of
`linear.classifiers`: all their trials, and with one candidate each a twin learning from train +
validation, as `search_and_refit_many` trains them), reads `--batches` minibatches of the stage's batch
size, then has both ways learn from them, alternately, `--repeats` times each, from the same initial
weights. It prints the median milliseconds per minibatch of each way and their ratio, and the largest
difference between the two ways' weights after those steps (float32 rounding: the wide product sums in
another order; tests/benchmarks/agreement.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLP  # noqa: E402
from models.training import LinearStack, _Run, learn_minibatch  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.train import load_training_data, plan_classifier  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402


def learners_of_stage(params, feature_set: str, data, cpu) -> tuple[list, int]:
    """(config, model config, learns from train rows only) of every model the stage trains per minibatch, and its batch size."""
    section = params.linear.for_feature_set(feature_set)
    plans = [plan_classifier(classifier, params, section, data, cpu, section.refits(len(data.train_only))).configs for classifier in params.linear.classifiers]
    with_twins = all(len(configs) == 1 for configs in plans) and section.refits(len(data.train_only))
    models = [(config, model, with_twins) for configs in plans for config, model in configs]
    if with_twins:
        models += [(config, model, False) for configs in plans for config, model in configs]
    return models, plans[0][0][0].batch_size


def fresh_runs(models: list, cpu) -> list:
    runs = []
    for config, model_config, _ in models:
        torch.manual_seed(0)
        run = _Run(MLP(model_config), config, config.epochs, cpu)
        run.start_epoch(0)
        runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-sets", nargs="+", default=["bovw", "pixels", "hog+color_hist"])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    params, cpu = load_params(), torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for feature_set in args.feature_sets:
        section = params.linear.for_feature_set(feature_set)
        data = load_training_data(params.feature_set_members(feature_set), feature_set, section.augment)
        models, batch_size = learners_of_stage(params, feature_set, data, cpu)
        source = data.refit if any(masked for *_, masked in models) else data.train
        order = np.random.default_rng(0).permutation(len(source))[: args.batches * batch_size]
        batches = [np.sort(order[start : start + batch_size]) for start in range(0, len(order), batch_size)]
        minibatches = [(torch.as_tensor(source.rows(rows)), torch.as_tensor(rows)) for rows in batches]
        labels = data.refit_labels if source is data.refit else data.train_labels
        n_train = len(data.train)
        seconds = {way: [] for way in WAYS}
        weights = {}
        for repeat in range(args.repeats):
            for way in WAYS if repeat % 2 == 0 else WAYS[::-1]:
                runs = fresh_runs(models, cpu)
                stack = LinearStack(runs) if way == STACKED else None
                start = time.perf_counter()
                for inputs, rows in minibatches:
                    in_train = rows < n_train
                    learners = [(run, in_train if masked else None) for run, (*_, masked) in zip(runs, models)]
                    if stack is not None:
                        stack.learn(learners, inputs, labels[rows])
                    else:
                        learn_minibatch(learners, inputs, labels[rows])
                if stack is not None:
                    stack.end_epoch()
                seconds[way].append((time.perf_counter() - start) / len(minibatches) * 1e3)
                weights[way] = [run.parameters[0].detach().clone() for run in runs]
        medians = {way: statistics.median(times) for way, times in seconds.items()}
        base = medians[BASELINE]
        print(f"{feature_set}: {len(models)} models x {batch_size}-row minibatches of {data.train.dim} columns, "
              f"median of {args.repeats} x {len(minibatches)} minibatches:", flush=True)
        for way, median in medians.items():
            agreement = check_agreement(way, max(largest_difference([a], [b]) for a, b in zip(weights[way], weights[BASELINE])))
            print(f"  {way}: {median:.2f} ms, {base / median:.2f}x" + ("" if way == BASELINE else f"; {agreement}"), flush=True)


BASELINE, STACKED = "each model its own products and update", "stacked: one product, one update"
WAYS = (BASELINE, STACKED)


if __name__ == "__main__":
    main()
