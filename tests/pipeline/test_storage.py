"""Feature rows stored in fewer bytes than float32 read back as the values the extractor computed."""
from __future__ import annotations

import numpy as np
import pytest

from features import get_extractor
from pipeline.storage import UnstorableRows, read_back, stored_rows


def every_intensity_images() -> np.ndarray:
    """(2, 16, 8, 3) uint8 holding each of the 256 levels in every channel, and their reverse."""
    levels = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    return np.stack([levels[:, :8], levels[::-1, 8:]])


def test_pixel_rows_stored_as_uint8_read_back_bit_for_bit():
    pixels = get_extractor("pixels")
    rows = pixels.transform(every_intensity_images())
    stored = stored_rows(rows, pixels.stored_as)
    assert stored.dtype == np.uint8 and stored.nbytes * 4 == rows.nbytes
    back = read_back(stored)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.view(np.uint32), rows.view(np.uint32))  # the same bits, not just close


@pytest.mark.parametrize(
    "rows,reason",
    [
        (np.array([[0.5, 1 / 255]], np.float32), "not 8-bit intensities"),  # 0.5 is 127.5 levels
        (np.array([[1.5, 0.0]], np.float32), "outside 0..1"),
        (np.array([[-1 / 255, 0.0]], np.float32), "outside 0..1"),
        (np.array([[np.nan, 0.0]], np.float32), "outside 0..1"),
    ],
    ids=["between-levels", "above-one", "negative", "nan"],
)
def test_uint8_storage_refuses_what_it_would_not_give_back(rows, reason):
    with pytest.raises(UnstorableRows, match=reason):
        stored_rows(rows, np.uint8)


def test_float16_storage_rounds_but_refuses_overflow_and_widens_exactly():
    rows = np.array([[0.1, 3.0, 65504.0]], np.float32)
    stored = stored_rows(rows, np.float16)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(read_back(stored), rows.astype(np.float16).astype(np.float32))
    with pytest.raises(UnstorableRows, match="too large for its float16 storage"):
        stored_rows(np.array([[1e6]], np.float32), np.float16)


def test_float32_rows_are_stored_and_read_as_they_are():
    rows = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    assert read_back(stored_rows(rows, np.float32)) is rows


def test_other_storage_dtypes_are_refused():
    with pytest.raises(ValueError, match="float32, float16 or uint8"):
        stored_rows(np.zeros((1, 2), np.float32), np.int16)
