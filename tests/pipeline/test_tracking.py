from pathlib import Path

import pytest

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


@pytest.mark.parametrize("uri", ["garbage://foo", "not a uri at all", "/some/path/mlflow.db", "file:///tmp/mlruns", "./mlruns"])
def test_a_uri_no_store_opens_at_is_refused_in_one_line(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.StoreError, match="is not a store MLflow 3 opens"):
        tracking.tracking_uri()


def test_a_sqlite_uri_naming_a_folder_is_refused_with_a_file_name_to_add(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}")
    with pytest.raises(tracking.StoreError, match=f"names a folder.*sqlite:///{tmp_path / 'mlflow.db'}"):
        tracking.tracking_uri()


@pytest.mark.parametrize("uri", ["postgresql+psycopg2://u@h/db", "https://mlflow.example.org", "databricks", "sqlite:////tmp/x/mlflow.db"])
def test_store_uris_mlflow_opens_are_taken_as_given(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.tracking_uri() == uri


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


def fake_dvc(tmp_path, body: str):
    """An executable named `dvc` that runs `body` with this interpreter: a real process to find as ancestor."""
    import sys

    script = tmp_path / "dvc"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(0o755)
    return script


def child_output(script, env) -> list[str]:
    import subprocess

    return subprocess.run([str(script)], capture_output=True, text=True, check=True, env=env).stdout.split()


def test_stages_started_by_one_dvc_process_share_a_run_group_and_another_dvc_process_gets_another(tmp_path):
    """The chain dvc -> shell -> stage, as `dvc repro` runs it; each stage is a separate python process."""
    import os

    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    stage = f"import sys; sys.path.insert(0, {root!r}); from pipeline import tracking; print(tracking.run_group(), tracking.dvc_ancestor())"
    # "dvc" runs two stages through a shell, like DVC does, and prints its own pid
    body = (
        "import os, subprocess, sys; print(os.getpid());"
        f"[subprocess.run(['/bin/sh', '-c', sys.executable + ' -c ' + repr({stage!r})], check=True) for _ in range(2)]"
    )
    script = fake_dvc(tmp_path, body)
    env = {k: v for k, v in os.environ.items() if k != tracking.RUN_GROUP_ENV}
    first = child_output(script, env)
    dvc_pid, (group_a, ancestor_a), (group_b, ancestor_b) = first[0], first[1:3], first[3:5]
    assert ancestor_a == ancestor_b == dvc_pid
    assert group_a == group_b and dvc_pid in group_a.split("-")
    second = child_output(script, env)
    assert second[1] != group_a  # a new `dvc repro` is a new group
    assert child_output(script, {**env, tracking.RUN_GROUP_ENV: "chosen"})[1] == "chosen"
    assert tracking.dvc_ancestor() is None  # pytest has no dvc above it


def test_two_stages_of_one_group_share_one_finished_parent_that_fails_with_a_failing_stage(monkeypatch, tmp_path):
    import mlflow
    import pytest

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.RUN_GROUP_ENV, "group-one")
    with tracking.training_run(dataset="unit", run_name="a", tags={}, params={}) as first:
        pass
    with tracking.training_run(dataset="unit", run_name="b", tags={}, params={}) as second:
        pass
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {run.info.run_id: run for run in client.search_runs([first.info.experiment_id])}
    parent_id = runs[first.info.run_id].data.tags["mlflow.parentRunId"]
    assert runs[second.info.run_id].data.tags["mlflow.parentRunId"] == parent_id
    parent = runs[parent_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["run_group"] == "group-one"
    assert parent.info.end_time >= runs[second.info.run_id].info.end_time
    assert {"git_commit", "dvc_experiment", "dataset"} <= set(parent.data.tags)
    with pytest.raises(FloatingPointError):
        with tracking.training_run(dataset="unit", run_name="c", tags={}, params={}):
            raise FloatingPointError("diverged")
    assert client.get_run(parent_id).info.status == "FAILED"
    monkeypatch.setenv(tracking.RUN_GROUP_ENV, "group-two")
    with tracking.training_run(dataset="unit", run_name="d", tags={}, params={}) as other:
        pass
    assert client.get_run(other.info.run_id).data.tags["mlflow.parentRunId"] != parent_id


def test_stages_of_one_group_starting_together_find_one_parent(monkeypatch, tmp_path):
    """Three processes race to create the group's parent; the lock leaves exactly one."""
    import os
    import subprocess
    import sys

    import mlflow

    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from pipeline import tracking\n"
        "with tracking.training_run(dataset='unit', run_name='r', tags={}, params={}): pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {tracking.RUN_GROUP_ENV: "raced"}
    # the store and experiment exist first, as after the first repro; the race is for the parent
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    tracking.connect("unit")
    stages = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env) for _ in range(3)]
    assert [stage.wait(timeout=300) for stage in stages] == [0, 0, 0]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/unit")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.run_group = 'raced'")
    parents = [r for r in runs if r.data.tags["featurebench.role"] == "group"]
    assert len(parents) == 1 and len(runs) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in runs if r.data.tags["featurebench.role"] == "stage"} == {parents[0].info.run_id}


