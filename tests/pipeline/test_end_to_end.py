"""`dvc repro` for real, in a temporary git repository, on a tiny shapes configuration (tests/pipeline/conftest.py)."""
from __future__ import annotations

import json
import os
import subprocess

import mlflow
import pytest

from tests.pipeline.conftest import expected_runs, run, stage_runs



def test_every_stage_ran(tiny_project):
    project, params, _, first = tiny_project
    ran = {line.split("'")[1] for line in first.stdout.splitlines() if line.startswith("Running stage")}
    expected = {"prepare", "compare"} | {f"extract@{name}" for name in params["extractors"]}
    expected |= {f"train@{f}" for c, f in expected_runs(params) if c != "mlp"}
    expected |= {f"train_mlp@{f}" for c, f in expected_runs(params) if c == "mlp"}
    assert ran == expected


def test_mlflow_holds_one_finished_run_per_training_stage_with_the_dvc_metrics(tiny_project):
    import mlflow

    project, params, _, _ = tiny_project
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = stage_runs(client, experiment.experiment_id)
    by_key = {(r.data.tags["classifier"], r.data.tags["feature_set"]): r for r in runs}
    assert len(runs) == len(by_key) == len(expected_runs(params))
    assert set(by_key) == set(expected_runs(params))
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    for (classifier, feature_set), mlflow_run in by_key.items():
        assert mlflow_run.info.status == "FINISHED"
        folder = project / "results/train" / f"{classifier}-{feature_set}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert mlflow_run.data.metrics == pytest.approx({**metrics, **{k: v for k, v in mlflow_run.data.metrics.items() if k.startswith("epoch_")}})
        assert json.loads((folder / "run.json").read_text())["run_id"] == mlflow_run.info.run_id
        extract_seconds = sum(json.loads((project / "results/extract" / f"{m}.json").read_text())["extract_seconds"] for m in feature_set.split("+"))
        assert metrics["extract_seconds"] == pytest.approx(extract_seconds, abs=1e-3)
        assert {f"test_accuracy.{name}" for name in meta["class_names"]} <= set(metrics)
        assert mlflow_run.data.tags["dataset"] == "shapes"
        assert mlflow_run.data.tags["dvc_stage"].endswith(f"{classifier}-{feature_set}") or mlflow_run.data.tags["dvc_stage"].endswith(f"@{feature_set}")
        history = client.get_metric_history(mlflow_run.info.run_id, "epoch_val_accuracy")
        section = params["mlp" if classifier == "mlp" else "linear"]
        epochs = (section.get("overrides") or {}).get(feature_set, {}).get("epochs", section["epochs"])
        assert [m.step for m in history] == list(range(1, epochs + 1))
        artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
        assert {"confusion_matrix.png", "learning_curve.png", "featurizer"} <= artifacts
        [data_input] = mlflow_run.inputs.dataset_inputs
        assert data_input.dataset.name == "shapes" and len(data_input.dataset.digest) == 16


def test_one_repro_is_one_finished_parent_holding_the_stage_runs_and_their_trials(tiny_project):
    import mlflow

    project, params, _, _ = tiny_project
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    first_parent = client.get_run(stage_runs(client, experiment.experiment_id)[-1].data.tags["mlflow.parentRunId"])
    assert first_parent.data.tags["featurebench.role"] == "group"
    assert first_parent.info.status == "FINISHED"
    assert first_parent.data.tags["git_commit"] == run(["git", "rev-parse", "HEAD"], project, {**os.environ}).stdout.strip()
    assert first_parent.data.tags["dvc_experiment"] == "workspace"
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first_parent.info.run_id}'")
    assert sorted((r.data.tags["classifier"], r.data.tags["feature_set"]) for r in children) == sorted(expected_runs(params))
    assert first_parent.info.end_time >= max(r.info.end_time for r in children)
    grid_size = len(params["linear"]["learning_rates"]) * len(params["linear"]["reg_strengths"])
    for child in children:
        trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{child.info.run_id}'")
        if child.data.tags["classifier"] != "mlp":
            assert len(trials) == grid_size
        for trial in trials:
            assert trial.data.tags["featurebench.role"] == "trial" and trial.info.status == "FINISHED"
            assert {"config.learning_rate", "config.reg_strength"} <= set(trial.data.params)
            assert {"val_accuracy", "seconds", "epoch_val_accuracy"} <= set(trial.data.metrics)
        assert {float(t.data.params["config.learning_rate"]) for t in trials} >= {float(child.data.params["chosen.learning_rate"])}
    report = {a.path for a in client.list_artifacts(first_parent.info.run_id, "report")}
    assert {"report/comparison.html", "report/accuracy_vs_train_time.png", "report/misclassified.png"} <= report


