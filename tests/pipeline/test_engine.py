"""engine: ray gives what engine: local gives: on a local Ray instance, on a two-node cluster, and when a
worker node dies in the middle of an extraction.

Every Ray process runs inside one network namespace of this module's own (`unshare -n`, loopback only),
so nothing can reach, or be reached at, another address than 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import socket
import threading
import uuid
from pathlib import Path

import mlflow
import pytest
import yaml

from models.mlp import MLPConfig
from models.search import SearchSpace, candidates, search
from models.training import TrainConfig
from pipeline.engine import map_in_order
from tests.pipeline.conftest import ROOT


RAY_PORT = 6390
RAY_SECONDS = 240  # a command in the namespace is ended after this long, whatever it is doing
FEATURE_SET = "hog+color_hist"  # trained by softmax in the tiny project (conftest.TINY)
KILL_BATCH_SIZE = 2  # hundreds of small shards: the worker node dies with many still to do


def namespace_problem() -> str | None:
    """Why Ray cannot be kept in a network namespace of its own here, or None when it can."""
    for tool in ("unshare", "ip", "setsid", "pgrep", "pkill"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n` is not allowed here ({probe.stderr.strip()}); it needs root or user namespaces"
    return None


class Namespace:
    """A bash process in a network namespace of its own where only loopback is up; commands run in it in turn."""

    def __init__(self, env: dict, temp_dir: Path):
        env = {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(temp_dir)}
        env.pop("RAY_ADDRESS", None)
        self.temp_dir = temp_dir
        self.sessions: dict[str, int] = {}  # Ray node name -> session id of its processes
        self.shell = subprocess.Popen(
            ["unshare", "-n", "bash"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self.run("ip link set lo up")

    def run(self, command: str, cwd: Path = ROOT, on_line=None) -> list[str]:
        """Output lines of `command` (tqdm's \\r updates too, each to on_line); fails on a non-zero exit."""
        done = f"done-{uuid.uuid4().hex}"
        self.shell.stdin.write(f"(cd {cwd} || exit; {command}) 2>&1; printf '\\n%s %s\\n' {done} $?\n")  # after a bar's last \r
        self.shell.stdin.flush()
        watchdog = threading.Timer(RAY_SECONDS, os.killpg, (self.shell.pid, 9))
        watchdog.start()
        lines = []
        try:
            for line in self.shell.stdout:  # text mode reads "\r" as a line end
                if line.startswith(done):
                    assert line.split()[1] == "0", f"{command} exited {line.split()[1]}:\n" + "\n".join(lines[-60:])
                    return lines[:-1] if lines and not lines[-1] else lines  # less the marker's leading newline
                lines.append(line.rstrip())
                if on_line:
                    on_line(line)
        finally:
            watchdog.cancel()
        raise AssertionError(f"{command} did not finish within {RAY_SECONDS} s:\n" + "\n".join(lines[-60:]))

    def start_node(self, name: str, head: bool = False) -> None:
        """A Ray node on 127.0.0.1 with one CPU; `ray start` returns once it has joined, its processes
        stay in the session `setsid` gave them, so they can be ended without `ray stop` (which ends every Ray)."""
        where = f"--head --port={RAY_PORT} --include-dashboard=false" if head else f"--address=127.0.0.1:{RAY_PORT}"
        log = self.temp_dir / f"{name}.log"
        lines = self.run(f"setsid ray start {where} --num-cpus=1 --node-ip-address=127.0.0.1 >{log} 2>&1 & echo session $!; wait $!")
        session = int(next(line for line in lines if line.startswith("session ")).split()[1])
        assert subprocess.run(["pgrep", "-s", str(session)], capture_output=True).stdout, f"no process of node {name} in session {session}"
        self.sessions[name] = session

    def kill_node(self, name: str) -> bool:
        """SIGKILL every process of a node (its raylet, its workers, its object store); False if none was left."""
        return subprocess.run(["pkill", "-KILL", "-s", str(self.sessions.pop(name))]).returncode == 0

    def close(self) -> None:
        for name in list(self.sessions):
            self.kill_node(name)
        self.shell.stdin.close()
        try:
            self.shell.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.shell.pid, 9)
            self.shell.wait()


@pytest.fixture(scope="module")
def namespace():
    """This module's network namespace; commands there find this Python's tools first."""
    problem = namespace_problem()
    if problem:
        message = f"Ray tests need a network namespace of their own: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's unix socket paths must stay under 108 characters
    space = Namespace(env, temp_dir)
    yield space
    space.close()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(namespace):
    """A head node and a worker node, one CPU each, in this module's namespace: RAY_ADDRESS for them."""
    namespace.start_node("head", head=True)
    namespace.start_node("worker")
    return f"127.0.0.1:{RAY_PORT}"


