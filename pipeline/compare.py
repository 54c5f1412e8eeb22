"""Stage `compare`: the runs DVC considers current, read back from MLflow, as a report in reports/.

Writes the table (CSV and HTML in full, Markdown without the per-class columns) and four figures
(accuracy against training time and against feature dimension, the per-class accuracy of each
family's best model, the test images those models get wrong), and logs them to the run group's
parent run in MLflow. A stage that could not train is a row marked failed, with its reason; the
figures draw the others.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from pipeline import report, tracking
from pipeline.artifacts import open_images, read_meta, train_dir
from pipeline.io import atomic_path, read_json
from pipeline.params import ParamsError, load_params
from pipeline.scores import PER_CLASS_PREFIX
from pipeline.stage import run_stage

FIGURE_FILES = ("accuracy_vs_train_time.png", "accuracy_vs_feature_dim.png", "per_class_accuracy.png", "misclassified.png")  # in dvc.yaml's plots


def current_table(params_path: str = "params.yaml") -> tuple[pd.DataFrame, str]:
    """(comparison table of the current runs, data set name); also what `featurebench compare` prints."""
    runs = report.expected_runs(load_params(params_path))
    if not runs:
        raise ParamsError("params.yaml defines no training stage: linear.feature_sets and mlp.feature_sets are both empty")
    run_ids = report.current_run_ids(runs)
    dataset = read_json(train_dir(*runs[0]) / "run.json")["dataset"]
    return report.comparison_table(tracking.read_runs(dataset, run_ids)), dataset


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The table without per-class columns and run ids, a failed stage's numbers blank: what fits a terminal and
    a README. Status and reason only when a stage failed."""
    dropped = {"run_id"} if (table["status"] == report.FAILED).any() else {"run_id", "status", "reason"}
    return report.blank_missing(table[[c for c in table.columns if not c.startswith(PER_CLASS_PREFIX) and c not in dropped]])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    args = parser.parse_args()
    table, dataset = current_table(args.params)
    meta = read_meta()
    trained = report.trained(table)
    if trained.empty:  # every stage failed: the table says why; the figures say there is nothing to draw
        figures = {name: report.nothing_trained_figure(dataset) for name in FIGURE_FILES}
    else:
        best = report.best_of_each_family(table)
        figures = {
            "accuracy_vs_train_time.png": report.accuracy_vs_train_time_figure(trained, dataset),
            "accuracy_vs_feature_dim.png": report.accuracy_vs_feature_dim_figure(trained, dataset),
            "per_class_accuracy.png": report.per_class_accuracy_figure(best, meta["class_names"], dataset),
            "misclassified.png": report.misclassified_figure(best, open_images("test"), dataset),  # memory-mapped: reads only the images shown
        }
    out = Path(args.out)
    for file_name, figure in figures.items():
        with atomic_path(out / file_name) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        plt.close(figure)
    with atomic_path(out / "comparison.csv") as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(out / "comparison.md") as temporary:
        temporary.write_text(summary(table).to_markdown(index=False, floatfmt=".4g") + "\n")
    with atomic_path(out / "comparison.html") as temporary:
        temporary.write_text(report.html_page(table, dataset, list(figures)))
    files = [out / name for name in ("comparison.html", "comparison.csv", "comparison.md", *figures)]
    parent = tracking.log_report(dataset, files)
    print(summary(table).to_string(index=False))
    print(f"report: {out / 'comparison.html'}; logged to MLflow run {parent}")


if __name__ == "__main__":
    run_stage(main, "compare")
