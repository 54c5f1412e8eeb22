"""All MLflow logging lives here: the dict written to a DVC metrics file is the dict logged to MLflow.

Runs are organized for reading side by side: one experiment per data set; every `dvc repro` or
`dvc exp run` gets one parent run (its "run group") holding the training stages' runs as children;
a stage's hyperparameter trials are children of the stage's run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.interrupts import interrupts_deferred, uninterruptible

EXPERIMENT_PREFIX = "featurebench"
RUN_GROUP_ENV = "FEATUREBENCH_RUN_GROUP"
GROUP_TAG = "run_group"
ROLE_TAG = "featurebench.role"  # "group" (the parent of one dvc repro), "stage" or "trial"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests runs by
COMPARISON_VIEW = "comparison"  # `?viewStateShareKey=comparison` on the runs table opens it
COMPARISON_COLUMNS = ["test_accuracy", "val_accuracy", "train_accuracy", "train_seconds", "extract_seconds", "feature_dim", "n_parameters"]


def comparison_view_state() -> dict:
    """The runs table as a comparison: every training stage's run, flat, best test accuracy first, its
    numbers as columns. Stored as an MLflow "shared view" (the experiment tag the UI's Share button writes)."""
    return {
        "searchFilter": f"tags.`{ROLE_TAG}` = 'stage'",
        "orderByKey": "metrics.`test_accuracy`",
        "orderByAsc": False,
        "selectedColumns": [f"metrics.`{name}`" for name in COMPARISON_COLUMNS] + ["tags.`classifier`", "tags.`feature_set`"],
    }


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


# What MLflow 3 opens as a tracking store: databases (SQLAlchemy dialects, `postgresql+psycopg2://` too),
# a tracking server, Databricks. Not a plain path or `file://`: MLflow 3 refuses the file store.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store at the project root (absolute path); a URI no store
    can be opened at is refused in one line (StoreError), not after MLflow's retries and traceback."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
    check_tracking_uri(uri)
    return uri


def check_tracking_uri(uri: str) -> None:
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else uri.lower()
    if scheme not in STORE_SCHEMES:
        raise StoreError(
            f"MLFLOW_TRACKING_URI={uri!r} is not a store MLflow 3 opens (it has no file store): give "
            "sqlite:////absolute/path/mlflow.db, a database URI or an http(s) tracking server, or unset it"
        )
    database = sqlite_file(uri)
    if database is not None and database.is_dir():
        raise StoreError(f"the MLflow store {uri} names a folder, not a SQLite file: add a file name, e.g. sqlite:///{database / 'mlflow.db'}")


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
    which for `dvc exp run --temp` is a copy that DVC deletes afterwards. Tagged as model development
    (MLflow 3 otherwise opens an experiment on its GenAI overview instead of the runs table), with the
    comparison view of `comparison_view_state`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            pass  # another stage created it meanwhile
    experiment = mlflow.set_experiment(name)
    client = mlflow.MlflowClient()
    wanted = {"mlflow.experimentKind": "custom_model_development", f"mlflow.sharedViewState.{COMPARISON_VIEW}": json.dumps(comparison_view_state())}
    for key, value in wanted.items():
        if experiment.tags.get(key) != value:  # written once, not by every stage: each write is a SQLite commit
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment


class StoreError(RuntimeError):
    """The MLflow store cannot be written (a read-only file, folder or URI); the message names it and the fix."""


READ_ONLY_SIGNS = ("readonly database", "read-only file system", "unable to open database file")


@contextmanager
def writable_store(uri: str):
    """Turn MLflow's failure to write `uri` (a 70-frame SQLAlchemy traceback) into one StoreError line.

    MLflow also logs that traceback itself before it raises; the log record is dropped when it is this
    failure, kept otherwise. A tracking server is asked first whether it answers (check_server_answers).
    """
    import logging

    check_server_answers(uri)

    def not_read_only(record: logging.LogRecord) -> bool:
        return not (record.exc_info and _read_only_reason(record.exc_info[1]))

    store_logger = logging.getLogger("mlflow.store.db.utils")
    store_logger.addFilter(not_read_only)
    try:
        yield
    except Exception as error:
        reason = _read_only_reason(error)
        if reason is None:
            raise
        raise StoreError(
            f"the MLflow store {uri} is read-only ({reason}); make the file and its folder writable, "
            "or set MLFLOW_TRACKING_URI to a store you can write"
        ) from None
    finally:
        store_logger.removeFilter(not_read_only)


SERVER_TIMEOUT_SECONDS = 10
_answering_servers: set[str] = set()


def check_server_answers(uri: str) -> None:
    """For an http(s) tracking server, one request with a short timeout, once a process: a server that is
    down or out of reach is one StoreError line naming it, where MLflow would retry for minutes first."""
    if not uri.lower().startswith(("http://", "https://")) or uri in _answering_servers:
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_SECONDS).close()
    except urllib.error.HTTPError:
        pass  # it answered, with an error status (a proxy, another server): MLflow's own requests tell the rest
    except OSError as error:  # refused, unknown host, timed out (URLError is an OSError)
        reason = getattr(error, "reason", None) or error
        raise StoreError(
            f"the MLflow tracking server {uri} does not answer ({reason}); start it, or set MLFLOW_TRACKING_URI "
            "to a store that answers (or unset it for the project's own)"
        ) from None
    _answering_servers.add(uri)


