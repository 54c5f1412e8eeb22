"""Feature rows as the extract stage stores them (an extractor's `stored_as`) and as readers get them back.

Extractors compute float32 rows. Where fewer bytes hold the same values, the stage stores those instead,
and every reader widens them back to float32 before anything else sees them:

    float32   as computed
    float16   rounded to float16 (bovw's codes: a few units at most); widening is exact
    uint8     8-bit intensities: a row of k / 255 (raw pixels) stored as k, read back as float32(k) / 255,
              bit for bit the value the extractor computed

So a model trains on the same numbers whatever the storage, and training reads a quarter (uint8) or
half (float16) of the bytes every epoch (README: Benchmarks).
"""
from __future__ import annotations

import numpy as np

INTENSITY_LEVELS = np.float32(255)  # a uint8 row holds k, the feature is k / 255
STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))


class UnstorableRows(ValueError):
    """Rows whose values the storage dtype cannot hold; the message says what was wrong."""


def stored_rows(features: np.ndarray, dtype) -> np.ndarray:
    """float32 feature rows in the storage dtype, refusing any value it would not give back as computed
    (float16: only overflow, its rounding is the point; uint8: anything but k / 255)."""
    dtype = np.dtype(dtype)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"feature rows are stored as float32, float16 or uint8, not {dtype}")
    if dtype == np.uint8:
        with np.errstate(invalid="ignore", over="ignore"):
            levels = np.rint(np.asarray(features, np.float32) * INTENSITY_LEVELS)
        if not ((levels >= 0) & (levels <= 255)).all():
            raise UnstorableRows("values outside 0..1 for its uint8 storage (8-bit intensities k / 255)")
        stored = levels.astype(np.uint8)
        if not np.array_equal(read_back(stored), features):
            raise UnstorableRows("values that are not 8-bit intensities k / 255 for its uint8 storage")
        return stored
    with np.errstate(over="ignore"):  # an overflow is the error below, not a warning
        stored = np.asarray(features).astype(dtype, copy=False)
    if not np.isfinite(stored).all():  # beyond float16's 65,504
        raise UnstorableRows(f"values too large for its {dtype} storage")
    return stored


def read_back(rows: np.ndarray) -> np.ndarray:
    """Stored rows as float32 feature values (a new array unless they are float32 already)."""
    if rows.dtype == np.uint8:
        return np.divide(rows, INTENSITY_LEVELS, dtype=np.float32)
    return rows.astype(np.float32, copy=False)
