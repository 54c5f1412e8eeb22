"""The report's table and figures, from a frame shaped like `mlflow.search_runs` returns."""
import numpy as np
import pandas as pd

from pipeline import compare, report

REASON = "training diverged for every learning rate tried (1e+06, 100000, 10000); lower learning_rates below 10000"


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
    assert list(table.columns[: 3 + len(report.METRIC_COLUMNS)]) == ["classifier", "feature_set", "status", *report.METRIC_COLUMNS]
    assert set(table["status"]) == {"finished"} and set(table["reason"]) == {""}
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


def with_a_failed_run(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus the run of a stage that could not train: no metrics, its status and reason as tags."""
    failed = pd.DataFrame({"run_id": ["run9"], "tags.classifier": ["svm"], "tags.feature_set": ["color_hist"], "tags.status": ["failed"], "tags.reason": [REASON]})
    return pd.concat([frame, failed], ignore_index=True)


def test_a_stage_that_failed_is_listed_last_with_its_reason_and_blank_numbers():
    table = report.comparison_table(with_a_failed_run(search_runs_frame()))
    assert list(table["test_accuracy"].iloc[:4]) == [0.66, 0.61, 0.58, 0.42]
    failed = table.iloc[-1]
    assert (failed["classifier"], failed["feature_set"], failed["status"], failed["reason"]) == ("svm", "color_hist", "failed", REASON)
    assert failed[report.METRIC_COLUMNS].isna().all()
    assert list(table["status"].iloc[:4]) == ["finished"] * 4 and list(table["reason"].iloc[:4]) == [""] * 4
    markdown = compare.summary(table).to_markdown(index=False, floatfmt=".4g")
    row = next(line for line in markdown.splitlines() if "color_hist" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["svm", "color_hist", "failed"] and cells[-1] == REASON
    assert set(cells[3:-1]) == {""}  # its accuracy, sizes and times: blank, not nan
    page = report.html_page(table, "unit", [])
    assert "1 stage(s) failed to train" in page and REASON in page
    assert ">nan<" not in page.lower() and "&lt;NA&gt;" not in page


def test_the_summary_shows_status_and_reason_only_when_a_stage_failed():
    assert {"status", "reason", "run_id"}.isdisjoint(compare.summary(report.comparison_table(search_runs_frame())).columns)
    assert {"status", "reason"} <= set(compare.summary(report.comparison_table(with_a_failed_run(search_runs_frame()))).columns)


def test_the_figures_and_the_best_of_each_family_leave_a_failed_stage_out():
    table = report.comparison_table(with_a_failed_run(search_runs_frame()))
    assert len(report.trained(table)) == 4
    only_failed_linear = table[(table["classifier"] == "mlp") | (table["status"] == "failed")]
    best = report.best_of_each_family(only_failed_linear)
    assert list(zip(best["classifier"], best["feature_set"])) == [("mlp", "hog")]  # no linear model trained: no linear row
    figure = report.accuracy_vs_feature_dim_figure(report.trained(table), "unit")
    drawn = sum(len(collection.get_offsets()) for collection in figure.axes[0].collections)
    assert drawn == 4