@pytest.fixture(scope="module")
def project(tiny_project, tmp_path_factory):
    """A copy of the tiny project (features extracted and models trained by engine: local), with a fresh
    MLflow store, and params-ray.yaml: its params with engine: ray and 40-image shards."""
    source, params, _, _ = tiny_project
    assert "softmax" in params["linear"]["classifiers"] and FEATURE_SET in params["linear"]["feature_sets"]
    copy = tmp_path_factory.mktemp("ray") / "project"
    shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
    write_params(copy, "params-ray.yaml", batch_size=40)
    return copy


def write_params(project: Path, name: str, **extract) -> str:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["engine"] = "ray"
    params["extract"].update(extract)
    (project / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return name


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `folder`: what DVC hashes as the stage's output."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def training_results(project: Path) -> dict:
    folder = project / "results/train" / f"softmax-{FEATURE_SET}"
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        "chosen": json.loads((folder / "chosen.json").read_text()),
        "scores": {key: metrics[key] for key in ("train_accuracy", "val_accuracy", "test_accuracy", "n_trials")},
    }


# --- without Ray ------------------------------------------------------------------------------------


def square_plus(shared, item):
    return item * item + shared


def test_local_map_yields_in_order_with_the_shared_state():
    assert list(map_in_order(square_plus, [3, 1, 2], shared=10)) == [19, 11, 14]


def test_an_unknown_engine_is_refused_before_any_work():
    with pytest.raises(ValueError, match="engine must be one of local, ray; got 'spark'"):
        map_in_order(square_plus, [1], engine="spark")


def test_search_runs_its_trials_through_the_map_it_is_given():
    import torch

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    space = SearchSpace(learning_rates=[0.01, 0.1], reg_strengths=[0.0], hidden_sizes=[[]], epochs=[2])
    configs = candidates(space, TrainConfig(loss="softmax", batch_size=16), MLPConfig(input_dim=5, n_classes=3), "grid", 4, 0)
    seen = []

    def recording_map(function, items, *, shared):
        seen.extend(items)
        return [function(shared, item) for item in items]

    best, trials = search(configs, x, y, x, y, torch.device("cpu"), progress=False, map_trials=recording_map)
    assert seen == configs
    assert [trial.config.learning_rate for trial in trials] == [0.01, 0.1]
    in_sequence, _ = search(configs, x, y, x, y, torch.device("cpu"), progress=False)
    assert (best.config, best.val_accuracy) == (in_sequence.config, in_sequence.val_accuracy)


# --- on Ray, in this module's network namespace ----------------------------------------------------

LOCAL_INSTANCE_SCRIPT = """
import json, os, sys
import numpy as np
from features import get_extractor
from pipeline.artifacts import image_batches
from pipeline.engine import map_in_order
from pipeline.extract import transform_batch

def transform_where(shared, batch):
    return os.getpid(), transform_batch(shared, batch)

path = sys.argv[1]  # the images, by a path every Ray worker can read
images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
np.save(path, images)
extractor = get_extractor("hog").fit(images)
batches = image_batches(path, 50, 7) + image_batches(path, 50, 7, mirrored_images=True)
local = [transform_batch(extractor, batch) for batch in batches]
on_ray = list(map_in_order(transform_where, batches, shared=extractor, engine="ray"))
print(json.dumps({
    "driver": os.getpid(),
    "workers": sorted({pid for pid, _ in on_ray}),
    "same_bytes": [a.tobytes() == b.tobytes() for a, (_, b) in zip(local, on_ray)],
}))
"""


def test_without_ray_address_a_local_ray_instance_maps_in_order_to_the_same_bytes(namespace, tmp_path):
    (tmp_path / "script.py").write_text(LOCAL_INSTANCE_SCRIPT)
    lines = namespace.run(f"PYTHONPATH={ROOT} python {tmp_path / 'script.py'} {tmp_path / 'images.npy'}")
    result = json.loads(next(line for line in lines if line.startswith("{")))
    assert result["same_bytes"] == [True] * 16  # 50 images in shards of 7, and their mirrors
    assert result["workers"] and result["driver"] not in result["workers"]  # the work ran in Ray's processes


def test_a_two_node_cluster_extracts_and_searches_like_local(namespace, cluster, project, tiny_project):
    source = tiny_project[0]
    ray = f"RAY_ADDRESS={cluster} python -m pipeline"
    namespace.run(f"{ray}.extract hog --params params-ray.yaml && {ray}.train softmax {FEATURE_SET} --params params-ray.yaml", cwd=project)
    assert folder_bytes(project / "data/features/hog") == folder_bytes(source / "data/features/hog")  # shards of 40 or 1000 alike
    assert training_results(project) == training_results(source)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "results/train" / f"softmax-{FEATURE_SET}" / "run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    trials = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(trials) == training_results(source)["scores"]["n_trials"] == 2  # each trial still a child run
    assert all(len(client.get_metric_history(trial.info.run_id, "epoch_val_accuracy")) == 3 for trial in trials)  # with its curves


