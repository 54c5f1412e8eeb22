"""Numba kernels compiled on first use, once a process: the stages that never call one do not import numba.

Each kernel is cached beside its module (numba's `cache=True`, a dvc-ignored `__pycache__`): a later
process loads it instead of compiling. Without a writable place for that cache (a read-only install and
home) it is compiled in each process instead.
"""
from __future__ import annotations

import threading
from typing import Callable


class LazyKernel:
    """A Python function compiled with numba.njit(nogil=True, **options) when `compiled()` is first asked."""

    def __init__(self, function: Callable, **options):
        self.function, self.options = function, options
        self._compiled = None
        self._lock = threading.Lock()  # threads of one process (bovw's encoder) ask at once

    def compiled(self) -> Callable:
        with self._lock:
            if self._compiled is None:
                import numba

                try:
                    self._compiled = numba.njit(nogil=True, cache=True, **self.options)(self.function)
                except RuntimeError:  # no writable place for numba's cache
                    self._compiled = numba.njit(nogil=True, **self.options)(self.function)
        return self._compiled
