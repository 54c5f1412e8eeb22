"""What every stage entry point shares: a clear one-line error instead of a traceback wall."""
from __future__ import annotations

import atexit
import functools
import gc
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from pipeline.datasets import DataError
from pipeline.params import ParamsError

# Errors a user can cause and fix (bad params or YAML, data, names, a read-only MLflow store or output
# folder); their messages name the problem and the fix. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, ParamsError, ValueError, FileNotFoundError, PermissionError, FloatingPointError)


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS, and the tracking module's StoreError when the stage loaded it: only then can it be
    raised, and importing it here would make every stage depend on tracking.py in dvc.yaml."""
    tracking = sys.modules.get("pipeline.tracking")
    return USER_ERRORS + ((tracking.StoreError,) if tracking else ())


def run_stage(main: Callable[[], None], name: str) -> None:
    """Run `main`; a user error prints `featurebench NAME: error: ...` and exits 2, Ctrl-C exits 130."""
    # Registered before anything the stage sets up, so it runs after their exit handlers (MLflow's, tqdm's, temporary files'):
    # the objects alive then are never collected at shutdown, whose final collection walks everything
    # torch, torch.export and MLflow imported (about a second per stage). The process ends right after.
    atexit.register(gc.freeze)
    try:
        main()
    except user_errors() as error:
        print(f"featurebench {name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"featurebench {name}: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)


_deferring = threading.local()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) inside the block takes effect when the outermost such block ends, as the handler
    in place before it would have had it (Python's: a KeyboardInterrupt; ignored stays ignored).

    For writes to the MLflow store: a KeyboardInterrupt raised inside SQLAlchemy can leave this process's
    SQLite transaction open, and the writes that record the interruption then find the database locked
    (or wait on it). Outside the main thread, where signals cannot be handled, the block runs as it is.
    """
    if getattr(_deferring, "active", False) or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    previous = signal.default_int_handler if previous is None else previous
    _deferring.active = True
    try:
        yield
    finally:
        _deferring.active = False
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)  # Python's own handler raises KeyboardInterrupt
        elif received and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def uninterruptible(function: Callable) -> Callable:
    """`function` run inside interrupts_deferred()."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with interrupts_deferred():
            return function(*args, **kwargs)

    return wrapper
