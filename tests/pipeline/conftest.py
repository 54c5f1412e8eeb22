"""The end-to-end project shared by the tests that need one: a real `dvc repro` on tiny params, run once
per test session (the browser test and the end-to-end tests read the same MLflow store)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["pipeline", "features", "models", "experiments", "dvc.yaml", "params.yaml", "pyproject.toml"]

TINY = {
    "data": {"shapes": {"n_train": 300, "n_test": 100}},
    "extractors": {"bovw": {"n_clusters": 8, "n_patches": 2000}},
    "linear": {
        "feature_sets": ["pixels", "bovw", "hog+color_hist"],
        "learning_rates": [0.01],
        "reg_strengths": [0.0001, 0.001],
        "epochs": 3,
        "overrides": {"bovw": {"epochs": 2, "learning_rates": [0.01]}},
    },
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


@pytest.fixture(scope="session")
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
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run(command, project, env)
    shutil.copytree(ROOT / ".dvc/plots", project / ".dvc/plots")  # the custom plot templates dvc.yaml names; `dvc init` made .dvc
    run(["git", "add", "-A"], project, env)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], project, env)
    return params, env


def expected_runs(params) -> list[tuple[str, str]]:
    return [(c, f) for c in params["linear"]["classifiers"] for f in params["linear"]["feature_sets"]] + [
        ("mlp", f) for f in params["mlp"]["feature_sets"]
    ]


def stage_runs(client, experiment_id: str) -> list:
    """The training stages' runs (not the run groups' parents, not the search trials)."""
    return client.search_runs([experiment_id], filter_string="tags.`featurebench.role` = 'stage'", max_results=1000)


@pytest.fixture(scope="session")
def mlflow_ui(tiny_project):
    """`featurebench ui` serving the tiny project's store on a free port: (base URL, experiment id)."""
    project, _, env, _ = tiny_project
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["featurebench", "ui", "--port", str(port), "--no-browser"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        announced = server.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=featurebench/shapes", timeout=5) as response:
                    experiment_id = json.load(response)["experiment"]["experiment_id"]
                break
            except OSError:
                assert server.poll() is None, "featurebench ui exited"
                assert time.monotonic() < deadline, "featurebench ui did not answer within 120 s"
                time.sleep(1)
        yield base, experiment_id, announced
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
