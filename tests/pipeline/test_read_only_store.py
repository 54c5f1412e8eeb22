"""A read-only MLflow store, through the real commands: writers stop in one line naming the store and
the fix; `featurebench compare` only reads, so it still works.

The store is made read-only by SQLite itself (a `mode=ro` URI): the tests run as root on some machines,
and root ignores file permission bits, so a chmod'ed file would still be written. SQLite refuses the
write with the same "attempt to write a readonly database" a chmod'ed file or folder gives a normal user.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data": {"shapes": {"n_train": 300, "n_test": 100}},
    "linear": {
        "classifiers": ["svm"], "feature_sets": ["pixels"], "learning_rates": [0.01], "reg_strengths": [0.0001],
        "epochs": 1, "augment": "none", "overrides": {},
    },
    "mlp": {"feature_sets": []},
    "extract": {"mirror": False},
}


def run(project: Path, *arguments: str, store: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    if store:
        env["MLFLOW_TRACKING_URI"] = store
    return subprocess.run([sys.executable, *arguments], cwd=project, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with one training stage logged to its own store: (project, the store as a read-only URI)."""
    project = tmp_path_factory.mktemp("read_only_store")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["pipeline.prepare"], ["pipeline.extract", "pixels"], ["pipeline.train", "svm", "pixels"]):
        result = run(project, "-m", *command)
        assert result.returncode == 0, result.stderr
    assert (project / "mlflow.db").exists()
    return project, f"sqlite:///file:{project / 'mlflow.db'}?mode=ro&uri=true"


def assert_read_only_refusal(result: subprocess.CompletedProcess, command: str, store: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0] == (
        f"featurebench {command}: error: the MLflow store {store} is read-only (attempt to write a readonly database); "
        "make the file and its folder writable, or set MLFLOW_TRACKING_URI to a store you can write"
    )


def test_featurebench_compare_reads_a_read_only_store(trained):
    project, store = trained
    result = run(project, "-m", "pipeline.cli", "compare", store=store)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("shapes: 1 runs") and "svm" in result.stdout and "pixels" in result.stdout


def test_training_stops_in_one_line_before_it_trains_and_keeps_the_results(trained):
    project, store = trained
    run_file = project / "results/train/svm-pixels/run.json"
    before = json.loads(run_file.read_text())
    result = run(project, "-m", "pipeline.train", "svm", "pixels", store=store)
    assert_read_only_refusal(result, "train", store)
    assert json.loads(run_file.read_text()) == before


def test_the_compare_stage_stops_in_one_line_when_it_cannot_log_the_report(trained):
    project, store = trained
    result = run(project, "-m", "pipeline.compare", store=store)
    assert_read_only_refusal(result, "compare", store)


def test_reading_a_store_that_does_not_exist_does_not_create_it(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "results/train/svm-pixels").mkdir(parents=True)
    (tmp_path / "results/train/svm-pixels/run.json").write_text(json.dumps({"run_id": "0" * 32, "dataset": "shapes"}))
    result = run(tmp_path, "-m", "pipeline.cli", "compare")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"featurebench compare: error: the MLflow store sqlite:///{tmp_path.resolve() / 'mlflow.db'} has no experiment "
        "featurebench/shapes; run `dvc repro --force` to log the runs again"
    )
    assert not (tmp_path / "mlflow.db").exists()
