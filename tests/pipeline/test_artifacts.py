"""The data layer: .npy files written a batch at a time, rows read on demand, in any order, in any batch size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from features import get_extractor
from models.training import TensorRows
from pipeline.artifacts import (
    AppendedRows,
    ColumnConcatenation,
    MappedRows,
    NpyWriter,
    StandardizedRows,
    hold_rows,
    image_batches,
    images_path,
    read_all,
    release_rows,
    row_cache_budget,
    write_split,
)
from pipeline.datasets.shapes import make_shapes
from pipeline.extract import extract_split


def write_rows(path, rows: np.ndarray, batch_size: int) -> MappedRows:
    with NpyWriter(path, len(rows), rows.shape[1:], rows.dtype) as writer:
        for start in range(0, len(rows), batch_size):
            writer.write(rows[start : start + batch_size])
    return MappedRows(path)


def test_a_file_written_batch_by_batch_is_a_plain_npy(tmp_path):
    rows = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    write_rows(tmp_path / "x.npy", rows, batch_size=4)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), rows)


def test_a_writer_refuses_fewer_or_more_rows_than_announced_and_the_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="3 rows written of the 4"):
        with NpyWriter(tmp_path / "x.npy", 4, (2,), np.float32) as writer:
            writer.write(np.zeros((3, 2), np.float32))
    with NpyWriter(tmp_path / "y.npy", 2, (2,), np.float32) as writer:
        with pytest.raises(ValueError, match="more than the 2 rows"):
            writer.write(np.zeros((3, 2), np.float32))
        with pytest.raises(ValueError, match="float64"):
            writer.write(np.zeros((2, 2)))
        writer.write(np.zeros((2, 2), np.float32))


def test_rows_come_back_in_the_order_asked_whatever_it_is(tmp_path):
    rows = np.arange(40, dtype=np.float32).reshape(20, 2)
    mapped = write_rows(tmp_path / "x.npy", rows, 7)
    for indices in ([3, 1, 19, 0], [5, 6, 7], [], [4, 4, 2]):
        np.testing.assert_array_equal(mapped.rows(indices), rows[indices])
    assert len(mapped) == 20 and mapped.dim == 2


def test_rows_of_any_dtype_and_shape_read_back_exactly_and_out_of_range_rows_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    for name, rows in {
        "images": rng.integers(0, 256, (13, 5, 7, 3), dtype=np.uint8),
        "labels": rng.integers(0, 10, 13),
        "half": rng.normal(size=(13, 3)).astype(np.float16),
    }.items():
        mapped = write_rows(tmp_path / f"{name}.npy", rows, 5)
        np.testing.assert_array_equal(mapped.rows([12, 0, 6, 6]), rows[[12, 0, 6, 6]])
        np.testing.assert_array_equal(mapped.slice(4, 99), rows[4:])
        assert mapped.rows([]).shape == (0, *rows.shape[1:])
        with pytest.raises(IndexError, match="outside 0..12"):
            mapped.rows([2, 13])


def test_a_file_cut_short_is_named_rather_than_read_as_zeros(tmp_path):
    mapped = write_rows(tmp_path / "x.npy", np.ones((10, 4), np.float32), 10)
    with open(mapped.path, "r+b") as handle:
        handle.truncate(mapped.offset + 5 * mapped.row_bytes)
    np.testing.assert_array_equal(mapped.rows([1, 4]), np.ones((2, 4), np.float32))
    with pytest.raises(EOFError, match="x.npy ends before"):
        mapped.rows([2, 8])


def test_a_feature_set_concatenates_its_members_columns_a_batch_at_a_time(tmp_path):
    a = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
    b = np.random.default_rng(2).normal(size=(9, 2)).astype(np.float32)
    both = ColumnConcatenation([write_rows(tmp_path / "a.npy", a, 4), write_rows(tmp_path / "b.npy", b, 4)])
    assert both.dim == 5
    np.testing.assert_array_equal(both.rows([8, 0]), np.concatenate([a, b], 1)[[8, 0]])
    np.testing.assert_array_equal(np.concatenate(list(both.batches(4))), np.concatenate([a, b], 1))


def test_appended_rows_index_across_their_parts(tmp_path):
    first = np.zeros((3, 2), np.float32)
    second = np.ones((4, 2), np.float32)
    appended = AppendedRows([write_rows(tmp_path / "a.npy", first, 3), write_rows(tmp_path / "b.npy", second, 3)])
    assert len(appended) == 7
    np.testing.assert_array_equal(appended.rows([6, 0, 3, 2]), [[1, 1], [0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(read_all(appended), np.concatenate([first, second]))


def test_standardized_rows_read_as_tensors_in_slices(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    standardized = StandardizedRows(write_rows(tmp_path / "x.npy", rows, 6), np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert standardized.shape == (6, 2)
    np.testing.assert_allclose(standardized[1:3].numpy(), (rows[1:3] - 1) / 2)


def test_float16_rows_are_standardized_in_float32_from_their_widened_values(tmp_path):
    rows = np.random.default_rng(0).gamma(2.0, size=(9, 5)).astype(np.float16)  # as bovw's are stored
    mean, scale = rows.astype(np.float64).mean(0), rows.astype(np.float64).std(0)
    standardized = StandardizedRows(write_rows(tmp_path / "x.npy", rows, 4), mean, scale)
    read = standardized.rows([7, 0, 3])
    assert read.dtype == np.float32
    expected = (rows[[7, 0, 3]].astype(np.float32) - mean.astype(np.float32)) / scale.astype(np.float32)
    np.testing.assert_allclose(read, expected, rtol=1e-6, atol=1e-6)


def test_values_beyond_the_storage_dtype_stop_the_extraction_naming_it(tmp_path):
    from features.base import FeatureExtractor

    class Huge(FeatureExtractor):
        stored_as = np.float16

        def transform(self, images):
            return np.full((len(images), 2), 1e6, np.float32)  # finite in float32, beyond float16's 65,504

        def output_dim(self, image_shape):
            return 2

    images = make_shapes(n_train=100, n_test=10, seed=0).train.images[:6]
    write_split(tmp_path, "train", images, np.zeros(len(images), np.int64), batch_size=6)
    with NpyWriter(tmp_path / "train.npy", len(images), (2,), np.float16) as writer:
        with pytest.raises(ValueError, match="too large for its float16 storage on the train split"):
            extract_split(Huge(), "huge", "train", image_batches(images_path("train", tmp_path), len(images), 3), writer, "local")
        writer.write(np.zeros((len(images), 2), np.float16))  # what closing needs: the file stays a valid .npy


def test_extracted_features_are_byte_identical_whatever_the_batch_size(tmp_path):
    images = make_shapes(n_train=100, n_test=10, seed=0).train.images[:50]
    write_split(tmp_path, "train", images, np.zeros(len(images), np.int64), batch_size=13)
    for name in ("pixels", "hog", "color_hist"):
        extractor = get_extractor(name)
        dim = extractor.output_dim(images.shape[1:])
        files = []
        for batch_size in (7, 50):
            path = tmp_path / f"{name}-{batch_size}.npy"
            with NpyWriter(path, len(images), (dim,), np.float32) as writer:
                extract_split(extractor, name, "train_mirrored", image_batches(images_path("train", tmp_path), len(images), batch_size, True), writer, "local")
            files.append(path.read_bytes())
        assert files[0] == files[1]
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}-7.npy"), extractor.transform(np.ascontiguousarray(images[:, :, ::-1])))


def test_a_read_leaves_no_mapping_behind(tmp_path):
    """Pages a long-lived mapping touched count in the process's resident memory: reads map nothing."""
    psutil = pytest.importorskip("psutil")
    mapped = write_rows(tmp_path / "x.npy", np.zeros((1000, 64), np.float32), 100)
    mapped.rows([5, 900, 3])
    mapped.slice(0, 1000)
    assert not any(str(tmp_path / "x.npy") == region.path for region in psutil.Process().memory_maps())