def _read_only_reason(error: BaseException) -> str | None:
    """The line of `error` (or of an error it wraps) that says the store is read-only, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for line in str(error).splitlines():
            if any(sign in line.lower() for sign in READ_ONLY_SIGNS):
                return line.strip().removeprefix("(sqlite3.OperationalError) ")
        error = error.__cause__ or error.__context__
    return None


def create_store_once(uri: str) -> None:
    """Create a fresh SQLite store's tables while holding a lock, so parallel stages cannot race.

    MLflow's tracking store migrates an empty database without a lock: two stages opening a fresh
    store at the same time (`dvc queue start -j 2`) both run the migrations and one fails with
    "duplicate column name". Once the tables exist, opening the store only reads the schema.
    filelock locks on Windows too (msvcrt), where fcntl does not exist.
    """
    if not uri.startswith("sqlite:///"):
        return
    import hashlib

    import mlflow
    from filelock import FileLock

    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"featurebench-store-{key}.lock"):
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
    """True while `pid` runs, someone else's process included (psutil: os.kill(pid, 0) would signal it on Windows)."""
    import psutil

    return psutil.pid_exists(pid)


def connect(dataset: str):
    """Point MLflow at the project's store and return the data set's experiment."""
    import mlflow

    # decided before set_tracking_uri, which exports MLFLOW_TRACKING_URI itself
    own_store = not os.environ.get("MLFLOW_TRACKING_URI")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with writable_store(uri):  # creating the store or updating tags may be the first write
        create_store_once(uri)
        return ensure_experiment(experiment_name(dataset), (project_root() / "mlruns").as_uri() if own_store else None)


def find_experiment(dataset: str):
    """The data set's experiment in the project's store, or None; only reads, so a read-only store will do."""
    import mlflow

    uri = tracking_uri()
    database = sqlite_file(uri)
    if database is not None and not database.exists():
        return None  # opening it would create it: a write, and minutes of retries in a read-only folder
    mlflow.set_tracking_uri(uri)
    with writable_store(uri):
        return mlflow.MlflowClient().get_experiment_by_name(experiment_name(dataset))


def sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite store URI (`sqlite:////abs/mlflow.db`, `sqlite:///file:PATH?mode=ro&uri=true`), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///")
    if path.startswith("file:"):
        path = path.removeprefix("file:").split("?")[0]
    return Path(path)


# --- run groups: one parent run per `dvc repro` / `dvc exp run` -------------------------------------

def _is_dvc(process) -> bool:
    """True for `dvc ...`, `python .../bin/dvc ...` and `python -m dvc ...` (a psutil.Process)."""
    argv = process.cmdline()
    names = [os.path.basename(arg) for arg in argv[:2]]
    return "dvc" in names or "dvc.exe" in names or argv[1:3] == ["-m", "dvc"]


