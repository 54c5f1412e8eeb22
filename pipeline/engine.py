"""Where the parallel parts of a stage run: in this process (`engine: local`) or on Ray (`engine: ray`).

One code path for both: a stage hands `map_in_order` a function, the items to map it over (image
shards, search trials) and the state every call shares (a fitted extractor, the training rows); the
results come back in the items' order, so the output does not depend on the engine or the timing.

On Ray, `RAY_ADDRESS` (Ray's own variable) names an existing cluster; without it a local Ray instance
is started for the map and stopped after it. The shared state is put in Ray's object store once and
every task gets it by reference; a task lost with its node runs again elsewhere (`max_retries`).
"""
from __future__ import annotations

import collections
import contextlib
import os
import secrets
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

from pipeline.params import ENGINES
MAX_RETRIES = 3  # a task whose worker or node dies is run again this many times before the map fails
TASKS_IN_FLIGHT_PER_CPU = 2  # enough queued work to keep every CPU busy; results wait in order, so memory stays bounded
PROJECT_PACKAGES = ("pipeline", "features", "models")  # shipped to the workers: they run the driver's code, not an installed copy

Item = TypeVar("Item")
Result = TypeVar("Result")


class EngineError(ValueError):
    """The Ray cluster cannot be reached or used; the message names RAY_ADDRESS and the fix."""


def map_in_order(
    function: Callable[[object, Item], Result],
    items: Iterable[Item],
    *,
    shared: object = None,
    engine: str = "local",
    description: str | None = None,
    unit: str = "item",
    cpus_per_task: int = 1,
    gpus_per_task: float = 0,
) -> Iterator[Result]:
    """Yield function(shared, item) for every item, in the items' order.

    function : a module-level function (Ray workers import it by name); it must not change `shared`.
    description : a progress bar over the items done, with this title (none when None).
    cpus_per_task, gpus_per_task : what one call needs on Ray; torch in a task uses that many threads.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    items = list(items)
    if engine == "ray" and items:
        results = _map_on_ray(function, items, shared, cpus_per_task, gpus_per_task)
    else:
        results = (function(shared, item) for item in items)
    return _with_progress(results, len(items), description, unit)


def _with_progress(results: Iterator[Result], total: int, description: str | None, unit: str) -> Iterator[Result]:
    with tqdm(total=total, desc=description, unit=unit, disable=description is None, leave=False) as bar:
        for result in results:
            bar.update()
            yield result


def _map_on_ray(function, items: list, shared, cpus_per_task: int, gpus_per_task: float) -> Iterator:
    import ray

    with ray_session():
        if gpus_per_task and ray.cluster_resources().get("GPU", 0) < gpus_per_task:
            raise EngineError("the Ray cluster has no GPU for tasks that train on one; set device: cpu or add a GPU node")
        task = ray.remote(_run_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=MAX_RETRIES)
        shared_ref = ray.put(shared)  # once, not once per task
        window = max(2, TASKS_IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
        pending = collections.deque()
        for item in items:
            pending.append(task.remote(function, shared_ref, item, cpus_per_task))
            if len(pending) >= window:
                yield _result_of(pending.popleft())
        while pending:
            yield _result_of(pending.popleft())


def _result_of(reference):
    """ray.get, with a task's own error raised as itself (a stage's one-line ValueError stays one line, not
    Ray's coloured remote traceback), and Ray's failures (a worker lost past its retries) as EngineError."""
    import ray

    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, Exception) and not isinstance(error.cause, ray.exceptions.RayError):
            raise error.cause from error
        raise EngineError(f"engine: ray: a task failed: {_first_line(error)}") from error
    except ray.exceptions.RayError as error:
        raise EngineError(
            f"engine: ray: a task could not finish ({type(error).__name__}: {_first_line(error)}) after "
            f"{MAX_RETRIES} retries; Ray's logs (/tmp/ray/session_latest/logs on each node) say why"
        ) from error


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _run_task(function, shared, item, cpus: int):
    """One item on a Ray worker: torch keeps to the task's CPUs, so tasks sharing a node do not oversubscribe it."""
    if "torch" in sys.modules:  # imported with `function`'s module when it trains; extraction need not load it
        sys.modules["torch"].set_num_threads(max(1, int(cpus)))
    return function(shared, item)


