"""`dvc repro` for real, in a temporary git repository, on a tiny shapes configuration."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["pipeline", "features", "models", "experiments", "dvc.yaml", "params.yaml", "pyproject.toml"]

TINY = {
    "data": {"shapes": {"n_train": 300, "n_test": 100}},
    "extractors": {"bovw": {"n_clusters": 8, "n_patches": 2000}},
    "linear": {"feature_sets": ["pixels", "bovw", "hog+color_hist"], "learning_rates": [0.01], "reg_strengths": [0.0001, 0.001], "epochs": 3},
    "mlp": {"feature_sets": ["pixels"], "hidden_sizes": [32], "epochs": 3},
}


def deep_update(target: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict):
            deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value
    return target


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A git + DVC repository holding the project's pipeline with tiny params, after one `dvc repro`."""
    project = tmp_path_factory.mktemp("project")
    params, env = make_project(project, deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY))
    first = run(["dvc", "repro"], project, env)
    return project, params, env, first


def make_project(project: Path, params: dict) -> tuple[dict, dict]:
    """Copy the project's pipeline into `project` with `params`, commit it to a new git + DVC repository.

    Returns (params, environment for commands run there: this Python's tools, the project's own store).
    """
    project.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        run(command, project, env)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], project, env)
    return params, env


def expected_runs(params) -> list[tuple[str, str]]:
    return [(c, f) for c in params["linear"]["classifiers"] for f in params["linear"]["feature_sets"]] + [
        ("mlp", f) for f in params["mlp"]["feature_sets"]
    ]


def test_every_stage_ran(tiny_project):
    project, params, _, first = tiny_project
    ran = {line.split("'")[1] for line in first.stdout.splitlines() if line.startswith("Running stage")}
    expected = {"prepare", "compare"} | {f"extract@{name}" for name in params["extractors"]}
    expected |= {f"train@{c}-{f}" for c, f in expected_runs(params) if c != "mlp"}
    expected |= {f"train_mlp@{f}" for c, f in expected_runs(params) if c == "mlp"}
    assert ran == expected


def test_mlflow_holds_one_finished_run_per_training_stage_with_the_dvc_metrics(tiny_project):
    import mlflow

    project, params, _, _ = tiny_project
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    by_key = {(r.data.tags["classifier"], r.data.tags["feature_set"]): r for r in runs}
    assert len(runs) == len(by_key) == len(expected_runs(params))
    assert set(by_key) == set(expected_runs(params))
    for (classifier, feature_set), mlflow_run in by_key.items():
        assert mlflow_run.info.status == "FINISHED"
        metrics = json.loads((project / "results/train" / f"{classifier}-{feature_set}" / "metrics.json").read_text())
        for key, value in metrics.items():
            assert mlflow_run.data.metrics[key] == pytest.approx(value), key
        assert mlflow_run.data.tags["dataset"] == "shapes"
        assert mlflow_run.data.tags["dvc_stage"].endswith(f"{classifier}-{feature_set}") or mlflow_run.data.tags["dvc_stage"].endswith(f"@{feature_set}")
        history = client.get_metric_history(mlflow_run.info.run_id, "epoch_val_accuracy")
        assert [m.step for m in history] == list(range(1, params[("mlp" if classifier == "mlp" else "linear")]["epochs"] + 1))
        artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
        assert {"confusion_matrix.png", "learning_curve.png"} <= artifacts


def test_dvc_metrics_show_reads_every_run(tiny_project):
    project, params, env, _ = tiny_project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    files = next(iter(shown.values()))["data"]
    for classifier, feature_set in expected_runs(params):
        assert f"results/train/{classifier}-{feature_set}/metrics.json" in files


def test_comparison_table_is_sorted_by_test_accuracy(tiny_project):
    import pandas as pd

    project, params, _, _ = tiny_project
    table = pd.read_csv(project / "reports/comparison.csv")
    assert len(table) == len(expected_runs(params))
    assert list(table["test_accuracy"]) == sorted(table["test_accuracy"], reverse=True)
    assert "| classifier" in (project / "reports/comparison.md").read_text()


def test_second_repro_does_nothing(tiny_project):
    project, _, env, _ = tiny_project
    second = run(["dvc", "repro"], project, env)
    assert "Running stage" not in second.stdout
    status = run(["dvc", "status"], project, env)
    assert "up to date" in status.stdout


def test_featurebench_ui_serves_the_runs(tiny_project):
    import socket
    import time
    import urllib.request

    project, params, env, _ = tiny_project
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["featurebench", "ui", "--port", str(port)], cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=featurebench/shapes", timeout=5) as response:
                    experiment = json.load(response)["experiment"]
                break
            except OSError:
                assert server.poll() is None, "featurebench ui exited"
                assert time.monotonic() < deadline, "featurebench ui did not answer within 90 s"
                time.sleep(1)
        request = urllib.request.Request(
            f"{base}/runs/search",
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]], "max_results": 100}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert len(runs) == len(expected_runs(params))
        assert all(any(m["key"] == "test_accuracy" for m in run["data"]["metrics"]) for run in runs)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


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
    new_stages = {f"train@{classifier}-mean_color" for classifier in params["linear"]["classifiers"]}
    assert new_stages <= ran

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.feature_set = 'mean_color'")
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
    for mlflow_run in client.search_runs([experiment.experiment_id], filter_string="tags.classifier != 'mlp'"):
        members = mlflow_run.data.tags["feature_set"].split("+")
        pictures = {a.path for member in members for a in client.list_artifacts(mlflow_run.info.run_id, f"features/{member}")}
        drawn = [member for member in members if (project / "data/features" / member / "preview.png").exists()]
        assert pictures == {f"features/{member}/preview.png" for member in drawn}