def dvc_ancestor(pid: int | None = None) -> int | None:
    """The nearest process above `pid` (default: this one) that runs dvc, or None.

    psutil walks the parents on Linux, macOS and Windows alike; an ancestor whose command line
    cannot be read (another user's, or gone meanwhile) is passed over.
    """
    import psutil

    try:
        parents = psutil.Process(pid).parents()
    except psutil.Error:
        return None
    for parent in parents:
        try:
            if _is_dvc(parent):
                return parent.pid
        except psutil.Error:
            continue
    return None


def _boot_id() -> str:
    """Linux's id of this boot, where the kernel offers one; elsewhere the process start times suffice."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "boot"


def run_group() -> str:
    """The key shared by every stage of one `dvc repro` or `dvc exp run`.

    The stages are separate processes; what they share is the dvc process that started them (one
    per queued or temp experiment too), identified by host, boot, pid and start time so a reused pid
    is a new group. Every stage of one repro must compute the same start time: on Linux psutil adds
    the boot time of /proc/stat, which moves when the clock is set, so the time since boot is used;
    macOS and Windows give the start time as the kernel recorded it. `featurebench run` sets
    FEATUREBENCH_RUN_GROUP instead. A stage run by hand outside dvc is a group of its own.
    """
    import psutil

    if os.environ.get(RUN_GROUP_ENV):
        return os.environ[RUN_GROUP_ENV]
    pid = dvc_ancestor() or os.getpid()
    try:
        created = psutil.Process(pid).create_time()
        started = f"{created - psutil.boot_time() if psutil.LINUX else created:.2f}"
    except psutil.Error:
        started = str(time.time_ns())
    return f"{socket.gethostname()}-{_boot_id()}-{pid}-{started}"


@contextmanager
def _group_lock():
    """Serializes finding-or-creating a group's parent among this machine's stages (filelock: any OS)."""
    from filelock import FileLock

    folder = project_root() / ".dvc" / "tmp"
    lock_path = (folder if folder.is_dir() else Path(tempfile.gettempdir())) / "featurebench-run-group.lock"
    with FileLock(lock_path):
        yield


def group_tags(dataset: str) -> dict:
    """What the parent run records about the pipeline run: data set, git commit, DVC experiment."""
    return {
        "dataset": dataset,
        "git_commit": git_commit(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
    }


def group_parent(experiment_id: str, dataset: str, data: "DataInput | None" = None) -> str:
    """Run id of this run group's parent, created (already FINISHED) by the first stage that asks.

    The parent is terminated at once so that no crash can leave it RUNNING; each stage that ends
    moves its end time forward (see `_close_parent`). The lock makes two stages of one group that
    start together find the same parent.
    """
    import mlflow

    client = mlflow.MlflowClient()
    group = run_group()
    with _group_lock():
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.{GROUP_TAG} = '{group}' AND tags.`{ROLE_TAG}` = 'group'", max_results=1
        )
        if found:
            return found[0].info.run_id
        tags = group_tags(dataset)
        name = f"{tags['dvc_experiment'] if 'DVC_EXP_NAME' in os.environ else 'repro'} {time.strftime('%Y-%m-%d %H:%M')}"
        parent = client.create_run(experiment_id, run_name=name, tags={**tags, GROUP_TAG: group, ROLE_TAG: "group"})
        if data is not None:
            client.log_inputs(parent.info.run_id, datasets=[data.dataset_input()])
        client.set_terminated(parent.info.run_id, "FINISHED")
        return parent.info.run_id


def _close_parent(parent_id: str, failed: bool) -> None:
    """The parent ends when its last stage ends; it is FAILED once any stage failed."""
    import mlflow

    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        already_failed = client.get_run(parent_id).info.status == "FAILED"
        client.set_terminated(parent_id, "FAILED" if failed or already_failed else "FINISHED", end_time=int(time.time() * 1000))
    except MlflowException:
        # Ctrl-C inside one of MLflow's own writes can leave this process's SQLite transaction open
        # ("database is locked"); the parent is FINISHED already, only its end time stays behind.
        pass


# --- studies: one parent run above the run groups of a study's experiments ---------------------------

STUDY_TAG = "study"


def group_study(study: str, experiment_names: list[str], tags: dict | None = None) -> dict[str, str]:
    """Nest the parents of the DVC experiments `experiment_names` under one run for the study.

    The points of a study are separate `dvc exp run`s, each its own run group (found by its
    `dvc_experiment` tag); the study's run is created (FINISHED) once per data set's experiment and
    `study` tag, and found again when a resumed study adds points. Returns {experiment id: study run id}.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    wanted = set(experiment_names)
    experiments = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}/%'")
    studies = {}
    for experiment in experiments:
        groups = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'group'", max_results=10000)
        points = [run for run in groups if run.data.tags.get("dvc_experiment") in wanted]
        if not points:
            continue
        found = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.{STUDY_TAG} = '{study}' AND tags.`{ROLE_TAG}` = 'study'", max_results=1
        )
        if found:
            parent_id = found[0].info.run_id
        else:
            parent = client.create_run(experiment.experiment_id, run_name=f"study {study}", tags={**(tags or {}), STUDY_TAG: study, ROLE_TAG: "study", "git_commit": git_commit()})
            client.set_terminated(parent.info.run_id, "FINISHED")
            parent_id = parent.info.run_id
        for run in points:
            client.set_tag(run.info.run_id, PARENT_TAG, parent_id)
            client.set_tag(run.info.run_id, STUDY_TAG, study)
        studies[experiment.experiment_id] = parent_id
    return studies


