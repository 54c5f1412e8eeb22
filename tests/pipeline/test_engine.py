"""engine: ray gives what engine: local gives: on a local Ray instance, on a two-node cluster, and when the
worker node dies in the middle of an extraction.

Every Ray process a test starts runs inside a network namespace of its own (`unshare -n`, loopback only),
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
import threading
from pathlib import Path

import mlflow
import pytest
import yaml

from models.search import SearchSpace, candidates, search
from models.mlp import MLPConfig
from models.training import TrainConfig
from pipeline.engine import map_in_order
from tests.pipeline.conftest import ROOT, deep_update, make_project, run

RAY_PORT = 6379  # free in a fresh network namespace
RAY_SECONDS = 300  # a test's Ray commands are ended after this long, whatever they are doing
TINY_RAY = {
    "data": {"shapes": {"n_train": 300, "n_test": 100}},
    "extract": {"batch_size": 40},
    "linear": {"classifiers": ["softmax"], "feature_sets": ["hog"], "learning_rates": [0.003, 0.03], "reg_strengths": [0.0001], "epochs": 3, "overrides": {}},
}
KILL_BATCH_SIZE = 2  # hundreds of small shards: the worker node dies with many still to do


def namespace_problem() -> str | None:
    """Why Ray tests cannot run in a network namespace of their own here, or None when they can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n` is not allowed here ({probe.stderr.strip()}); it needs root or user namespaces"
    return None


@pytest.fixture(scope="module")
def isolated():
    """Skip (fail on CI) where Ray cannot be kept inside a loopback-only network namespace."""
    problem = namespace_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Ray tests need a network namespace of their own: {problem}")
        pytest.skip(f"Ray tests need a network namespace of their own: {problem}")


def in_namespace(script: str) -> list[str]:
    """The command that runs a bash script in a new network namespace where only loopback is up."""
    setup = "set -e; ip link set lo up; export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled; unset RAY_ADDRESS; "
    return ["unshare", "-n", "bash", "-c", setup + script]


def on_two_nodes(temp_dir: Path, command: str) -> str:
    """A bash script: a head node and a worker node on 127.0.0.1 (one CPU each), `command` with RAY_ADDRESS
    naming them, then both nodes ended by their session ids (never `ray stop`, which ends every Ray on the machine).

    `ray start` returns once its node has joined; its processes stay in the session `setsid` gave it.
    """
    node = "--num-cpus=1 --node-ip-address=127.0.0.1"
    address = f"127.0.0.1:{RAY_PORT}"
    return f"""
trap 'pkill -KILL -s ${{head:-0}} || true; pkill -KILL -s ${{worker:-0}} || true' EXIT
trap 'exit 143' TERM
setsid ray start --head --port={RAY_PORT} --include-dashboard=false --temp-dir={temp_dir} {node} >{temp_dir}/head.log 2>&1 &
head=$!
echo "head node session $head"
wait $head
setsid ray start --address={address} {node} >{temp_dir}/worker.log 2>&1 &
worker=$!
echo "worker node session $worker"
wait $worker
echo "two nodes up"
RAY_ADDRESS={address} {command}
"""


def run_in_namespace(script: str, cwd: Path, env: dict, on_line=None) -> list[str]:
    """Run `script` in its own network namespace; every output line (tqdm's \\r updates too) goes to on_line."""
    process = subprocess.Popen(
        in_namespace(script), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    watchdog = threading.Timer(RAY_SECONDS, os.killpg, (process.pid, 15))
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:  # text mode reads "\r" as a line end
            lines.append(line.rstrip())
            if on_line:
                on_line(line)
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait()
    assert process.returncode == 0, f"exit {process.returncode}:\n" + "\n".join(lines[-60:])
    return lines


@pytest.fixture
def ray_temp_dir():
    """A short path for Ray's sockets and logs (unix socket paths must stay under 108 characters)."""
    path = Path(tempfile.mkdtemp(prefix="ray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny project, prepared, with hog extracted and softmax trained on it by engine: local.

    Returns (project, env, {name: bytes of the local outputs}).
    """
    project = tmp_path_factory.mktemp("ray-project")
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY_RAY)
    params["engine"] = "local"
    _, env = make_project(project, params)
    env.pop("RAY_ADDRESS", None)
    for command in (["python", "-m", "pipeline.prepare"], ["python", "-m", "pipeline.extract", "hog"], ["python", "-m", "pipeline.train", "softmax", "hog"]):
        run(command, project, env)
    return project, env, outputs(project)


def outputs(project: Path) -> dict:
    results = project / "results/train/softmax-hog"
    metrics = json.loads((results / "metrics.json").read_text())
    return {
        "features": (project / "data/features/hog/features.npz").read_bytes(),
        "chosen": json.loads((results / "chosen.json").read_text()),
        "accuracies": {key: metrics[key] for key in ("train_accuracy", "val_accuracy", "test_accuracy", "n_trials")},
        "run_id": json.loads((results / "run.json").read_text())["run_id"],
    }


def with_engine_ray(project: Path, **extract) -> str:
    """Write params-ray.yaml: the project's params with engine: ray (and these extract settings)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["engine"] = "ray"
    params["extract"].update(extract)
    (project / "params-ray.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return "params-ray.yaml"


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


# --- on Ray, each test in a network namespace of its own ----------------------------------------------

LOCAL_INSTANCE_SCRIPT = """
import json, os, sys
import numpy as np
from features import get_extractor
from pipeline.engine import map_in_order
from pipeline.extract import image_shards, transform_shard

def transform_where(shared, shard):
    return os.getpid(), transform_shard(shared, shard)

images = {"train": np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)}
shared = (get_extractor("hog").fit(images["train"]), images)
shards = image_shards({"train": 50, "train_mirrored": 50}, 7)
local = [transform_shard(shared, shard) for shard in shards]
on_ray = list(map_in_order(transform_where, shards, shared=shared, engine="ray"))
print(json.dumps({
    "driver": os.getpid(),
    "workers": sorted({pid for pid, _ in on_ray}),
    "same_bytes": [a.tobytes() == b.tobytes() for a, (_, b) in zip(local, on_ray)],
}))
"""


def test_a_local_ray_instance_maps_in_order_to_the_same_bytes(isolated, tmp_path):
    (tmp_path / "script.py").write_text(LOCAL_INSTANCE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    lines = run_in_namespace(f"python {tmp_path / 'script.py'}", ROOT, env)
    result = json.loads(next(line for line in lines if line.startswith("{")))
    assert result["same_bytes"] == [True] * 16  # 50 images in shards of 7, and their mirrors
    assert result["workers"] and result["driver"] not in result["workers"]  # the work ran in Ray's processes


def test_a_two_node_cluster_extracts_and_searches_like_local(isolated, reference, ray_temp_dir):
    project, env, local = reference
    params = with_engine_ray(project)
    commands = f"python -m pipeline.extract hog --params {params} && python -m pipeline.train softmax hog --params {params}"
    lines = run_in_namespace(on_two_nodes(ray_temp_dir, commands), project, env)
    assert "two nodes up" in lines
    on_ray = outputs(project)
    assert on_ray["features"] == local["features"]
    assert on_ray["chosen"] == local["chosen"]
    assert on_ray["accuracies"] == local["accuracies"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(on_ray["run_id"])
    trials = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == local["accuracies"]["n_trials"] == 2  # each trial still a child run, with its curves
    assert all(client.get_metric_history(trial.info.run_id, "val_accuracy") for trial in trials)


def test_extraction_finishes_with_the_same_features_when_the_worker_node_dies(isolated, reference, ray_temp_dir):
    project, env, local = reference
    params = with_engine_ray(project, batch_size=KILL_BATCH_SIZE)
    sessions, progress = {}, {}

    def kill_the_worker_node_a_fifth_in(line: str) -> None:
        if found := re.match(r"(head|worker) node session (\d+)", line):
            sessions[found[1]] = int(found[2])
        done = re.search(r"extract hog:.*\| *(\d+)/(\d+)", line)
        if done and "killed_at" not in progress and int(done[1]) >= int(done[2]) // 5:
            subprocess.run(["pkill", "-KILL", "-s", str(sessions["worker"])], check=True)  # its raylet and its workers
            progress.update(killed_at=int(done[1]), total=int(done[2]))

    try:
        run_in_namespace(on_two_nodes(ray_temp_dir, f"python -m pipeline.extract hog --params {params}"), project, env, kill_the_worker_node_a_fifth_in)
    finally:
        for session in sessions.values():
            subprocess.run(["pkill", "-KILL", "-s", str(session)])
    assert 0 < progress["killed_at"] < progress["total"]
    assert (project / "data/features/hog/features.npz").read_bytes() == local["features"]  # and shard size 2 or 40 alike
