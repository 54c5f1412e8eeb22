"""All MLflow logging lives here: the dict written to a DVC metrics file is the dict logged to MLflow."""
from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

EXPERIMENT_PREFIX = "featurebench"


def project_root(start: Path | None = None) -> Path:
    """The repository the user works in, also from the copy that `dvc exp run --temp/--queue` runs in.

    DVC executes those experiments in a copy under <repo>/.dvc/tmp/exps/...; the store belongs to <repo>.
    """
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for index in range(len(parts) - 2):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    return here


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store at the project root (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def experiment_name(dataset: str) -> str:
    return f"{EXPERIMENT_PREFIX}/{dataset}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(params: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are logged as their string form."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def ensure_experiment(name: str, artifact_location: str | None):
    """The experiment `name`, created with `artifact_location` (<project root>/mlruns for the default store).

    MLflow would otherwise put them in ./mlruns of whichever directory creates the experiment first,
    which for `dvc exp run --temp` is a copy that DVC deletes afterwards.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            pass  # another stage created it meanwhile
    return mlflow.set_experiment(name)


def create_store_once(uri: str) -> None:
    """Create a fresh SQLite store's tables while holding a lock, so parallel stages cannot race.

    MLflow's tracking store migrates an empty database without a lock: two stages opening a fresh
    store at the same time (`dvc queue start -j 2`) both run the migrations and one fails with
    "duplicate column name". Once the tables exist, opening the store only reads the schema.
    """
    if not uri.startswith("sqlite:///") or os.name == "nt":  # no fcntl on Windows
        return
    import fcntl
    import hashlib
    import tempfile

    import mlflow

    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"featurebench-store-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        mlflow.MlflowClient(uri).search_experiments(max_results=1)


def end_abandoned_runs(experiment_id: str, stage: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `stage` started on this host by a process that no longer exists.

    A stage killed outright (SIGKILL, OOM killer, power loss) never ends its run, so it would stay
    RUNNING for ever; the next run of the same stage cleans up after it. Runs from other hosts, or whose
    process is alive (a parallel experiment, or a reused pid: the safe side), are left alone.
    Returns the ids of the runs it ended.
    """
    import mlflow

    client = mlflow.MlflowClient()
    stale = client.search_runs(
        [experiment_id], filter_string=f"tags.dvc_stage = '{stage}' and attributes.status = 'RUNNING'", max_results=1000
    )
    ended = []
    for run in stale:
        pid, host = run.data.tags.get("pid"), run.data.tags.get("hostname")
        if host != socket.gethostname() or not (pid or "").isdigit() or _process_exists(int(pid)):
            continue
        client.set_tag(run.info.run_id, "ended_by", f"a later run of {stage}: process {pid} was gone")
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    return ended


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def training_run(*, dataset: str, run_name: str, tags: dict, params: dict):
    """One MLflow run for one training stage; marked FAILED (never left RUNNING) if the block raises."""
    import mlflow

    # decided before set_tracking_uri, which exports MLFLOW_TRACKING_URI itself
    own_store = not os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri())
    create_store_once(tracking_uri())
    experiment = ensure_experiment(experiment_name(dataset), (project_root() / "mlruns").as_uri() if own_store else None)
    mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, "mlflow.experimentKind", "custom_model_development")
    all_tags = {
        "dataset": dataset,
        "git_commit": git_commit(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
        "pid": str(os.getpid()),
        "hostname": socket.gethostname(),
        **tags,
    }
    if "dvc_stage" in tags:
        end_abandoned_runs(experiment.experiment_id, tags["dvc_stage"])
    with mlflow.start_run(run_name=run_name, tags=all_tags) as run:
        mlflow.log_params(flatten(params))
        yield run


def log_epoch(record) -> None:
    """Per-epoch curves, step = epoch number."""
    import mlflow

    mlflow.log_metrics(
        {
            "epoch_train_loss": record.train_loss,
            "epoch_train_accuracy": record.train_accuracy,
            "epoch_val_accuracy": record.val_accuracy,
            "epoch_learning_rate": record.learning_rate,
        },
        step=record.epoch,
    )


def log_final(metrics: dict, figures: dict, model, input_example, pictures=()) -> None:
    """The final metrics (the DVC metrics dict itself), figures by file name, pictures (files, under features/), the model."""
    import mlflow
    import mlflow.pytorch
    import matplotlib.pyplot as plt

    mlflow.log_metrics(metrics)
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, file_name)
        plt.close(figure)
    for path in pictures:
        mlflow.log_artifact(str(path), artifact_path=f"features/{path.parent.name}")
    mlflow.pytorch.log_model(model, name="model", pip_requirements=["torch"], input_example=input_example)


def log_trial(index: int, learning_rate: float, reg_strength: float, val_accuracy: float) -> None:
    """One point of the validation search, step = trial number."""
    import mlflow

    mlflow.log_metrics(
        {"search_learning_rate": learning_rate, "search_reg_strength": reg_strength, "search_val_accuracy": val_accuracy},
        step=index,
    )


def log_chosen(chosen: dict) -> None:
    """The hyperparameters chosen on the validation split, as params so they are columns in the UI."""
    import mlflow

    mlflow.log_params({f"chosen.{key}": value for key, value in chosen.items()})
