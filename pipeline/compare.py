"""Stage `compare`: one table of every training run, sorted by test accuracy (CSV and Markdown)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.artifacts import train_dir
from pipeline.io import atomic_path, read_json
from pipeline.params import load_params
from pipeline.stage import run_stage

COLUMNS = ["classifier", "feature_set", "test_accuracy", "val_accuracy", "train_accuracy", "feature_dim", "n_parameters", "train_seconds", "learning_rate", "reg_strength"]


def expected_runs(params) -> list[tuple[str, str]]:
    """(classifier, feature_set) of every training stage that params.yaml defines."""
    linear = [(c, f) for c in params.linear.classifiers for f in params.linear.feature_sets]
    return linear + [("mlp", f) for f in params.mlp.feature_sets]


def comparison_table(runs: list[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for classifier, feature_set in runs:
        folder = train_dir(classifier, feature_set)
        if not (folder / "metrics.json").exists():
            raise FileNotFoundError(f"{folder}/metrics.json is missing; run `dvc repro` so every training stage finishes")
        rows.append({"classifier": classifier, "feature_set": feature_set, **read_json(folder / "metrics.json"), **read_json(folder / "chosen.json")})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["test_accuracy", "classifier", "feature_set"], ascending=[False, True, True], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    args = parser.parse_args()
    table = comparison_table(expected_runs(load_params(args.params)))
    out = Path(args.out)
    with atomic_path(out / "comparison.csv") as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(out / "comparison.md") as temporary:
        temporary.write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(table.to_string(index=False))


if __name__ == "__main__":
    run_stage(main, "compare")
