"""Data sources for the `prepare` stage: each returns a `RawDataset` of uint8 RGB images."""
from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class RawDataset:
    """What a data source yields before the train/val(/test) split.

    test is None when the source has no given test split; `prepare` then carves one by seed.
    checksum identifies the source (sha256 of the archive, or of the generator's parameters).
    skipped : images left out under `data.on_bad_image: skip`, as {"path": relative path, "reason": ...},
    so that prepare can report and record them instead of losing them silently.
    """

    class_names: list[str]
    train: ImageSet
    test: ImageSet | None
    source: str
    checksum: str
    skipped: list[dict] = field(default_factory=list)
