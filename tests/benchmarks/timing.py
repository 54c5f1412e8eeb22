"""Timing two or more ways of doing the same work, fairly on a shared, noisy machine."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def alternating_medians(ways: dict[str, Callable[[], object]], repeats: int, units: float = 1.0) -> dict[str, float]:
    """The median seconds per unit of each way, over `repeats` rounds that take the ways in turn,
    reversing the order every other round so that neither always runs first (warm caches, turbo)."""
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(repeats):
        for way in ways if repeat % 2 == 0 else reversed(list(ways)):
            start = time.perf_counter()
            ways[way]()
            seconds[way].append((time.perf_counter() - start) / units)
    return {way: statistics.median(times) for way, times in seconds.items()}
