"""The report's table and figures, from a frame shaped like `mlflow.search_runs` returns."""
import numpy as np
import pandas as pd

from pipeline import report


def search_runs_frame() -> pd.DataFrame:
    rows = [
        ("svm", "hog", 0.61, 1764, 0.9, "0.001"),
        ("softmax", "pixels", 0.42, 3072, 2.5, "0.003"),
        ("mlp", "pixels", 0.58, 3072, 30.0, "0.01"),
        ("mlp", "hog", 0.66, 1764, 20.0, "0.03"),
    ]
    return pd.DataFrame(
        {
            "run_id": [f"run{i}" for i in range(len(rows))],
            "tags.classifier": [r[0] for r in rows],
            "tags.feature_set": [r[1] for r in rows],
            "metrics.test_accuracy": [r[2] for r in rows],
            "metrics.val_accuracy": [r[2] - 0.01 for r in rows],
            "metrics.train_accuracy": [0.9] * len(rows),
            "metrics.feature_dim": [float(r[3]) for r in rows],
            "metrics.n_parameters": [float(r[3] * 10 + 10) for r in rows],
            "metrics.extract_seconds": [0.5] * len(rows),
            "metrics.train_seconds": [r[4] for r in rows],
            "metrics.search_seconds": [r[4] * 0.7 for r in rows],
            "metrics.n_trials": [6.0] * len(rows),
            "metrics.test_accuracy.cat": [0.5, 0.4, 0.6, 0.7],
            "metrics.test_accuracy.dog": [0.7, 0.44, 0.56, 0.62],
            "params.chosen.learning_rate": [r[5] for r in rows],
            "params.chosen.hidden_sizes": [None if r[0] != "mlp" else "[1024]" for r in rows],
        }
    )


def test_the_table_is_sorted_by_test_accuracy_with_counts_as_integers_and_chosen_params_as_numbers():
    table = report.comparison_table(search_runs_frame())
    assert list(table["test_accuracy"]) == [0.66, 0.61, 0.58, 0.42]
    assert list(table.columns[: 2 + len(report.METRIC_COLUMNS)]) == ["classifier", "feature_set", *report.METRIC_COLUMNS]
    assert table["feature_dim"].dtype == "Int64" and table["learning_rate"].dtype == float
    assert {"test_accuracy.cat", "test_accuracy.dog", "run_id"} <= set(table.columns)
    assert list(table["hidden_sizes"]) == ["[1024]", "", "[1024]", ""]  # blank for the linear models, not nan


def test_the_best_of_each_family_is_the_top_linear_model_and_the_top_mlp():
    best = report.best_of_each_family(report.comparison_table(search_runs_frame()))
    assert list(zip(best["classifier"], best["feature_set"])) == [("svm", "hog"), ("mlp", "hog")]


def test_the_per_class_heat_map_holds_one_row_per_family_in_class_order():
    best = report.best_of_each_family(report.comparison_table(search_runs_frame()))
    figure = report.per_class_accuracy_figure(best, ["dog", "cat"], "unit")
    values = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(values, [[0.7, 0.5], [0.62, 0.7]])
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["svm on hog", "mlp on hog"]


def test_the_misclassified_grid_shows_the_images_each_best_model_gets_wrong(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name, rows in {"svm-hog": [(0, "cat", "cat"), (1, "cat", "dog"), (2, "dog", "cat")], "mlp-hog": [(0, "cat", "dog"), (1, "cat", "cat"), (2, "dog", "dog")]}.items():
        folder = tmp_path / "results/train" / name
        folder.mkdir(parents=True)
        (folder / "predictions.csv").write_text("index,actual,predicted\n" + "".join(f"{i},{a},{p}\n" for i, a, p in rows))
    assert report.wrong_predictions("svm", "hog") == [(1, "cat", "dog"), (2, "dog", "cat")]
    images = np.stack([np.full((8, 8, 3), value, np.uint8) for value in (10, 20, 30)])
    best = report.best_of_each_family(report.comparison_table(search_runs_frame()))
    figure = report.misclassified_figure(best, images, "unit", per_model=4, columns=4)
    shown = [(ax.get_title(), ax.images[0].get_array()[0, 0, 0]) for subfigure in figure.subfigs for ax in subfigure.axes if ax.images]
    assert shown == [("cat\n-> dog", 20), ("dog\n-> cat", 30), ("cat\n-> dog", 10)]
