"""Ctrl-C inside a deferred block waits for its end, then does what the handler in place would have done."""
from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline.interrupts import interrupts_deferred, uninterruptible


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test (pytest-xdist workers ignore SIGINT), the previous one after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_a_deferred_block_lands_when_the_outermost_block_ends(python_sigint_handler):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler has run by now
                reached.append("inner end")
            reached.append("outer end")  # the inner block did not raise it
    assert reached == ["inner end", "outer end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C interrupts again at once


def test_a_deferred_block_without_ctrl_c_returns_its_value_and_restores_the_handler(python_sigint_handler):
    assert uninterruptible(lambda x: x + 1)(1) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_deferred_ctrl_c_that_was_ignored_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