def test_trials_nest_under_the_stage_run_with_every_dataclass_field_they_carry(monkeypatch, tmp_path):
    """A trial shaped like models.search.Trial, with a field the search may add (model_config)."""
    from dataclasses import dataclass, field

    import mlflow

    from models.mlp import MLPConfig
    from models.training import EpochRecord, TrainConfig

    @dataclass
    class Trial:
        config: TrainConfig
        model_config: MLPConfig
        val_accuracy: float
        seconds: float
        history: list = field(default_factory=list)
        model: object = None

    history = [EpochRecord(epoch, 1.0 / epoch, 0.5, 0.4 + epoch / 100, 0.01) for epoch in (1, 2, 3)]
    trials = [
        Trial(TrainConfig(learning_rate=rate), MLPConfig(input_dim=4, n_classes=2, hidden_sizes=[8]), 0.43, 1.5, history, object())
        for rate in (0.01, 0.1)
    ]
    params, metrics, curves = tracking.trial_record(trials[0])
    assert params["config.learning_rate"] == 0.01 and params["model_config.hidden_sizes"] == [8]
    assert metrics == {"val_accuracy": 0.43, "seconds": 1.5}
    assert [step for step, _ in curves] == [1, 2, 3] and curves[0][1]["epoch_train_loss"] == 1.0

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with tracking.training_run(dataset="unit", run_name="stage", tags={}, params={}) as stage:
        tracking.log_trials(trials)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = client.search_runs([stage.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{stage.info.run_id}'")
    assert sorted(float(r.data.params["config.learning_rate"]) for r in children) == [0.01, 0.1]
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["featurebench.role"] == "trial"
        assert child.data.params["model_config.activation"] == "relu"
        assert child.data.metrics["val_accuracy"] == 0.43
        assert [m.step for m in client.get_metric_history(child.info.run_id, "epoch_val_accuracy")] == [1, 2, 3]


def test_a_run_records_the_data_set_as_an_input_with_name_and_digest(monkeypatch, tmp_path):
    import mlflow
    import numpy as np

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    data = tracking.DataInput("unit", "0123456789abcdef", str(tmp_path), np.zeros((4, 8, 8, 3), np.uint8), np.arange(4))
    with tracking.training_run(dataset="unit", run_name="r", tags={}, params={}, data=data) as run:
        pass
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = client.get_run(run.info.run_id)
    [data_input] = logged.inputs.dataset_inputs
    assert (data_input.dataset.name, data_input.dataset.digest) == ("unit", "0123456789abcdef")
    assert '"features_shape": [4, 8, 8, 3]' in data_input.dataset.profile
    parent = client.get_run(logged.data.tags["mlflow.parentRunId"])
    assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == ["0123456789abcdef"]


def test_a_logged_model_loads_as_pyfunc_and_predicts_like_the_model_with_its_two_requirements(monkeypatch, tmp_path):
    """log_final gives MLflow the model's requirements and the module map they need: the same files as when
    MLflow scanned every installed distribution, and MLflow's map is left as it found it."""
    import mlflow
    import numpy as np
    import torch
    from mlflow.utils import requirements_utils

    from models.figures import confusion_figure
    from models.mlp import MLP, MLPConfig, StandardizedClassifier

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = StandardizedClassifier(torch.full((6,), 1.0), torch.full((6,), 2.0), MLP(MLPConfig(input_dim=6, n_classes=3))).eval()
    example = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    figure = confusion_figure(np.eye(3, dtype=int), ["a", "b", "c"], "t")
    with tracking.training_run(dataset="unit", run_name="r", tags={}, params={}) as run:
        tracking.log_final({"test_accuracy": 0.5}, {"confusion_matrix.png": figure}, model, input_example=example)
    assert requirements_utils._MODULES_TO_PACKAGES is None
    figures = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="confusion_matrix.png", dst_path=str(tmp_path / "figures")))
    assert figures.stat().st_size > 0
    saved = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "model")))
    requirements = (saved / "requirements.txt").read_text().split()
    assert requirements == [f"mlflow=={mlflow.__version__}", "torch"]
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rows = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(np.asarray(loaded.predict(rows)), expected, rtol=1e-5, atol=1e-6)


