"""The comparison report: the runs DVC considers current, read back from MLflow, as a table and figures.

Which runs are current is DVC's answer (each training stage writes its MLflow run id to
results/train/<classifier>-<feature_set>/run.json); their numbers come from MLflow, which holds the
same dict as each stage's metrics.json, so the table agrees with `dvc metrics show`. A stage that
could not train (its run FAILED, its metrics.json `{"status": "failed", "reason": ...}`) is a row with
that status and reason and blank numbers; the figures leave it out.
"""
from __future__ import annotations

import csv
import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models.figures import ignore_missing_glyphs  # noqa: E402
from pipeline.artifacts import train_dir  # noqa: E402
from pipeline.io import read_json  # noqa: E402
from pipeline.scores import PER_CLASS_PREFIX, metric_names  # noqa: E402

ignore_missing_glyphs()  # class names label the per-class and misclassified figures

METRIC_COLUMNS = [
    "test_accuracy", "val_accuracy", "train_accuracy", "train_loss", "feature_dim", "n_parameters", "extract_seconds", "train_seconds", "search_seconds", "n_trials",
]
FAMILY_MARKERS = {"svm": "s", "softmax": "^", "mlp": "o"}
FINISHED, FAILED = "finished", "failed"  # a stage's status; "failed" is what its metrics.json says


def expected_runs(params) -> list[tuple[str, str]]:
    """(classifier, feature_set) of every training stage that params.yaml defines."""
    linear = [(c, f) for c in params.linear.classifiers for f in params.linear.feature_sets]
    return linear + [("mlp", f) for f in params.mlp.feature_sets]


def current_run_ids(runs: list[tuple[str, str]]) -> list[str]:
    """The MLflow run id each training stage recorded in its run.json, in the order of `runs`."""
    ids = []
    for classifier, feature_set in runs:
        path = train_dir(classifier, feature_set) / "run.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `dvc repro` so every training stage finishes")
        ids.append(read_json(path)["run_id"])
    return ids


def family(classifier: str) -> str:
    return "mlp" if classifier == "mlp" else "linear"


