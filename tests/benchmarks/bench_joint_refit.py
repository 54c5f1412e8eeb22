"""A linear stage's lone candidate: its search then its refit (the baseline) against both in one pass.

A script, not a test. Run it inside a project whose features are extracted (`dvc repro` has run: it
reads `data/`), e.g. a CIFAR-10 workspace:
    python PATH/TO/tests/benchmarks/bench_joint_refit.py --feature-set bovw --epochs 3
It opens the feature set as a train stage does (`pipeline.train.load_training_data`), takes the linear
section's settings for it (its first learning rate and reg_strength; `--epochs` instead of its epochs,
to keep the run short; `keep: last`, so that the refit after the search trains every epoch), then trains
both ways, alternately, `--repeats` times each: `models.search.search` then `refit`, and
`search_and_refit`. It checks that the refit's weights are the same both ways to float32 rounding
(tests/benchmarks/agreement.py) and prints the median seconds and their ratio.

With --whole-stage it times what a linear stage trains instead: both classifiers' candidates (the
section's learning rates and reg_strengths, `--epochs` epochs, the section's `keep`), searched together
then their chosen two refitted together (`search_many`, `refit_many`: the baseline), against all of them
and a refit of each in one pass (`search_and_refit_many`). The two ways draw their minibatches from
different rows (train, or train + validation), so they are not the same models: it prints each way's
chosen settings and validation accuracies instead of an agreement.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLPConfig  # noqa: E402
from models.search import SearchSpace, candidates, refit, refit_many, search, search_and_refit, search_and_refit_many, search_many  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402
from tests.benchmarks.bench_search_together import linear_base, open_linear_stage  # noqa: E402
from pipeline.params import load_params  # noqa: E402


def main() -> None:
    args, section, data, base = open_linear_stage(__doc__.splitlines()[0], "bovw", flags=("--whole-stage",))
    if args.whole_stage:
        return whole_stage(args, section, data)
    config = replace(base, learning_rate=section.learning_rates[0], reg_strength=section.reg_strengths[0], epochs=args.epochs, keep="last")
    candidate, cpu = (config, MLPConfig(data.train.dim, len(data.class_names))), torch.device("cpu")
    print(f"{args.classifier} on {args.feature_set}: {args.epochs} epochs over {len(data.train)} train and {len(data.refit)} "
          f"train + validation rows ({data.train.dim} columns); torch threads {torch.get_num_threads()}", flush=True)
    seconds, refits = {"search, then refit": [], "one pass": []}, {}
    for repeat in range(args.repeats):
        ways = list(seconds) if repeat % 2 == 0 else list(reversed(seconds))  # alternate who reads a cold cache first
        for way in ways:
            start = time.perf_counter()
            if way == "one pass":
                _, _, refits[way] = search_and_refit(candidate, data.train, data.train_labels, data.refit, data.refit_labels, data.val, data.val_labels, cpu, progress=False)
            else:
                best, _ = search([candidate], data.train, data.train_labels, data.val, data.val_labels, cpu, progress=False)
                refits[way], _ = refit(best, data.refit, data.refit_labels, cpu, progress=False)
            seconds[way].append(time.perf_counter() - start)
            print(f"  {way}: {seconds[way][-1]:.1f} s", flush=True)
    agreement = check_agreement("the refit", largest_difference(refits["one pass"], refits["search, then refit"]))
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    print(f"median of {args.repeats}: search then refit {medians['search, then refit']:.1f} s, one pass {medians['one pass']:.1f} s: "
          f"{medians['search, then refit'] / medians['one pass']:.2f}x faster; the refit: {agreement}")


def whole_stage(args, section, data) -> None:
    seed, model = load_params().seed, MLPConfig(data.train.dim, len(data.class_names))
    space = SearchSpace(list(section.learning_rates), list(section.reg_strengths), [[]], [args.epochs])
    groups = [candidates(space, linear_base(section, classifier, seed), model, "grid", space.size(), 0) for classifier in ("svm", "softmax")]
    print(f"svm and softmax on {args.feature_set}: {space.size()} candidates each, {args.epochs} epochs, keep {section.keep}, over "
          f"{len(data.train)} train and {len(data.refit)} train + validation rows ({data.train.dim} columns); torch threads {torch.get_num_threads()}", flush=True)
    seconds, chosen = {"search, then refit": [], "one pass": []}, {}
    rows = (data.train, data.train_labels, data.refit, data.refit_labels, data.val, data.val_labels, torch.device("cpu"))
    for repeat in range(args.repeats):
        ways = list(seconds) if repeat % 2 == 0 else list(reversed(seconds))  # alternate who reads a cold cache first
        for way in ways:
            start = time.perf_counter()
            if way == "one pass":
                bests = [best for best, _, _ in search_and_refit_many(groups, *rows, data.augment, progress=False)]
            else:
                bests = [best for best, _ in search_many(groups, data.train, data.train_labels, data.val, data.val_labels, torch.device("cpu"), data.augment, progress=False)]
                refit_many(bests, data.refit, data.refit_labels, torch.device("cpu"), data.augment, progress=False)
            seconds[way].append(time.perf_counter() - start)
            chosen[way] = ", ".join(f"lr {best.config.learning_rate:g} epoch {best.best_epoch} val {best.val_accuracy:.4f}" for best in bests)
            print(f"  {way}: {seconds[way][-1]:.1f} s", flush=True)
    medians = {way: statistics.median(times) for way, times in seconds.items()}
    for way in seconds:
        print(f"  {way} chose (svm, softmax): {chosen[way]}")
    print(f"median of {args.repeats}: search then refit {medians['search, then refit']:.1f} s, one pass {medians['one pass']:.1f} s: "
          f"{medians['search, then refit'] / medians['one pass']:.2f}x faster")


if __name__ == "__main__":
    main()