def test_a_logged_model_has_a_signature_and_predicts_on_image_files_in_one_call(tiny_project, tmp_path, monkeypatch):
    """What the README shows: `predict_images(RUN_ID, files)` and `featurebench predict RUN_ID image ...`."""
    import numpy as np
    from mlflow.models import get_model_info
    from PIL import Image

    from pipeline.predict import predict_images

    project, _, env, _ = tiny_project
    images = np.load(project / "data/prepared/test_images.npy")[:6]
    paths = []
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"test{index}.png")
        paths.append(str(tmp_path / f"test{index}.png"))
    expected = {}
    for name in ("svm-bovw", "mlp-pixels"):  # a fitted extractor (its codebook travels with the run), an MLP
        folder = project / "results/train" / name
        run_id = json.loads((folder / "run.json").read_text())["run_id"]
        expected[run_id] = [line.split(",")[2] for line in (folder / "predictions.csv").read_text().splitlines()[1:7]]
    bovw_run, mlp_run = expected
    shown = run(["featurebench", "predict", bovw_run, *paths], project, env).stdout.splitlines()
    assert [line.split("\t") for line in shown] == [[path, label] for path, label in zip(paths, expected[bovw_run])]
    unknown = subprocess.run(["featurebench", "predict", "0" * 32, paths[0]], cwd=project, env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert f"featurebench predict: error: run {'0' * 32} has no featurizer/ in the MLflow store" in unknown.stderr
    assert ": there is no such run (`featurebench compare` lists the runs and their ids)" in unknown.stderr
    group_run = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(bovw_run).data.tags["mlflow.parentRunId"]
    grouped = subprocess.run(["featurebench", "predict", group_run, paths[0]], cwd=project, env=env, capture_output=True, text=True)
    assert grouped.returncode == 2 and ": it is a run group, not a training run; give one of the runs under it" in grouped.stderr
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(project)
    assert predict_images(mlp_run, paths) == expected[mlp_run]
    assert predict_images(bovw_run, images) == expected[bovw_run]  # an array of images works too
    signature = get_model_info(f"runs:/{bovw_run}/model").signature
    assert '"shape": [-1, 32]' in signature.inputs.to_json()  # bovw: 8 clusters x 2x2 pooling


def test_dvc_metrics_show_reads_every_run(tiny_project):
    project, params, env, _ = tiny_project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    files = next(iter(shown.values()))["data"]
    for classifier, feature_set in expected_runs(params):
        assert f"results/train/{classifier}-{feature_set}/metrics.json" in files


def test_the_report_reads_the_current_runs_back_with_the_numbers_dvc_shows(tiny_project):
    import pandas as pd

    project, params, env, _ = tiny_project
    table = pd.read_csv(project / "reports/comparison.csv")
    assert len(table) == len(expected_runs(params))
    assert list(table["test_accuracy"]) == sorted(table["test_accuracy"], reverse=True)
    shown = next(iter(json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout).values()))["data"]
    for _, row in table.iterrows():
        metrics = shown[f"results/train/{row['classifier']}-{row['feature_set']}/metrics.json"]["data"]
        for key, value in metrics.items():
            assert row[key] == pytest.approx(value), key
    assert "| classifier" in (project / "reports/comparison.md").read_text()
    page = (project / "reports/comparison.html").read_text()
    for figure in ("accuracy_vs_train_time.png", "accuracy_vs_feature_dim.png", "per_class_accuracy.png", "misclassified.png"):
        assert (project / "reports" / figure).read_bytes().startswith(b"\x89PNG")
        assert f'src="{figure}"' in page
    printed = run(["featurebench", "compare"], project, env).stdout
    best = table.iloc[0]
    assert f"{best['classifier']} {best['feature_set']}" in " ".join(printed.split())
    assert f"{best['test_accuracy']:.4f}".rstrip("0") in printed


def test_dvc_plots_show_renders_every_run_and_the_report_figures(tiny_project):
    project, params, env, _ = tiny_project
    run(["dvc", "plots", "show", "-o", "plots_out"], project, env)
    page = (project / "plots_out/index.html").read_text()
    for classifier, feature_set in expected_runs(params):
        assert f"results/train/{classifier}-{feature_set}/predictions.csv" in page
        assert f"results/train/{classifier}-{feature_set}/learning_curve.csv" in page
    assert "reports/misclassified.png" in page or "reports_misclassified.png" in page


def plotted_series(spec: dict) -> list[tuple[set[str], bool]]:
    """What each view of a Vega-Lite spec draws on y: (the data fields, whether colour tells them apart).

    Several fields share one y axis through a `fold` transform, whose key names the field of each row.
    """
    views = []
    for view in [spec, *spec.get("vconcat", []), *spec.get("hconcat", []), *spec.get("layer", [])]:
        y = view.get("encoding", {}).get("y", {}).get("field")
        if y is None:
            continue
        colour = view["encoding"].get("color", {}).get("field")
        folds = [t for t in view.get("transform", []) if "fold" in t and t.get("as", ["key", "value"])[1] == y]
        views.append((set(folds[0]["fold"]), colour == folds[0].get("as", ["key"])[0]) if folds else ({y}, False))
    return views


