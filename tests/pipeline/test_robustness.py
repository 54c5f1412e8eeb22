"""What a pipeline left running for an hour meets: a killed `dvc repro`, queued experiments run in
parallel, and re-runs that must agree. Real DVC in temporary git repositories, on a tiny configuration
of one extractor and two training stages, so that every stage kind is there and each run is cheap."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import ROOT, deep_update, make_project, run


TINY = {
    "data": {"shapes": {"n_train": 300, "n_test": 100}},
    "linear": {"classifiers": ["softmax"], "feature_sets": ["pixels"], "learning_rates": [0.01], "reg_strengths": [0.0001], "epochs": 3},
    "mlp": {"feature_sets": ["pixels"], "hidden_sizes": [16], "learning_rates": [0.01], "reg_strengths": [0.0001], "epochs": 3},
}
TRAINING_STAGES = {"train@pixels": "softmax-pixels", "train_mlp@pixels": "mlp-pixels"}
DEADLINE_SECONDS = 300
NEVER_ENDING_EPOCHS = 100_000  # minutes of training even on TINY's 300 images: a stage cannot end before its signal


def make_tiny_project(path: Path) -> tuple[Path, dict]:
    """A git + DVC repository holding the pipeline with TINY params and only the pixels extractor."""
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["extractors"] = {"pixels": {}}
    params["linear"]["overrides"] = params["mlp"]["overrides"] = {}  # theirs name the extractors left out
    _, env = make_project(path, params)
    return path, env


def results(project: Path) -> dict:
    """Every training stage's metrics (less the wall-clock *_seconds) and the md5 of the prepared data and features."""
    metrics = {}
    for stage_dir in TRAINING_STAGES.values():
        values = json.loads((project / "results/train" / stage_dir / "metrics.json").read_text())
        metrics[stage_dir] = {key: value for key, value in values.items() if not key.endswith("_seconds")}
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    # results/extract/*.json is left out: it holds extraction speed, which no two runs share
    outputs = {out["path"]: out["md5"] for name in ("prepare", "extract@pixels") for out in lock[name]["outs"] if out["path"].startswith("data/")}
    return {"metrics": metrics, "outputs": outputs}


def mlflow_runs(project: Path) -> list[tuple[str, str, dict]]:
    """(dvc_stage tag, status, tags) of every training stage's run in the project's store (not the
    run groups' parents, not the search trials)."""
    import mlflow

    from tests.pipeline.conftest import stage_runs

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    return [(r.data.tags.get("dvc_stage"), r.info.status, r.data.tags) for r in stage_runs(client, experiment.experiment_id)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Project A after one uninterrupted `dvc repro`, and its results."""
    project, env = make_tiny_project(tmp_path_factory.mktemp("robust") / "finished")
    run(["dvc", "repro"], project, env)
    return project, env, results(project)


def test_the_same_params_and_seed_give_identical_metrics(finished):
    project, env, first = finished
    stage_dir = project / "results/train/mlp-pixels"
    before = {name: (stage_dir / name).read_bytes() for name in ("learning_curve.csv", "predictions.csv")}
    run(["dvc", "repro", "--force", "--single-item", "train_mlp@pixels"], project, env)
    assert results(project) == first
    assert {name: (stage_dir / name).read_bytes() for name in before} == before


def stage_process_running(project: Path, command: str):
    """Evidence that a stage's own process has started: its command line in /proc, run from `project`."""

    project = project.resolve()

    def evidence() -> bool:
        for entry in Path("/proc").iterdir():
            try:
                if command in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode() and (entry / "cwd").resolve() == project:
                    return True
            except (OSError, ValueError):
                continue
        return False

    return evidence


def mlflow_run_running(project: Path, stage: str):
    """Evidence that a training stage is mid-way: its MLflow run exists and is RUNNING."""

    def evidence() -> bool:
        if not (project / "mlflow.db").exists():
            return False
        try:
            with sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True, timeout=1) as store:
                found = store.execute(
                    "SELECT 1 FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                    "WHERE tags.key = 'dvc_stage' AND tags.value = ? AND runs.status = 'RUNNING'",
                    (stage,),
                ).fetchall()
        except sqlite3.Error:  # tables not created yet, or a writer holds the lock
            return False
        return bool(found)

    return evidence


