"""Data sources for the `prepare` stage: each returns a `RawDataset` of uint8 RGB images."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np


class DataError(ValueError):
    """Bad input data or data parameters; the message names the file or parameter and how to fix it."""


@dataclass
class ImageSet:
    """images : (n, H, W, 3) uint8; labels : (n,) int64 indices into the class names."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"images must be uint8 (n, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"labels must be ({len(self.images)},), got {self.labels.shape}")
        self.labels = self.labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def batches(self, batch_size: int = 1000) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.images[start : start + batch_size]


class StreamedImages:
    """A split too large to hold: its labels up front, its images made or decoded a batch at a time, in order.

    batches : called once per pass; yields (m, H, W, 3) uint8 arrays whose lengths sum to len(labels).
    The images are the same whatever batch sizes the source chooses (`prepare` only concatenates them).
    """

    def __init__(self, labels: np.ndarray, image_shape: tuple[int, int, int], batches: Callable[[], Iterator[np.ndarray]]):
        self.labels = np.asarray(labels).astype(np.int64, copy=False)
        self.image_shape = tuple(image_shape)
        self._batches = batches

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self) -> Iterator[np.ndarray]:
        return self._batches()

    def materialize(self) -> ImageSet:
        """All of it in memory, as an ImageSet: for small data and tests."""
        parts = list(self.batches())
        images = np.concatenate(parts) if parts else np.zeros((0, *self.image_shape), np.uint8)
        return ImageSet(images, self.labels)


@dataclass
class RawDataset:
    """What a data source yields before the train/val(/test) split.

    test is None when the source has no given test split; `prepare` then carves one by seed.
    checksum identifies the source (sha256 of the archive, or of the generator's parameters).
    skipped : images left out under `data.on_bad_image: skip`, as {"path": relative path, "reason": ...},
    so that prepare can report and record them instead of losing them silently.
    """

    class_names: list[str]
    train: ImageSet | StreamedImages
    test: ImageSet | StreamedImages | None
    source: str
    checksum: str
    skipped: list[dict] = field(default_factory=list)