def test_dvc_plots_show_draws_train_and_validation_accuracy_together_and_the_train_loss(tiny_project):
    project, params, env, _ = tiny_project
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project, env).stdout)["data"]
    for classifier, feature_set in expected_runs(params):
        (curve,) = shown[f"results/train/{classifier}-{feature_set}/learning_curve.csv"]
        views = plotted_series(curve["content"])
        assert ({"train_accuracy", "val_accuracy"}, True) in views, views  # one chart, a line per split, coloured by split
        assert any("train_loss" in fields for fields, _ in views), views
        rows = curve["content"]["data"]["values"]
        epochs = len((project / f"results/train/{classifier}-{feature_set}/learning_curve.csv").read_text().splitlines()) - 1
        assert len(rows) == epochs and all({"epoch", "train_loss", "train_accuracy", "val_accuracy"} <= row.keys() for row in rows)


def test_second_repro_does_nothing_and_logs_nothing(tiny_project):
    import mlflow

    project, _, env, _ = tiny_project
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    before = len(client.search_runs([experiment.experiment_id], max_results=1000))
    second = run(["dvc", "repro"], project, env)
    assert "Running stage" not in second.stdout
    status = run(["dvc", "status"], project, env)
    assert "up to date" in status.stdout
    assert len(client.search_runs([experiment.experiment_id], max_results=1000)) == before


def test_featurebench_ui_serves_the_runs(tiny_project, mlflow_ui):
    import urllib.request

    _, params, _, _ = tiny_project
    base, experiment_id, announced = mlflow_ui
    assert f"{base}/#/experiments/{experiment_id}/runs" in announced  # the runs table, not the GenAI overview
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [experiment_id], "filter": "tags.`featurebench.role` = 'stage'", "max_results": 100}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.load(response)["runs"]
    assert len(runs) == len(expected_runs(params))
    assert all(any(m["key"] == "test_accuracy" for m in run["data"]["metrics"]) for run in runs)


def test_a_new_extractor_is_extracted_trained_and_logged_without_re_extracting_the_others(tiny_project):
    import mlflow

    from tests.pipeline.test_extractor_cli import fill_transform

    project, params, env, _ = tiny_project
    run(["featurebench", "extractor", "new", "mean_color"], project, env)
    fill_transform(project, "mean_color", "        return (images.mean(axis=(1, 2)) / 255 * self.scale).astype(np.float32)")
    result = run(["dvc", "repro"], project, env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert "extract@mean_color" in ran
    assert not {stage for stage in ran if stage.startswith("extract@")} - {"extract@mean_color"}
    assert "prepare" not in ran
    assert "train@mean_color" in ran

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.feature_set = 'mean_color' AND tags.`featurebench.role` = 'stage'")
    assert sorted(r.data.tags["classifier"] for r in runs) == sorted(params["linear"]["classifiers"])
    for mlflow_run in runs:
        metrics = json.loads((project / "results/train" / f"{mlflow_run.data.tags['classifier']}-mean_color" / "metrics.json").read_text())
        assert mlflow_run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
        assert mlflow_run.data.metrics["feature_dim"] == 3


def test_every_run_shows_the_pictures_of_its_extractors(tiny_project):
    import mlflow

    project, params, _, _ = tiny_project
    for name in ("pixels", "color_hist", "hog", "bovw"):
        assert (project / "data/features" / name / "preview.png").stat().st_size > 1000, name
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    for mlflow_run in stage_runs(client, experiment.experiment_id):
        members = mlflow_run.data.tags["feature_set"].split("+")
        pictures = {a.path for member in members for a in client.list_artifacts(mlflow_run.info.run_id, f"features/{member}")}
        drawn = [member for member in members if (project / "data/features" / member / "preview.png").exists()]
        assert pictures == {f"features/{member}/preview.png" for member in drawn}


def test_mirrored_images_are_extracted_and_feature_sets_train_on_them(tiny_project):
    import mlflow
    import numpy as np

    project, params, _, _ = tiny_project
    assert params["extract"]["mirror"] and "flip" in params["linear"]["augment"]
    images = np.load(project / "data/prepared/train_images.npy")
    pixels = {key: np.load(project / f"data/features/pixels/{key}.npy") for key in ("train", "train_mirrored")}
    assert np.array_equal(pixels["train_mirrored"], images[:, :, ::-1].reshape(len(images), -1) / np.float32(255))
    assert not np.array_equal(pixels["train_mirrored"], pixels["train"])
    bovw = project / "data/features/bovw"
    assert np.load(bovw / "train_mirrored.npy").shape == np.load(bovw / "train.npy").shape
    assert len(np.load(bovw / "val_mirrored.npy")) == len(np.load(project / "data/prepared/val_labels.npy"))
    assert not (bovw / "test_mirrored.npy").exists()  # the test split is scored as it is
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    augment = {(r.data.tags["classifier"], r.data.tags["feature_set"]): r.data.params["augment"] for r in stage_runs(client, experiment.experiment_id)}
    assert augment[("svm", "bovw")] == augment[("softmax", "hog+color_hist")] == "flip"  # their mirrored rows
    assert augment[("svm", "pixels")] == params["linear"]["augment"]  # pixel rows flip batch by batch
