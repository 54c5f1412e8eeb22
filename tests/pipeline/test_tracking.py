from pathlib import Path

from pipeline import tracking


def test_project_root_of_a_dvc_temp_experiment_is_the_outer_repository(tmp_path):
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    copy.mkdir(parents=True)
    assert tracking.project_root(copy) == tmp_path / "repo"


def test_project_root_is_the_working_directory_otherwise(tmp_path):
    assert tracking.project_root(tmp_path) == tmp_path


def test_tracking_uri_defaults_to_an_absolute_sqlite_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


def test_environment_overrides_the_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_flatten_nests_with_dots():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_a_dvc_temp_copy_logs_to_the_projects_store_and_artifact_folder(monkeypatch, tmp_path):
    """What `dvc exp run --temp` does: the stage runs in <repo>/.dvc/tmp/exps/...; nothing may stay there."""
    import mlflow
    import matplotlib.pyplot as plt

    repo = tmp_path / "repo"
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(copy)
    with tracking.training_run(dataset="unit", run_name="r", tags={"classifier": "svm"}, params={"a": {"b": 1}}) as run:
        mlflow.log_figure(plt.figure(), "figure.png")
    assert (repo / "mlflow.db").exists()
    artifact = repo / "mlruns" / run.info.run_id / "artifacts" / "figure.png"
    assert artifact.exists()
    assert not (copy / "mlruns").exists() and not (copy / "mlflow.db").exists()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.params["a.b"] == "1"


def test_a_stage_that_fails_leaves_its_run_failed_not_running(monkeypatch, tmp_path):
    import mlflow
    import pytest

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FloatingPointError):
        with tracking.training_run(dataset="unit", run_name="r", tags={}, params={}) as run:
            raise FloatingPointError("diverged")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_a_run_whose_process_is_gone_is_ended_as_killed_by_the_next_run_of_its_stage(monkeypatch, tmp_path):
    """What SIGKILL leaves: a RUNNING run nobody will end. Live processes and other hosts are left alone."""
    import socket
    import subprocess

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with tracking.training_run(dataset="unit", run_name="first", tags={"dvc_stage": "train@svm-hog"}, params={}) as first:
        pass
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert first.data.tags["pid"] and first.data.tags["hostname"] == socket.gethostname()
    experiment_id = first.info.experiment_id
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        host = socket.gethostname()
        cases = {
            "killed": ("train@svm-hog", dead.pid, host),
            "parallel": ("train@svm-hog", alive.pid, host),
            "elsewhere": ("train@svm-hog", dead.pid, "another-host"),
            "other stage": ("train@softmax-hog", dead.pid, host),
        }
        ids = {}
        for name, (stage, pid, hostname) in cases.items():
            run = client.create_run(experiment_id, tags={"dvc_stage": stage, "pid": str(pid), "hostname": hostname}, run_name=name)
            ids[name] = run.info.run_id
        with tracking.training_run(dataset="unit", run_name="again", tags={"dvc_stage": "train@svm-hog"}, params={}):
            pass
        statuses = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    finally:
        alive.kill()
        alive.wait()
    assert statuses == {"killed": "KILLED", "parallel": "RUNNING", "elsewhere": "RUNNING", "other stage": "RUNNING"}
    assert "was gone" in client.get_run(ids["killed"]).data.tags["ended_by"]


OPEN_STORE_AT_ONCE = """
import sys, time
from pathlib import Path
import mlflow
from pipeline import tracking
uri, barrier, index = sys.argv[1:]
print("ready", flush=True)
while not Path(barrier).exists():
    time.sleep(0.01)
tracking.create_store_once(uri)
mlflow.MlflowClient(uri).create_experiment(f"parallel-{index}")
"""


def test_stages_opening_a_fresh_store_at_the_same_moment_all_succeed(tmp_path):
    """What `dvc queue start -j 2` does on a new project: MLflow alone fails one with 'duplicate column name'."""
    import subprocess
    import sys

    import mlflow

    uri, barrier = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    root = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE_AT_ONCE, uri, str(barrier), str(index)], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(2)
    ]
    for process in processes:  # every process has imported mlflow before any opens the store
        assert process.stdout.readline().strip() == "ready"
    barrier.touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(error[-1500:] for error in errors)
    names = {experiment.name for experiment in mlflow.MlflowClient(uri).search_experiments()}
    assert {"parallel-0", "parallel-1"} <= names