def unreachable(address: str, why: str) -> EngineError:
    return EngineError(
        f"engine: ray cannot reach the Ray cluster at RAY_ADDRESS={address} ({why}); "
        "start it there (`ray start --head`) or unset RAY_ADDRESS to run a local Ray instance"
    )


# The opening of an HTTP/2 connection (RFC 9113: the preface and an empty SETTINGS frame), as a gRPC client sends it
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, seconds: float = 10) -> None:
    """Refuse a host:port nothing listens on at once: ray.init would retry it for minutes. Refuse as well
    one that answers as a web server (Ray's dashboard, 8265, instead of its GCS port, 6379): ray.init
    would wait on it forever. Any other answer, or none, is left to Ray (a TLS cluster answers otherwise)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "local", "auto", ray://...: Ray resolves those itself
    try:
        connection = socket.create_connection((host, int(port)), timeout=seconds)
    except OSError as error:
        raise unreachable(address, error.strerror or str(error)) from error
    with connection:
        try:
            connection.settimeout(min(seconds, 3))
            connection.sendall(HTTP2_PREFACE)
            answer = connection.recv(16)
        except OSError:
            return
    if answer.startswith(b"HTTP/") or answer.lstrip().startswith(b"<"):  # a status line, or an HTML page (HTTP/0.9 style)
        raise EngineError(
            f"engine: ray: RAY_ADDRESS={address} answers as a web server, not as a Ray cluster's GCS; give the "
            "head node's GCS port (`ray start --head --port`, 6379 by default), not the dashboard's (8265)"
        )


@contextmanager
def ray_session():
    """Connect to the cluster RAY_ADDRESS names, or start a local Ray instance; shut down on leaving."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray is imported: no usage report leaves the machine
    import logging

    import ray

    address = os.environ.get("RAY_ADDRESS") or "local"
    check_reachable(address)
    packages = [str(Path(__file__).resolve().parents[1] / name) for name in PROJECT_PACKAGES]
    with _token_of_its_own() if address == "local" else contextlib.nullcontext():
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,  # workers' progress bars and warnings stay in Ray's logs
                logging_level=logging.WARNING,
                runtime_env={"py_modules": packages, "excludes": ["__pycache__"]},
            )
        except ConnectionError as error:
            cause = error.__cause__ or error.__context__  # Ray's own reason, an AuthenticationError for one
            why = f"{error}" + (f"; {type(cause).__name__}: {_first_line(cause)}" if cause else "")
            raise unreachable(address, why) from error
        try:
            yield
        finally:
            ray.shutdown()


AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_PROCESS_TOKEN = secrets.token_hex(32)


@contextmanager
def _token_of_its_own():
    """A new local Ray instance turns token authentication on (Ray 2.60) and, finding no token, writes one
    to ~/.ray/auth_token, where every later `ray start` on the machine finds it and switches to token mode
    (so a cluster started by hand no longer takes its worker nodes). The instance gets a token of its own in
    this process's environment instead, which its workers inherit; nothing is written. Where the user chose
    (any RAY_AUTH_* variable, or a token file already there), Ray does as they set."""
    if any(name in os.environ for name in AUTH_VARIABLES) or (Path.home() / ".ray" / "auth_token").exists():
        yield
        return
    # one token a process: Ray's token loader keeps the first it read. The mode is left to Ray, which turns it on.
    os.environ["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    try:
        yield
    finally:  # as before, so that a second instance in this process gets a token of its own too
        for name in AUTH_VARIABLES:
            os.environ.pop(name, None)