@pytest.fixture
def no_held_rows():
    release_rows()
    yield
    release_rows()


def test_held_rows_read_the_same_values_whole_or_in_part(tmp_path, no_held_rows):
    values = np.random.default_rng(0).normal(size=(500, 9)).astype(np.float32)
    train = write_rows(tmp_path / "train.npy", values, 64)
    mirrored = write_rows(tmp_path / "mirrored.npy", values[::-1].copy(), 64)
    source = StandardizedRows(AppendedRows([ColumnConcatenation([train]), ColumnConcatenation([mirrored])]), values.mean(0), values.std(0))
    indices = np.random.default_rng(1).permutation(1000)[:300]
    from_disk = source.rows(indices)
    held = hold_rows([source], budget=700 * 9 * 4)  # all of train, 200 rows of the mirrored file
    assert held == 700 * 9 * 4
    np.testing.assert_array_equal(source.rows(indices), from_disk)
    np.testing.assert_array_equal(mirrored.slice(150, 250), values[::-1][150:250])
    np.testing.assert_array_equal(mirrored.rows(np.arange(190, 210)), values[::-1][190:210])
    assert hold_rows([MappedRows(tmp_path / "train.npy")], budget=10**9) == 700 * 9 * 4  # a path is held once, not again


def test_the_row_budget_comes_from_the_environment_and_zero_holds_nothing(tmp_path, no_held_rows, monkeypatch):
    assert row_cache_budget() == 512 << 20
    monkeypatch.setenv("FEATUREBENCH_ROW_CACHE_MB", "0")
    mapped = write_rows(tmp_path / "x.npy", np.ones((100, 4), np.float32), 10)
    assert hold_rows([mapped]) == 0
    monkeypatch.setenv("FEATUREBENCH_ROW_CACHE_MB", "a lot")
    with pytest.raises(ValueError, match="FEATUREBENCH_ROW_CACHE_MB must be a number of megabytes"):
        row_cache_budget()