def test_extraction_finishes_with_the_same_features_when_a_worker_node_dies(namespace, cluster, project, tiny_project):
    namespace.start_node("doomed")  # a third node, so the cluster the other tests use keeps its worker
    params = write_params(project, "params-kill.yaml", batch_size=KILL_BATCH_SIZE)
    progress = {}

    def kill_the_node_a_fifth_in(line: str) -> None:
        done = re.search(r"hog train[^:]*:.*\| *(\d+)/(\d+)", line)  # "hog train + train mirrored: ... 3/20"
        if done and "killed_at" not in progress and int(done[1]) >= int(done[2]) // 5:
            progress.update(killed_at=int(done[1]), total=int(done[2]), killed=namespace.kill_node("doomed"))

    namespace.run(f"RAY_ADDRESS={cluster} python -m pipeline.extract hog --params {params}", cwd=project, on_line=kill_the_node_a_fifth_in)
    assert progress["killed"] and 0 < progress["killed_at"] < progress["total"]  # it died mid-extraction
    assert folder_bytes(project / "data/features/hog") == folder_bytes(tiny_project[0] / "data/features/hog")


def test_a_ray_address_nobody_listens_on_is_one_line_naming_it_and_the_fix(namespace, project):
    lines = namespace.run("RAY_ADDRESS=127.0.0.1:9 python -m pipeline.extract hog --params params-ray.yaml; echo exit $?", cwd=project)
    assert lines[-1] == "exit 2"
    errors = [line for line in lines if line.startswith("featurebench extract: error:")]
    assert errors == [errors[0]] and "RAY_ADDRESS=127.0.0.1:9" in errors[0] and "ray start --head" in errors[0]
    assert "Traceback" not in "\n".join(lines)


TASK_ERROR_SCRIPT = """
import json, os
from pipeline.engine import EngineError, map_in_order

def refuse_the_second(shared, item):
    if item == 2:
        raise ValueError(f"item {item} is not allowed")
    return item

outcome = {"token_file_before": os.path.exists(os.path.expanduser("~/.ray/auth_token"))}
try:
    list(map_in_order(refuse_the_second, [1, 2, 3], engine="ray"))
except ValueError as error:  # EngineError is one too: told apart by its type's name
    outcome.update(type=type(error).__name__, message=str(error))
outcome["second_instance"] = list(map_in_order(lambda shared, item: item * 2, [1, 2], engine="ray"))
outcome["token_file_after"] = os.path.exists(os.path.expanduser("~/.ray/auth_token"))
outcome["token_left_in_environment"] = "RAY_AUTH_TOKEN" in os.environ or "RAY_AUTH_MODE" in os.environ
print(json.dumps(outcome))
"""


def test_a_task_s_own_error_comes_back_as_itself_and_a_local_instance_writes_no_token_file(namespace, tmp_path):
    """A ValueError in a Ray task is the stage's one line, not Ray's remote traceback; and a local instance
    started with token authentication on (Ray's default, RAY_AUTH_MODE unset) leaves no ~/.ray/auth_token
    for later `ray start`s on the machine to find."""
    (tmp_path / "script.py").write_text(TASK_ERROR_SCRIPT)
    home = tmp_path / "home"
    home.mkdir()
    lines = namespace.run(f"env -u RAY_AUTH_MODE HOME={home} PYTHONPATH={ROOT} python {tmp_path / 'script.py'}")
    outcome = json.loads(next(line for line in lines if line.startswith("{")))
    assert outcome == {
        "token_file_before": False, "type": "ValueError", "message": "item 2 is not allowed",
        "second_instance": [2, 4], "token_file_after": False, "token_left_in_environment": False,
    }


def test_a_ray_address_that_answers_as_a_web_server_is_refused_not_waited_on():
    """Ray's dashboard port (or any HTTP server) given as RAY_ADDRESS: ray.init would wait forever."""
    import http.server

    from pipeline.engine import EngineError, check_reachable

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(EngineError, match=rf"RAY_ADDRESS={address} answers as a web server, not as a Ray cluster's GCS"):
            check_reachable(address)
    finally:
        server.shutdown()
        server.server_close()
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never answers: left to Ray
    try:
        check_reachable(f"127.0.0.1:{silent.getsockname()[1]}", seconds=1)
    finally:
        silent.close()
