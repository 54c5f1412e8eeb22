"""Ctrl-C that waits for the MLflow store's writes to finish: a KeyboardInterrupt inside SQLAlchemy can
leave this process's SQLite transaction open, and the writes that record the interruption then find the
database locked (or wait on it)."""
from __future__ import annotations

import functools
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_deferring = threading.local()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) inside the block takes effect when the outermost such block ends, as the handler
    in place before it would have had it (Python's: a KeyboardInterrupt; ignored stays ignored).

    Outside the main thread, where signals cannot be handled, the block runs as it is.
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
