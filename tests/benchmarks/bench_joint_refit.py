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
from models.search import refit, search, search_and_refit  # noqa: E402
from tests.benchmarks.agreement import check_agreement, largest_difference  # noqa: E402
from tests.benchmarks.bench_search_together import open_linear_stage  # noqa: E402


def main() -> None:
    args, section, data, base = open_linear_stage(__doc__.splitlines()[0], "bovw")
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


if __name__ == "__main__":
    main()