# A pytest worker may hold SIGINT ignored or blocked (both survive fork and exec), and a stage started
# under it would then never see the Ctrl-C: `dvc repro` starts as from a terminal, SIGINT at its default.
AS_FROM_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); os.execvp(sys.argv[1], sys.argv[1:])"
)


def sigint_states(group: int) -> dict[str, str]:
    """{command line: ignored / blocked / handled / default} for SIGINT in each process of a process group."""
    states = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or os.getpgid(int(entry.name)) != group:
                continue
            status = dict(line.split(":\t", 1) for line in (entry / "status").read_text().splitlines() if ":\t" in line)
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue
        bit = 1 << (signal.SIGINT - 1)
        masks = {name: int(status[key].strip(), 16) & bit for name, key in (("ignored", "SigIgn"), ("blocked", "SigBlk"), ("handled", "SigCgt"))}
        states[command] = next((name for name, set_ in masks.items() if set_), "default")
    return states


def repro_killed(project: Path, env: dict, evidence, sig: signal.Signals) -> int:
    """Start `dvc repro` in its own process group; once evidence() holds, send `sig` to the whole group."""
    with open(project / "repro.log", "a") as log:
        command = [sys.executable, "-c", AS_FROM_A_TERMINAL, "dvc", "repro"]
        process = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            start = time.monotonic()
            while not evidence():
                assert process.poll() is None, f"dvc repro ended before the stage to kill started:\n{(project / 'repro.log').read_text()[-3000:]}"
                assert time.monotonic() - start < DEADLINE_SECONDS, "the stage to kill never started"
                time.sleep(0.05)
            states = sigint_states(process.pid)
            os.killpg(process.pid, sig)
            try:
                return process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"dvc repro went on for 2 minutes after {sig.name}; SIGINT in its processes when sent: {states}") from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def params_with_epochs(project: Path, section: str, epochs: int) -> dict:
    """The project's params.yaml with `section`'s epochs set; the TINY file comes back with epochs from TINY."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section]["epochs"] = epochs
    return params


def write_params(project: Path, params: dict) -> None:
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the extraction process through /proc (Linux)")
def test_a_killed_repro_reruns_to_the_same_results_and_leaves_no_run_running(finished, tmp_path):
    _, _, uninterrupted = finished
    project, env = make_tiny_project(tmp_path / "killed")
    tiny = yaml.safe_load((project / "params.yaml").read_text())

    # SIGKILL in extraction: no chance to clean up; DVC must cope with its own stale locks
    assert repro_killed(project, env, stage_process_running(project, "-m pipeline.extract pixels"), signal.SIGKILL) == -signal.SIGKILL
    # The training stages to interrupt get NEVER_ENDING_EPOCHS: a signal sent once their run is
    # RUNNING lands mid-training on any machine, never after the stage has finished its work.
    # SIGINT (Ctrl-C) in training: the stage ends its MLflow run itself
    write_params(project, params_with_epochs(project, "linear", NEVER_ENDING_EPOCHS))
    assert repro_killed(project, env, mlflow_run_running(project, "train@pixels"), signal.SIGINT) != 0
    assert "featurebench train: interrupted; nothing was written" in (project / "repro.log").read_text()
    # SIGKILL in training: the run stays RUNNING until the stage's next run ends it (train@pixels,
    # back on TINY's epochs, finishes first)
    write_params(project, params_with_epochs(project, "linear", tiny["linear"]["epochs"]) | {"mlp": {**tiny["mlp"], "epochs": NEVER_ENDING_EPOCHS}})
    assert repro_killed(project, env, mlflow_run_running(project, "train_mlp@pixels"), signal.SIGKILL) == -signal.SIGKILL
    assert ("train_mlp@pixels", "RUNNING") in [(stage, status) for stage, status, _ in mlflow_runs(project)]

    write_params(project, tiny)
    run(["dvc", "repro"], project, env)

    assert results(project) == uninterrupted
    assert "up to date" in run(["dvc", "status"], project, env).stdout
    assert not [path for path in project.rglob("*.tmp") if ".dvc" not in path.parts], "a temporary output was left behind"
    runs = mlflow_runs(project)
    assert "RUNNING" not in {status for _, status, _ in runs}
    for stage in TRAINING_STAGES:
        assert [status for name, status, _ in runs if name == stage].count("FINISHED") == 1
    statuses = {(stage, status) for stage, status, _ in runs}
    assert ("train@pixels", "FAILED") in statuses  # the Ctrl-C
    killed = [tags for stage, status, tags in runs if (stage, status) == ("train_mlp@pixels", "KILLED")]
    assert len(killed) == 1 and "was gone" in killed[0]["ended_by"]


def queue_status(project: Path, env: dict) -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed ...} from `dvc queue status`."""
    lines = run(["dvc", "queue", "status"], project, env).stdout.splitlines()
    return {line.split()[1]: line.split()[-1] for line in lines[1:] if len(line.split()) >= 4 and not line.startswith("Worker")}