def two_member_set_and_its_mirror(folder, rng, rows: int, widths: tuple[int, int], last_in_memory: bool = False):
    """(AppendedRows of a two-member feature set's split and its mirrored rows, the rows it must read):
    files `a`, `b`, `a_m`, `b_m` in `folder`; with `last_in_memory`, `b`'s mirrored rows are a TensorRows
    instead (rows() alone: no dtype, no read_into)."""
    a, b = (rng.normal(size=(rows, width)).astype(np.float32) for width in widths)
    a_mirrored, b_mirrored = a[::-1].copy(), b[::-1].copy()
    last = TensorRows(torch.from_numpy(b_mirrored)) if last_in_memory else write_rows(folder / "b_m.npy", b_mirrored, 64)
    source = AppendedRows([
        ColumnConcatenation([write_rows(folder / "a.npy", a, 64), write_rows(folder / "b.npy", b, 64)]),
        ColumnConcatenation([write_rows(folder / "a_m.npy", a_mirrored, 64), last]),
    ])
    return source, np.concatenate([np.concatenate([a, b], 1), np.concatenate([a_mirrored, b_mirrored], 1)])


def test_a_feature_set_with_mirrored_rows_partly_held_reads_what_memory_holds(tmp_path, no_held_rows):
    rng = np.random.default_rng(0)
    source, expected = two_member_set_and_its_mirror(tmp_path, rng, 200, (7, 3), last_in_memory=True)
    indices = rng.integers(0, 400, 300)  # any order, repeats, both halves
    np.testing.assert_array_equal(source.rows(indices), expected[indices])
    hold_rows([source], budget=150 * 7 * 4)  # 150 of a's rows, nothing else
    np.testing.assert_array_equal(source.rows(indices), expected[indices])
    np.testing.assert_array_equal(source.rows(np.arange(210, 230)), expected[210:230])  # one part only
    np.testing.assert_array_equal(source.rows([]), np.zeros((0, 10), np.float32))


def test_members_of_different_dtypes_are_concatenated_as_numpy_would(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(4, 3)
    scores = np.linspace(0, 1, 8, dtype=np.float32).reshape(4, 2)
    both = ColumnConcatenation([write_rows(tmp_path / "p.npy", pixels, 2), write_rows(tmp_path / "s.npy", scores, 2)])
    np.testing.assert_array_equal(both.rows([3, 1]), np.concatenate([pixels, scores], 1)[[3, 1]])
    assert both.rows([0]).dtype == np.float32


def test_images_read_from_two_files_keep_their_shape(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    appended = AppendedRows([write_rows(tmp_path / "x.npy", images[:3], 2), write_rows(tmp_path / "y.npy", images[3:], 2)])
    np.testing.assert_array_equal(appended.rows([5, 0, 4]), images[[5, 0, 4]])


def test_a_feature_set_held_whole_reads_every_row_from_memory_into_place(tmp_path, no_held_rows):
    rng = np.random.default_rng(6)
    source, expected = two_member_set_and_its_mirror(tmp_path, rng, 120, (5, 2))
    assert hold_rows([source], budget=10**9) == expected.nbytes
    for path in ("a.npy", "b.npy", "a_m.npy", "b_m.npy"):
        (tmp_path / path).write_bytes(b"")  # every read must now come from memory
    indices = rng.integers(0, 240, 500)  # any order, repeats, both halves
    np.testing.assert_array_equal(source.rows(indices), expected[indices])