def _numeric(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `mlflow.search_runs`' frame, best test accuracy first, failed stages last.

    Columns: classifier, feature_set, status ("finished" or "failed"), the metrics of METRIC_COLUMNS,
    the chosen hyperparameters (whatever `chosen.*` params the stages log), the per-class test
    accuracies, the reason a stage failed (blank for the others) and the run id.
    """
    status = runs["tags.status"].fillna(FINISHED) if "tags.status" in runs else FINISHED
    table = pd.DataFrame({"classifier": runs["tags.classifier"], "feature_set": runs["tags.feature_set"], "status": status})
    for name in METRIC_COLUMNS:
        table[name] = runs.get(f"metrics.{name}", np.nan)
    for name in ("feature_dim", "n_parameters", "n_trials"):  # counts; MLflow hands every metric back as a float
        table[name] = table[name].astype("Int64")
    for column in sorted(c for c in runs.columns if c.startswith("params.chosen.")):
        values = _numeric(runs[column])
        # a setting only some runs have (hidden_sizes: the MLPs) is blank for the others, not "nan"
        table[column.removeprefix("params.chosen.")] = values if pd.api.types.is_numeric_dtype(values) else values.fillna("")
    for column in sorted(c for c in runs.columns if c.startswith(f"metrics.{PER_CLASS_PREFIX}")):
        table[column.removeprefix("metrics.")] = runs[column]
    table["reason"] = runs["tags.reason"].fillna("") if "tags.reason" in runs else ""
    table["run_id"] = runs["run_id"]
    return table.sort_values(["test_accuracy", "classifier", "feature_set"], ascending=[False, True, True], ignore_index=True)


def trained(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the stages that trained: what the figures draw."""
    return table[table["status"] != FAILED]


def blank_missing(table: pd.DataFrame) -> pd.DataFrame:
    """The table for reading (Markdown, HTML, a terminal): a failed stage's numbers blank, not nan or <NA>."""
    return table.astype(object).where(table.notna(), "")


def best_of_each_family(table: pd.DataFrame) -> pd.DataFrame:
    """The top row (best test accuracy) of the linear classifiers and of the MLPs, of those that trained."""
    table = trained(table)
    families = table["classifier"].map(family)
    return table.loc[[families[families == name].index[0] for name in ("linear", "mlp") if (families == name).any()]]


def _scatter(table: pd.DataFrame, x: str, x_label: str, title: str):
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for classifier, rows in table.groupby("classifier", sort=True):
        axes.scatter(rows[x], rows["test_accuracy"], marker=FAMILY_MARKERS.get(classifier, "D"), s=50, label=classifier)
        for _, row in rows.iterrows():
            axes.annotate(row["feature_set"], (row[x], row["test_accuracy"]), textcoords="offset points", xytext=(5, 3), fontsize=7)
    if (table[x] > 0).all():
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(title="classifier")
    figure.tight_layout()
    return figure


def accuracy_vs_train_time_figure(table: pd.DataFrame, dataset: str):
    return _scatter(table, "train_seconds", "training seconds (search included, log scale)", f"Test accuracy against training time ({dataset})")


def accuracy_vs_feature_dim_figure(table: pd.DataFrame, dataset: str):
    return _scatter(table, "feature_dim", "feature dimension (log scale)", f"Test accuracy against feature dimension ({dataset})")


def per_class_accuracy_figure(best: pd.DataFrame, class_names: list[str], dataset: str):
    """Heat map: one row per family's best model, one column per class, test accuracy in the cells."""
    values = np.array([[row.get(key, np.nan) for key in metric_names(class_names)] for _, row in best.iterrows()], dtype=float)
    labels = [f"{row['classifier']} on {row['feature_set']}" for _, row in best.iterrows()]
    figure, axes = plt.subplots(figsize=(1.6 + 0.75 * len(class_names), 1.4 + 0.6 * len(labels)))
    image = axes.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    if len(class_names) <= 30:
        for (row, col), value in np.ndenumerate(values):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black")
    axes.set_title(f"Per-class test accuracy of the best linear model and the best MLP ({dataset})")
    figure.colorbar(image, ax=axes, fraction=0.03, label="test accuracy")
    figure.tight_layout()
    return figure


def wrong_predictions(classifier: str, feature_set: str) -> list[tuple[int, str, str]]:
    """(test index, actual, predicted) of every test image the run got wrong, from its predictions.csv."""
    with open(train_dir(classifier, feature_set) / "predictions.csv", newline="") as handle:
        return [(int(row["index"]), row["actual"], row["predicted"]) for row in csv.DictReader(handle) if row["actual"] != row["predicted"]]


def misclassified_figure(best: pd.DataFrame, test_images: np.ndarray, dataset: str, per_model: int = 16, columns: int = 8):
    """A grid of test images each family's best model gets wrong (the first `per_model` in test order)."""
    rows_per_model = -(-per_model // columns)
    figure = plt.figure(figsize=(columns * 1.1, len(best) * (rows_per_model * 1.25 + 0.5)))
    panels = figure.subfigures(len(best), 1, squeeze=False)[:, 0]
    for panel, (_, run) in zip(panels, best.iterrows()):
        wrong = wrong_predictions(run["classifier"], run["feature_set"])
        panel.suptitle(f"{run['classifier']} on {run['feature_set']} ({dataset}): {len(wrong)} test images wrong; actual -> predicted", fontsize=9)
        axes = panel.subplots(rows_per_model, columns, squeeze=False)
        for slot, ax in enumerate(axes.flat):
            ax.axis("off")
            if slot < len(wrong):
                index, actual, predicted = wrong[slot]
                ax.imshow(test_images[index], interpolation="nearest")
                ax.set_title(f"{actual}\n-> {predicted}", fontsize=6)
    return figure


def nothing_trained_figure(dataset: str):
    """What a figure shows when no stage trained: a pointer to the table's reasons."""
    figure, axes = plt.subplots(figsize=(7, 2))
    axes.axis("off")
    axes.text(0.5, 0.5, f"No stage trained on {dataset}: see the reasons in comparison.md", ha="center", va="center")
    return figure


def html_page(table: pd.DataFrame, dataset: str, figure_files: list[str]) -> str:
    """A standalone page: the table, then the figures (files beside it)."""
    n_failed = int((table["status"] == FAILED).sum())
    failed_note = f"; {n_failed} stage(s) failed to train, listed last with the reason" if n_failed else ""
    images = "\n".join(f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}" style="max-width:100%"></p>' for name in figure_files)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>featurebench: {html.escape(dataset)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}</style>
</head><body>
<h1>featurebench: {html.escape(dataset)}</h1>
<p>Best test accuracy first{failed_note}. Numbers read back from MLflow; the same as <code>dvc metrics show</code>.</p>
{blank_missing(table).to_html(index=False, float_format=lambda value: f"{value:.4g}", border=0)}
{images}
</body></html>
"""