@uninterruptible
def log_study_report(run_id: str, files: list[Path]) -> None:
    """The study's report and figures, on its parent run under `report/`."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    for path in files:
        client.log_artifact(run_id, str(path), "report")


# --- the data set as an MLflow dataset input ----------------------------------------------------------

@dataclass
class DataInput:
    """The prepared data set as MLflow sees it: `name` and `digest` identify it, `images` give its schema."""

    name: str
    digest: str
    source: str
    images: np.ndarray  # (n, H, W, 3) uint8, the train split
    labels: np.ndarray  # (n,)

    def dataset_input(self):
        import mlflow.data
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        source = LocalArtifactDatasetSource(self.source)  # a plain path string is ambiguous to MLflow (it warns)
        dataset = mlflow.data.from_numpy(self.images, source=source, targets=self.labels, name=self.name, digest=self.digest)
        return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])


# --- one run per training stage -------------------------------------------------------------------------

@contextmanager
def training_run(*, dataset: str, run_name: str, tags: dict, params: dict, data: DataInput | None = None):
    """One MLflow run for one training stage, a child of its run group's parent.

    Marked FAILED (never left RUNNING) if the block raises; the parent's end time and status follow.
    """
    import mlflow

    parent_id, failed = None, True
    try:
        with interrupts_deferred():  # a Ctrl-C here lands once these writes are done, not inside one
            experiment = connect(dataset)
            with writable_store(tracking_uri()):  # with the experiment's tags current, the parent run is the stage's first write
                parent_id = group_parent(experiment.experiment_id, dataset, data)
            all_tags = {
                **group_tags(dataset),
                **tags,
                GROUP_TAG: run_group(),
                ROLE_TAG: "stage",
                PARENT_TAG: parent_id,
                "pid": str(os.getpid()),
                "hostname": socket.gethostname(),
            }
            if "dvc_stage" in tags:
                end_abandoned_runs(experiment.experiment_id, tags["dvc_stage"])
            run = mlflow.start_run(run_name=run_name, tags=all_tags)
            mlflow.log_params(flatten(params))
            if data is not None:
                mlflow.MlflowClient().log_inputs(run.info.run_id, datasets=[data.dataset_input()])
        yield run
        failed = False
    finally:
        if parent_id is not None:
            _end_stage_run(parent_id, failed)


@uninterruptible
def _end_stage_run(parent_id: str, failed: bool) -> None:
    """End the active stage run (FINISHED, or FAILED) unless it ended itself (log_failed), then its parent."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run("FAILED" if failed else "FINISHED")
    _close_parent(parent_id, failed)


@uninterruptible
def log_failed(metrics: dict) -> None:
    """End the active stage run FAILED, holding the dict its metrics.json holds: numbers as metrics, text as tags.

    For a stage that could not train (`{"status": "failed", "reason": ...}`): the report reads the
    reason back from the tag, as it reads a trained stage's accuracy from the metric.
    """
    import mlflow

    mlflow.log_metrics({key: value for key, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)})
    mlflow.set_tags({key: value for key, value in metrics.items() if isinstance(value, str)})
    mlflow.end_run("FAILED")