def test_queued_experiments_run_two_at_a_time_and_all_log_to_the_one_store(finished):
    project, env, _ = finished
    for seed in (1, 2):
        run(["dvc", "exp", "run", "--queue", "-S", f"seed={seed}"], project, env)
    try:
        run(["dvc", "queue", "start", "-j", "2"], project, env)
        start = time.monotonic()
        while {"Queued", "Running"} & set(queue_status(project, env).values()):
            assert time.monotonic() - start < DEADLINE_SECONDS, "the queued experiments did not finish"
            time.sleep(2)
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=project, env=env, capture_output=True)
    statuses = queue_status(project, env)
    logs = {name: run(["dvc", "queue", "logs", name], project, env).stdout for name in statuses}
    assert list(statuses.values()) == ["Success", "Success"], logs
    assert not any("database is locked" in text for text in logs.values())

    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env).stdout)
    experiments = {
        rev["name"]: rev["data"]["metrics"]
        for baseline in shown
        for experiment in baseline.get("experiments") or []
        for rev in experiment["revs"]
    }
    assert set(experiments) == set(statuses)
    runs = [(stage, status, tags) for stage, status, tags in mlflow_runs(project) if tags["dvc_experiment"] in experiments]
    assert sorted((tags["dvc_experiment"], stage, status) for stage, status, tags in runs) == sorted(
        (name, stage, "FINISHED") for name in experiments for stage in TRAINING_STAGES
    )
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for stage, _, tags in runs:
        logged = client.search_runs(
            [client.get_experiment_by_name("featurebench/shapes").experiment_id],
            filter_string=f"tags.dvc_experiment = '{tags['dvc_experiment']}' and tags.dvc_stage = '{stage}'",
        )[0]
        metrics = experiments[tags["dvc_experiment"]][f"results/train/{TRAINING_STAGES[stage]}/metrics.json"]["data"]
        assert logged.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_logged_models_are_pickle_free_pt2_that_load_and_predict_as_the_stage_did(finished, monkeypatch):
    """MLflow saves the model with torch.export (.pt2) and, unless told otherwise, refuses to load a
    pickled one; the loaded model must give the stage's own test predictions."""
    import csv

    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    project, _, _ = finished
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    saved = list((project / "mlruns").rglob("model.p*"))
    assert saved and all(path.name == "model.pt2" for path in saved)  # never model.pth, a pickle
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run_id = mlflow.search_runs(
        experiment_names=["featurebench/shapes"],
        filter_string="tags.dvc_stage = 'train_mlp@pixels' and tags.dvc_experiment = 'workspace'",
        output_format="list",
    )[0].info.run_id
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.load(project / "data/features/pixels/test.npy"))).argmax(dim=1).numpy()
    class_names = json.loads((project / "data/prepared/meta.json").read_text())["class_names"]
    with open(project / "results/train/mlp-pixels/predictions.csv") as handle:
        expected = [row["predicted"] for row in csv.DictReader(handle)]
    assert [class_names[index] for index in predicted] == expected