def test_experiment_tags_are_written_once_and_kept_by_later_stages(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    first = tracking.connect("unit")
    client = mlflow.MlflowClient()
    client.set_experiment_tag(first.experiment_id, "mlflow.experimentKind", "changed by hand")
    again = tracking.connect("unit")
    tags = client.get_experiment(again.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # a changed tag is written back
    assert tags[f"mlflow.sharedViewState.{tracking.COMPARISON_VIEW}"] == tracking.json.dumps(tracking.comparison_view_state())


def test_the_history_is_logged_as_curves_with_the_epoch_as_step(monkeypatch, tmp_path):
    import mlflow

    from models.training import EpochRecord

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    history = [EpochRecord(epoch, 1.0 / epoch, 0.5 + epoch / 10, 0.4 + epoch / 10, 0.01 * epoch) for epoch in (1, 2, 3)]
    with tracking.training_run(dataset="unit", run_name="r", tags={}, params={}) as run:
        tracking.log_history(history)
    client = mlflow.MlflowClient()
    for key, field in [("epoch_train_loss", "train_loss"), ("epoch_val_accuracy", "val_accuracy"), ("epoch_learning_rate", "learning_rate")]:
        curve = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert curve == [(r.epoch, getattr(r, field)) for r in history]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_accuracy")] == [1, 2, 3]


def test_reading_runs_from_a_store_that_does_not_exist_creates_nothing(monkeypatch, tmp_path):
    store = tmp_path / "no-such-folder" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    with pytest.raises(FileNotFoundError, match="no MLflow store at .*run `dvc repro`"):
        tracking.download_artifacts("0123456789abcdef", "featurizer", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no MLflow store at"):
        tracking.load_model("0123456789abcdef")
    assert not store.parent.exists()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_is_one_line_naming_it(monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.StoreError, match=f"the MLflow tracking server {uri} does not answer"):
        tracking.find_experiment("shapes")  # compare's read; before: minutes of MLflow's retries, then its traceback
    with pytest.raises(tracking.StoreError, match=f"the MLflow tracking server {uri} does not answer"):
        tracking.existing_store_uri()  # predict's


@pytest.mark.parametrize("status", [200, 404])
def test_a_tracking_server_that_answers_passes_the_check_once(status):
    import http.server
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        tracking.check_server_answers(uri)
        tracking.check_server_answers(uri)
        assert asked == ["/health"]  # asked once a process
    finally:
        server.shutdown()
        tracking._answering_servers.clear()