@uninterruptible
def log_history(records) -> None:
    """Per-epoch curves of the active run, step = epoch number: epoch_train_loss, epoch_train_accuracy,
    epoch_val_accuracy, epoch_learning_rate. One batch for all epochs: one SQLite commit, not one per epoch."""
    import mlflow
    from mlflow.entities import Metric

    names = {"epoch_train_loss": "train_loss", "epoch_train_accuracy": "train_accuracy", "epoch_val_accuracy": "val_accuracy", "epoch_learning_rate": "learning_rate"}
    now = int(time.time() * 1000)
    batch = [Metric(key, float(getattr(record, field)), now, record.epoch) for record in records for key, field in names.items()]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a call
        client.log_batch(run_id, metrics=batch[start : start + 1000])


@uninterruptible
def log_final(metrics: dict, figures: dict, model, input_example, featurizer_dir: Path | None = None, pictures=()) -> None:
    """The final metrics (the DVC metrics dict itself), figures by file name, pictures (files, under features/), the model.

    The model's signature is inferred from `input_example` (raw features); `featurizer_dir` holds
    what turns images into those features (see pipeline/featurizer.py), logged beside it.
    """
    import mlflow
    import mlflow.pytorch

    mlflow.log_metrics(metrics)
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, file_name)
    for path in pictures:
        mlflow.log_artifact(str(path), artifact_path=f"features/{path.parent.name}")
    if featurizer_dir is not None:
        mlflow.log_artifacts(str(featurizer_dir), "featurizer")
    with _requirements_checked_without_scan():
        mlflow.pytorch.log_model(model, name="model", pip_requirements=MODEL_REQUIREMENTS, input_example=input_example)


MODEL_REQUIREMENTS = ["torch"]  # given, not inferred: inferring imports the model's modules in a subprocess


@contextmanager
def _requirements_checked_without_scan():
    """MLflow checks the model's requirements (torch, and the mlflow it pins) against what is installed;
    to do so it first maps every module of every installed distribution to its package
    (importlib_metadata.packages_distributions: a pass over all their RECORD files, about half a second
    of each training stage). Those two packages are named like their modules, so the map they need
    is given instead, for the duration of the call; the check itself runs as before.
    """
    from mlflow.utils import requirements_utils

    if requirements_utils._MODULES_TO_PACKAGES is not None:  # already scanned in this process: nothing to save
        yield
        return
    requirements_utils._MODULES_TO_PACKAGES = {name: [name] for name in ["mlflow", *MODEL_REQUIREMENTS]}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None  # anything else that needs the map scans as before


def trial_record(trial) -> tuple[dict, dict, list[tuple[int, dict]]]:
    """(params, metrics, [(step, per-epoch metrics)]) of one search trial, read from its dataclass fields.

    Generic on purpose: dataclass fields (the train and model configs) become params named
    `<field>.<key>`, numbers become metrics, a list of per-epoch records becomes curves
    `epoch_<key>`; anything else (the model itself) is skipped. A field added to the trial shows up
    without a change here.
    """
    params, metrics, curves = {}, {}, []
    for field in dataclasses.fields(trial):
        value = getattr(trial, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            params.update(flatten(dataclasses.asdict(value), f"{field.name}."))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            metrics[field.name] = float(value)
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(item) for item in value):
            for index, item in enumerate(value, start=1):
                record = dataclasses.asdict(item)
                step = int(record.pop("epoch", index))
                curves.append((step, {f"epoch_{key}": float(v) for key, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}))
    return params, metrics, curves


