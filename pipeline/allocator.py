"""Minibatch-sized buffers reused from the heap instead of fresh pages from the kernel at every step.

glibc's malloc serves a block of more than 128 KB with a new mmap (the bound rises only to the size of
the last such block freed, and a block of that same size is mapped again) and hands a free heap top of
more than 128 KB back to the kernel. A training loop allocates the same few-MB blocks every step (a
minibatch of rows, torch's gradients and activations), so each step touched fresh pages: one page fault
for every 4 KB, every time. On the 2-core AVX2 machine an epoch of CIFAR-10 `bovw` rows (90,000 x 6,400
float32, from the page cache) took 3.1-3.6 s that way and 0.9-1.2 s with large blocks kept; a step of the
MLP on pixels 24-29 ms against 20 ms (README: Benchmarks, The heap). Results do not change.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
# Blocks up to 32 MB (the largest value glibc accepts) come from the heap; up to 256 MB of free heap top
# stays with the process. Both fixed: glibc then stops adjusting them itself.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep large freed blocks for reuse; whether it took (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's own symbol: musl has mallopt too, with other meanings
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
