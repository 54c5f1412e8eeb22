"""The MLflow UI in a real browser: headless Chromium on `featurebench ui` over the end-to-end project's store.

Chromium is Debian's `chromium` package (`.ci/run` installs it). Without it the tests skip, unless
CI=true or FEATUREBENCH_REQUIRE_BROWSER=1 (set by `.ci/run`), where a missing browser is a failure.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse

from tests.pipeline.conftest import expected_runs, stage_runs
from tests.required import missing


FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
BUDGET_MS = 30000  # virtual time for the single-page app to fetch the runs and render them


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium", "`.ci/run` installs Debian's chromium package (apt-get install chromium)", "FEATUREBENCH_REQUIRE_BROWSER")
    return found


def browse(url: str, *, window: str = "1600,1000", screenshot: str | None = None) -> str:
    """The page's DOM after the app has rendered, as plain text (tags and scripts removed)."""
    with tempfile.TemporaryDirectory(prefix="featurebench-chromium-") as profile:
        action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        result = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={window}", f"--virtual-time-budget={BUDGET_MS}", *action, url],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", result.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def stage_run_metrics(project) -> dict[str, tuple[str, float]]:
    """{run name: (run id, test accuracy)} of the current training runs, from results/train/*/."""
    runs = {}
    for folder in sorted((project / "results/train").iterdir()):
        run_id = json.loads((folder / "run.json").read_text())["run_id"]
        runs[folder.name] = (run_id, json.loads((folder / "metrics.json").read_text())["test_accuracy"])
    return runs


def test_featurebench_ui_opens_the_runs_table_comparing_every_run_by_its_numbers(tiny_project, mlflow_ui):
    import mlflow

    project, params, _, _ = tiny_project
    base, experiment_id, announced = mlflow_ui
    url = announced.split(" at ")[1].split()[0]
    assert url == f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey=comparison"
    text = browse(url, window="2400,900")
    assert "Training runs" in text  # the model-development page, not the GenAI overview
    runs = stage_run_metrics(project)
    assert len(runs) >= len(expected_runs(params))
    # every stage run of every repro (other tests in this process may have run `dvc repro` again), flat:
    # neither the repros' parents nor the search trials
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    logged = stage_runs(client, experiment_id)
    assert f"{len(logged)} matching runs" in text
    for name, (_, accuracy) in runs.items():
        assert f" {name} " in text, f"run {name} is not listed"
        assert f" {accuracy:g} " in text, f"test accuracy {accuracy} of {name} is not shown"
    for column in ("test_accuracy", "val_accuracy", "train_seconds", "extract_seconds", "feature_dim", "n_parameters"):
        assert f" {column} " in text, f"no {column} column"
    best_by_name = {}
    for logged_run in logged:
        name, accuracy = logged_run.info.run_name, logged_run.data.metrics["test_accuracy"]
        best_by_name[name] = max(accuracy, best_by_name.get(name, accuracy))
    listed = sorted(runs, key=lambda name: text.index(f" {name} "))
    assert best_by_name[listed[0]] == max(best_by_name.values())  # sorted by test accuracy


def test_the_grouped_runs_table_shows_one_parent_per_repro(tiny_project, mlflow_ui):
    import mlflow

    project, _, _, _ = tiny_project
    base, experiment_id, _ = mlflow_ui
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    every_run = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in every_run if r.data.tags["featurebench.role"] == "group"]
    text = browse(f"{base}/#/experiments/{experiment_id}/runs")
    assert f"{len(every_run)} matching runs" in text
    for parent in parents:
        assert f" {parent.info.run_name} " in text
    for name in stage_run_metrics(project):
        assert f" {name} " not in text, f"{name} should sit folded under its parent, not beside it"


def compared_metric(text: str, metric: str) -> dict[str, str]:
    """{run name: shown value} of one metric row of MLflow's compare-runs page, read from its text.

    The page lists run names in one row ("Run Name: a b c"), then the metric names, then the values
    row by row; a grid virtualizes what lies outside the window, hence the wide window.
    """
    names = text[text.index("Run Name:") + len("Run Name:") : text.index("Start Time:")].split()
    section = text[text.index("Metrics Show diff only") : text.index("Artifacts", text.index("Metrics Show diff only"))].split()[4:]
    metric_names = [token for token in section if not re.fullmatch(r"-?[\d.e+-]+", token)]
    values = section[len(metric_names) :]
    assert len(values) % len(names) == 0 and len(values) >= len(metric_names) * len(names) - len(names), (metric_names, values)
    row = metric_names.index(metric)
    return dict(zip(names, values[row * len(names) : (row + 1) * len(names)]))


def test_the_runs_compared_side_by_side_show_their_metrics(tiny_project, mlflow_ui, tmp_path):
    project, _, _, _ = tiny_project
    base, experiment_id, _ = mlflow_ui
    runs = stage_run_metrics(project)
    query = urllib.parse.urlencode({"runs": json.dumps([run_id for run_id, _ in runs.values()]), "experiments": json.dumps([experiment_id])})
    url = f"{base}/#/compare-runs?{query}"
    window = f"{600 + 260 * len(runs)},1600"  # wide enough that no run's column is virtualized away
    text = browse(url, window=window)
    assert f"Comparing {len(runs)} Runs" in text
    for metric in ("extract_seconds", "n_parameters", "test_accuracy", "test_accuracy.disk"):
        assert f" {metric} " in text
    shown = compared_metric(text, "test_accuracy")
    assert shown == {name: f"{round(accuracy, 3):g}" for name, (_, accuracy) in runs.items()}  # the UI rounds to 3 decimals
    screenshot = tmp_path / "compare.png"
    browse(url, window=window, screenshot=str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