@uninterruptible
def log_trials(trials) -> None:
    """Each search trial as a child run of the active stage run: its settings, score, time and curves."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    for index, trial in enumerate(trials):
        params, metrics, curves = trial_record(trial)
        with mlflow.start_run(run_name=f"trial {index}", nested=True, tags={ROLE_TAG: "trial"}) as run:
            now = int(time.time() * 1000)
            batch = [Metric(key, value, now, 0) for key, value in metrics.items()]
            batch += [Metric(key, value, now, step) for step, values in curves for key, value in values.items()]
            for start in range(0, max(len(batch), 1), 1000):  # MLflow takes at most 1000 metrics a call
                client.log_batch(run.info.run_id, metrics=batch[start : start + 1000], params=[Param(k, str(v)) for k, v in params.items()] if start == 0 else [])


@uninterruptible
def log_chosen(chosen: dict) -> None:
    """The hyperparameters chosen on the validation split, as params so they are columns in the UI."""
    import mlflow

    mlflow.log_params({f"chosen.{key}": value for key, value in chosen.items()})


# --- reading back: the report, predictions, the UI -------------------------------------------------

def read_runs(dataset: str, run_ids: list[str]):
    """pandas DataFrame (mlflow.search_runs) of exactly these runs; a missing run is a FileNotFoundError."""
    import mlflow

    experiment = find_experiment(dataset)  # reading writes nothing: `featurebench compare` works on a read-only store
    if experiment is None:
        raise FileNotFoundError(f"the MLflow store {tracking_uri()} has no experiment {experiment_name(dataset)}; run `dvc repro --force` to log the runs again")
    frame = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.run_id IN ({})".format(", ".join(f"'{run_id}'" for run_id in run_ids)),
        max_results=max(len(run_ids), 1),
    )
    missing = sorted(set(run_ids) - set(frame["run_id"] if len(frame) else []))
    if missing:
        raise FileNotFoundError(f"run(s) {', '.join(missing)} are not in the MLflow store {tracking_uri()}; run `dvc repro --force` to log them again")
    return frame


@uninterruptible
def log_report(dataset: str, files: list[Path]) -> str:
    """Log the report's files to this run group's parent; returns the parent's run id."""
    import mlflow

    experiment = connect(dataset)
    with writable_store(tracking_uri()):  # the report's first write, as for a stage
        parent_id = group_parent(experiment.experiment_id, dataset)
    client = mlflow.MlflowClient()
    for path in files:
        client.log_artifact(parent_id, str(path), "report")
    _close_parent(parent_id, failed=False)
    return parent_id


def _quiet_downloads() -> None:
    """No per-file progress bars when a command fetches a few small artifacts."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def existing_store_uri() -> str:
    """tracking_uri() for a command that only reads runs: a SQLite store that does not exist is refused,
    since opening it would create an empty one (and its folders) where the user expected their runs."""
    uri = tracking_uri()
    database = sqlite_file(uri)
    if database is not None and not database.exists():
        raise FileNotFoundError(f"no MLflow store at {database}: run `dvc repro` in this project first, or set MLFLOW_TRACKING_URI to the store that holds the runs")
    check_server_answers(uri)
    return uri


def download_artifacts(run_id: str, path: str, destination: Path) -> Path:
    import mlflow

    from mlflow.exceptions import MlflowException

    _quiet_downloads()
    mlflow.set_tracking_uri(existing_store_uri())
    missing = f"run {run_id} has no {path}/ in the MLflow store {tracking_uri()}"
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise FileNotFoundError(f"{missing}: there is no such run (`featurebench compare` lists the runs and their ids)") from None
    role = run.data.tags.get(ROLE_TAG)
    if role in ("group", "study"):
        raise FileNotFoundError(f"{missing}: it is a {'study' if role == 'study' else 'run group'}, not a training run; "
                                "give one of the runs under it (a stage's run holds the model)")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(destination)))
    except (MlflowException, OSError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise FileNotFoundError(f"{missing} ({message})") from None


def load_model(run_id: str):
    """The PyTorch model a training run logged (standardization included: it takes raw features).

    MLflow 3 stores it as a torch.export program: callable on any batch size, already in eval mode.
    """
    import mlflow
    import mlflow.pytorch

    _quiet_downloads()
    mlflow.set_tracking_uri(existing_store_uri())
    return mlflow.pytorch.load_model(f"runs:/{run_id}/model", map_location="cpu")


def experiment_id(dataset: str) -> str | None:
    """The id of the data set's experiment, or None before any run logged to it."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.MlflowClient().get_experiment_by_name(experiment_name(dataset))
    return experiment.experiment_id if experiment else None
