"""Shared fixtures: a seeded generator and a few tiny synthetic images (constant, step edge, disk, noise)."""
from __future__ import annotations

import numpy as np
import pytest

SIZE = 32


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def constant_image(value=(120, 60, 200)) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.uint8), (SIZE, SIZE, 3)).copy()


def step_edge_image(vertical: bool = True) -> np.ndarray:
    """Dark left half, bright right half (or top/bottom when vertical=False)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    if vertical:
        image[:, SIZE // 2 :] = 255
    else:
        image[SIZE // 2 :] = 255
    return image


def disk_image() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 4) ** 2
    image = np.full((SIZE, SIZE, 3), 30, np.uint8)
    image[inside] = (220, 40, 40)
    return image


@pytest.fixture
def images(rng) -> np.ndarray:
    """(8, 32, 32, 3) uint8: constant, two step edges, disk, four noise images."""
    noise = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    return np.stack([constant_image(), step_edge_image(True), step_edge_image(False), disk_image(), *noise])
