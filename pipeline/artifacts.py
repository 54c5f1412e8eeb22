"""The data layer: what the stages hand each other, on disk, read and written a batch at a time.

Layout (one `.npy` per split, so any row is a seek away and the files memory-map):

    data/prepared/meta.json                       class names, image shape, counts
    data/prepared/{split}_images.npy              (n, H, W, 3) uint8
    data/prepared/{split}_labels.npy              (n,) int64
    data/features/NAME/{split}.npy                (n, d) float32; also train_mirrored, val_mirrored

Why one `.npy` per split rather than shards: with the row count known before the first batch,
`numpy.lib.format.open_memmap` writes the header once and every batch lands at its offset, so a
writer needs no index and a reader sees one array (np.load(mmap_mode="r")). Measured on 100k 32x32
images on a loaded 2-core machine (`python tests/benchmarks/bench_scale.py --layout 100000`): writing
6.8 s one file / 8.5 s 10k-image shards, a sequential pass 1.6 s / 0.9 s, 200 random 256-image
minibatches 2.7 s / 7.6 s: training's random minibatches, read every step, are what matter, and one
file serves them with one mapping where shards need one per shard a minibatch touches. Shards would
only win for appending to a split of unknown size, which no stage does: `prepare` plans the splits
from the labels before it writes an image.

Memory: readers copy rows out of the file with positioned reads (`os.preadv`, one per row, in file
order), never through a mapping: a mapping holds every page it touched in the process's resident set, so
a pass over a 2 GB feature file would show as 2 GB of RSS. Writers write through the file (sequential
batches in order) for the same reason. A minibatch of a feature set and its mirrored rows is one output
array that every row is read straight into, at its place and columns (`read_into`): reading each file
into an array of its own and copying them together cost 7x as much for `bovw`'s 6,400 columns.

Speed: a minibatch of rows at random positions from the page cache costs 2-4x an in-memory gather with
positioned reads (1.1 ms against 0.2-0.3 ms for 256 HoG or pixel rows on this project's 2-core machine),
and 3-15x through a fresh memory map per read, which this module used first (its page faults made a
linear stage on CIFAR-10 three times slower than in memory): `python tests/benchmarks/bench_row_reads.py`.
So training also holds the leading rows of the files it reads every step in memory, up to a fixed budget
(`hold_rows`, FEATUREBENCH_ROW_CACHE_MB, 512 MB by default): small data trains from memory, larger data
keeps that much in memory and reads the rest from disk, and no process grows with the data set.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from numpy.lib import format as npy_format

from pipeline.io import read_json

SPLITS = ("train", "val", "test")
MIRRORED_SPLITS = ("train", "val")  # extract.mirror adds these splits' left-right mirrored images as `{split}_mirrored`
PREPARED_DIR = Path("data/prepared")
FEATURES_DIR = Path("data/features")
TRAIN_RESULTS_DIR = Path("results/train")
EXTRACT_METRICS_DIR = Path("results/extract")
PREVIEW_NAME = "preview.png"  # an extractor's picture of what it sees, beside its features
STATISTICS_CHUNK_ROWS = 4096  # rows per read for streaming statistics: fixed, so no setting changes the sums' rounding
ROW_CACHE_VARIABLE = "FEATUREBENCH_ROW_CACHE_MB"
DEFAULT_ROW_CACHE_MB = 512  # the largest stage process stays within 1.5x from 20k to 200k images (issue #14)


# --- where things are ------------------------------------------------------------------------------

def feature_dir(extractor: str) -> Path:
    return FEATURES_DIR / extractor


def features_path(extractor: str, key: str, features_dir: Path = FEATURES_DIR) -> Path:
    """data/features/NAME/{key}.npy, key a split or a mirrored split (`train_mirrored`)."""
    return features_dir / extractor / f"{key}.npy"


def images_path(split: str, prepared_dir: Path = PREPARED_DIR) -> Path:
    return prepared_dir / f"{split}_images.npy"


def labels_path(split: str, prepared_dir: Path = PREPARED_DIR) -> Path:
    return prepared_dir / f"{split}_labels.npy"


def feature_previews(members: list[str]) -> list[Path]:
    """The pictures of the extractors behind a feature set (extractors that draw none are skipped)."""
    return [feature_dir(member) / PREVIEW_NAME for member in members if (feature_dir(member) / PREVIEW_NAME).exists()]


def train_dir(classifier: str, feature_set: str) -> Path:
    return TRAIN_RESULTS_DIR / f"{classifier}-{feature_set}"


def mirrored(split: str) -> str:
    """The features file key of a split's mirrored images."""
    return f"{split}_mirrored"


# --- writing ---------------------------------------------------------------------------------------

class NpyWriter:
    """An (n, *row_shape) `.npy` file written batch after batch, in order, without holding it.

    open_memmap lays down the header and the full-size file; batches are then written through an
    ordinary file handle at the running offset. Closing checks that exactly n rows came.
    """

    def __init__(self, path: str | Path, n_rows: int, row_shape: tuple[int, ...], dtype):
        self.path, self.n_rows, self.row_shape, self.dtype = Path(path), int(n_rows), tuple(row_shape), np.dtype(dtype)
        header = npy_format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=(self.n_rows, *self.row_shape))
        offset = header.offset
        del header  # unmapped: nothing written through it
        self.handle = open(self.path, "r+b")
        self.handle.seek(offset)
        self.written = 0

    def write(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.dtype != self.dtype or tuple(batch.shape[1:]) != self.row_shape:
            raise ValueError(f"{self.path.name}: a batch of {batch.dtype} {batch.shape[1:]} rows, expected {self.dtype} {self.row_shape}")
        if self.written + len(batch) > self.n_rows:
            raise ValueError(f"{self.path.name}: more than the {self.n_rows} rows announced")
        self.handle.write(np.ascontiguousarray(batch).tobytes())
        self.written += len(batch)

    def close(self) -> None:
        self.handle.close()
        if self.written != self.n_rows:
            raise ValueError(f"{self.path.name}: {self.written} rows written of the {self.n_rows} announced")

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.handle.close()  # the atomic directory around it is dropped


def write_split(prepared_dir: Path, split: str, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> None:
    """A prepared split's images and labels from memory, in the data layer's layout (tests, small data)."""
    with NpyWriter(images_path(split, prepared_dir), len(images), images.shape[1:], np.uint8) as writer:
        for start in range(0, len(images), batch_size):
            writer.write(images[start : start + batch_size])
    np.save(labels_path(split, prepared_dir), np.asarray(labels, np.int64))


# --- reading ---------------------------------------------------------------------------------------

class MappedRows:
    """Rows of an (n, ...) `.npy` file, read on demand with positioned reads (os.preadv), never a mapping.

    Satisfies models.training's row source: len() and rows(indices) -> float32/uint8 array in that order.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()  # absolute: a Ray worker reads it from a working directory of its own
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} is missing")
        with open(self.path, "rb") as handle:
            version = npy_format.read_magic(handle)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran_order:
            raise ValueError(f"{self.path} is in Fortran order; the data layer writes C order only")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.dim = int(np.prod(self.shape[1:]))  # values a row; asked on every read, so computed once
        self.row_bytes = self.dim * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop as an array of their own, read in one positioned read."""
        start, stop = max(0, start), min(len(self), stop)
        held = _HELD_ROWS.get(self.path)
        if held is not None and stop <= len(held):
            return held[start:stop].copy()
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        if len(out):
            with open(self.path, "rb", buffering=0) as handle:
                _read_exactly(handle.fileno(), _bytes_of(out), self.offset + start * self.row_bytes, self.path)
        return out

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def rows(self, indices) -> np.ndarray:
        """The rows at `indices`, in that order: held rows from memory, the others read in ascending file order."""
        indices = np.asarray(indices, dtype=np.int64)
        held = _HELD_ROWS.get(self.path)
        if held is not None and (len(held) == len(self) or (len(indices) and indices.max() < len(held))):
            return held[indices]
        if consecutive(indices):  # a chunk of a pass over the file: one read
            return self.slice(int(indices[0]), int(indices[-1]) + 1)
        return rows_read_into(self, indices)

    def read_into(self, indices: np.ndarray, out: np.ndarray, positions: np.ndarray, column: int = 0) -> None:
        """Row indices[k] into out[positions[k], column : column + dim] (out: a C-contiguous (n, D) array of
        this file's dtype): held rows from memory, the others with one positioned read each, straight into
        `out`, in ascending file order."""
        held = _HELD_ROWS.get(self.path)
        if held is not None and len(held) == len(self):  # the whole file in memory: no row to sort out
            out[positions, column : column + self.dim] = held[indices].reshape(-1, self.dim)
            return
        if held is not None:
            in_memory = indices < len(held)
            if in_memory.any():
                out[positions[in_memory], column : column + self.dim] = held[indices[in_memory]].reshape(-1, self.dim)
            indices, positions = indices[~in_memory], positions[~in_memory]
        if not len(indices):
            return
        if not out.flags.c_contiguous:
            raise ValueError("read_into needs a C-contiguous output array")
        if indices.min() < 0 or indices.max() >= len(self):
            raise IndexError(f"row indices outside 0..{len(self) - 1} of {self.path}")
        flat, row_bytes = _bytes_of(out), self.row_bytes
        out_row_bytes, column_bytes = out.shape[1] * out.itemsize, column * out.itemsize
        with open(self.path, "rb", buffering=0) as handle:
            descriptor = handle.fileno()
            for k in np.argsort(indices, kind="stable"):
                start = int(positions[k]) * out_row_bytes + column_bytes
                _read_exactly(descriptor, flat[start : start + row_bytes], self.offset + int(indices[k]) * row_bytes, self.path)

    def batches(self, batch_size: int = STATISTICS_CHUNK_ROWS) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.slice(start, start + batch_size)


def _bytes_of(array: np.ndarray) -> memoryview:
    """A C-contiguous array's memory as writable bytes."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _read_exactly(descriptor: int, into: memoryview, offset: int, path: Path) -> None:
    """Fill `into` from the file at `offset` (pread may return less than asked: read on until full)."""
    while len(into):
        count = os.preadv(descriptor, [into], offset)
        if count == 0:
            raise EOFError(f"{path} ends before the rows its header promises; re-run the stage that wrote it")
        into, offset = into[count:], offset + count


def consecutive(indices: np.ndarray) -> bool:
    return bool(len(indices)) and bool(np.all(np.diff(indices) == 1))


def rows_read_into(source, indices) -> np.ndarray:
    """source.rows(indices) for a source with read_into: one output array, every row read straight into it
    (a feature set's members side by side, a split's mirrored rows after it), no intermediate copies."""
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), source.dim), source.dtype)
    source.read_into(indices, out, np.arange(len(indices)), 0)
    return out.reshape(len(indices), *source.row_shape)


def read_into(source, indices: np.ndarray, out: np.ndarray, positions: np.ndarray, column: int) -> None:
    """source.read_into where it has one; else its rows() copied into place."""
    if hasattr(source, "read_into") and getattr(source, "dtype", None) == out.dtype:
        source.read_into(indices, out, positions, column)
    else:
        out[positions, column : column + source.dim] = np.asarray(source.rows(indices)).reshape(len(indices), -1)


def common_dtype(parts: Sequence) -> np.dtype | None:
    """The parts' dtype when they all have the same one, else None (then rows are concatenated as read)."""
    dtypes = {np.dtype(part.dtype) for part in parts if hasattr(part, "dtype")}
    return dtypes.pop() if len(dtypes) == 1 and all(hasattr(part, "dtype") for part in parts) else None


# path -> the file's leading rows, in memory (see the module docstring: Speed)
_HELD_ROWS: dict[Path, np.ndarray] = {}


def row_cache_budget() -> int:
    """Bytes of rows `hold_rows` may keep: FEATUREBENCH_ROW_CACHE_MB (0 turns it off), else 512 MB."""
    value = os.environ.get(ROW_CACHE_VARIABLE, "").strip()
    try:
        megabytes = float(value) if value else DEFAULT_ROW_CACHE_MB
    except ValueError:
        raise ValueError(f"{ROW_CACHE_VARIABLE} must be a number of megabytes; got {value!r}") from None
    return max(0, int(megabytes * (1 << 20)))


def hold_rows(sources: Sequence, budget: int | None = None) -> int:
    """Keep the leading rows of each source's files in memory, in the order given, until `budget` bytes.

    sources : MappedRows, or row sources built of them (ColumnConcatenation, AppendedRows, StandardizedRows);
    a file already held is not held twice. Reads of those rows then come from memory, with the same
    values: what is held changes the speed, never a result. Returns the bytes held in all.
    """
    remaining = row_cache_budget() if budget is None else budget
    remaining -= sum(held.nbytes for held in _HELD_ROWS.values())
    for mapped in _mapped_files(sources):
        if mapped.path in _HELD_ROWS or remaining < mapped.row_bytes or len(mapped) == 0:
            continue
        count = min(len(mapped), remaining // mapped.row_bytes)
        held = np.empty((count, *mapped.shape[1:]), mapped.dtype)
        for start in range(0, count, STATISTICS_CHUNK_ROWS):  # a chunk mapped at a time: no page stays resident twice
            stop = min(start + STATISTICS_CHUNK_ROWS, count)
            held[start:stop] = mapped.slice(start, stop)
        _HELD_ROWS[mapped.path] = held
        remaining -= held.nbytes
    return sum(held.nbytes for held in _HELD_ROWS.values())


def release_rows() -> None:
    """Forget every held row (tests; a process that moves on to other data)."""
    _HELD_ROWS.clear()


def _mapped_files(sources: Sequence) -> Iterator["MappedRows"]:
    for source in sources:
        if isinstance(source, MappedRows):
            yield source
        else:
            inner = getattr(source, "parts", None) or ([source.source] if hasattr(source, "source") else [])
            yield from _mapped_files(inner)


class ColumnConcatenation:
    """A feature set of several extractors: each read concatenates the members' rows for those indices only."""

    def __init__(self, parts: Sequence):
        if len({len(part) for part in parts}) != 1:
            raise ValueError(f"feature set members hold different row counts: {[len(part) for part in parts]}")
        self.parts = list(parts)
        self.dtype: np.dtype | None = common_dtype(self.parts)  # once: every minibatch's read asks

    def __len__(self) -> int:
        return len(self.parts[0])

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self.parts)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def rows(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if len(self.parts) == 1:
            return self.parts[0].rows(indices)
        if self.dtype is None or consecutive(indices):  # a chunk of a pass: one read per member, then one copy
            return np.concatenate([np.asarray(part.rows(indices)).reshape(len(indices), -1) for part in self.parts], axis=1)
        return rows_read_into(self, indices)

    def read_into(self, indices: np.ndarray, out: np.ndarray, positions: np.ndarray, column: int = 0) -> None:
        for part in self.parts:
            read_into(part, indices, out, positions, column)
            column += part.dim

    def batches(self, batch_size: int = STATISTICS_CHUNK_ROWS) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.rows(np.arange(start, min(start + batch_size, len(self))))


class AppendedRows:
    """Several row sources one after the other (a split and its mirrored rows; train and val for the refit)."""

    def __init__(self, parts: Sequence):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])
        self.dtype: np.dtype | None = common_dtype(self.parts)  # once: every minibatch's read asks

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def dim(self) -> int:
        return self.parts[0].dim

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(getattr(self.parts[0], "row_shape", (self.dim,)))

    def rows(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        if len(indices) and np.all(which == which[0]):  # all from one part: its own rows, no copy
            return self.parts[which[0]].rows(indices - self.starts[which[0]])
        if self.dtype is not None:
            return rows_read_into(self, indices)
        out = None
        for part_index, part in enumerate(self.parts):
            chosen = np.flatnonzero(which == part_index)
            if len(chosen) == 0:
                continue
            rows = part.rows(indices[chosen] - self.starts[part_index])
            if out is None:
                out = np.empty((len(indices), *rows.shape[1:]), rows.dtype)
            out[chosen] = rows
        return out if out is not None else self.parts[0].rows(indices)

    def read_into(self, indices: np.ndarray, out: np.ndarray, positions: np.ndarray, column: int = 0) -> None:
        which = np.searchsorted(self.starts, indices, side="right") - 1
        for part_index, part in enumerate(self.parts):
            chosen = np.flatnonzero(which == part_index)
            if len(chosen):
                read_into(part, indices[chosen] - self.starts[part_index], out, positions[chosen], column)


class StandardizedRows:
    """Rows of a source standardized with train statistics as they are read: (x - mean) / scale, float32."""

    def __init__(self, source, mean: np.ndarray, scale: np.ndarray):
        self.source, self.mean, self.scale = source, mean.astype(np.float32), scale.astype(np.float32)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    def rows(self, indices) -> np.ndarray:
        rows = self.source.rows(indices)  # a fresh array: every source returns a copy
        if rows.dtype == np.float16:  # stored at half the bytes (features.base.FeatureExtractor.stored_as)
            import torch  # here: `prepare` and `compare` use this module without torch

            # torch widens float16 with the CPU's conversion instruction; numpy's float16 arithmetic
            # took longer than the halved reads saved (README: Benchmarks)
            widened = torch.from_numpy(rows).float()
            return widened.sub_(torch.from_numpy(self.mean)).div_(torch.from_numpy(self.scale)).numpy()
        if rows.dtype != np.float32:
            return (rows - self.mean) / self.scale
        rows -= self.mean  # in place: no second and third minibatch-sized allocation per step
        rows /= self.scale
        return rows

    def __getitem__(self, rows: slice):
        """A slice of rows as a tensor: code written for in-memory tensors (chunked reads) works unchanged."""
        import torch  # here: `prepare` and `compare` use this module without torch

        start, stop, step = rows.indices(len(self))
        return torch.from_numpy(self.rows(np.arange(start, stop, step)))


def read_meta(prepared_dir: Path = PREPARED_DIR) -> dict:
    if not (prepared_dir / "meta.json").exists():
        raise FileNotFoundError(f"{prepared_dir} holds no prepared data; run the `prepare` stage first (dvc repro)")
    return read_json(prepared_dir / "meta.json")


def read_labels(split: str, prepared_dir: Path = PREPARED_DIR) -> np.ndarray:
    """(n,) int64: small enough to hold for any split (8 bytes an image)."""
    return np.load(labels_path(split, prepared_dir))


def open_images(split: str, prepared_dir: Path = PREPARED_DIR) -> np.memmap:
    """(n, H, W, 3) uint8, memory-mapped: for the few rows a figure or a fit sample reads, not for a pass."""
    return np.load(images_path(split, prepared_dir), mmap_mode="r")


def load_prepared(prepared_dir: Path = PREPARED_DIR) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(meta, {split: {"images": memory-mapped (n, H, W, 3) uint8, "labels": (n,) int64}})."""
    meta = read_meta(prepared_dir)
    return meta, {split: {"images": open_images(split, prepared_dir), "labels": read_labels(split, prepared_dir)} for split in SPLITS}


def has_mirrored_rows(members: list[str]) -> bool:
    """Whether every member extracted the mirrored train and val rows (extract.mirror)."""
    return all(features_path(member, mirrored(split)).exists() for member in members for split in MIRRORED_SPLITS)


def open_feature_set(members: list[str], key: str) -> ColumnConcatenation:
    """A split's rows of a feature set (members' columns side by side, in order), read on demand."""
    for member in members:
        if not features_path(member, key).exists():
            raise FileNotFoundError(f"{features_path(member, key)} is missing; run `dvc repro extract@{member}` first")
    return ColumnConcatenation([MappedRows(features_path(member, key)) for member in members])


def read_all(source) -> np.ndarray:
    """Every row of a row source, in memory."""
    return source.rows(np.arange(len(source)))


# --- batches of images, as the extract stage maps over them ---------------------------------------

@dataclass(frozen=True)
class ImageBatch:
    """Images start..stop of one prepared split's file, mirrored left-right or not: what one extraction task reads.

    Names its rows by path, so a worker on another machine (engine: ray) reads them itself.
    """

    path: str
    start: int
    stop: int
    mirrored: bool = False

    def read(self) -> np.ndarray:
        images = MappedRows(self.path).slice(self.start, self.stop)
        return np.ascontiguousarray(images[:, :, ::-1]) if self.mirrored else images


def image_batches(path: Path, n_images: int, batch_size: int, mirrored_images: bool = False) -> list[ImageBatch]:
    return [ImageBatch(str(Path(path).resolve()), start, min(start + batch_size, n_images), mirrored_images) for start in range(0, n_images, batch_size)]


def extract_seconds(members: list[str]) -> float:
    """Seconds the extract stages took (fit + transform) for a feature set: the sum over its members."""
    total = 0.0
    for member in members:
        path = EXTRACT_METRICS_DIR / f"{member}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `dvc repro extract@{member}` first")
        total += read_json(path)["extract_seconds"]
    return round(total, 3)


def prepared_digest(prepared_dir: Path = PREPARED_DIR) -> str:
    """16 hex digits of sha256 over the prepared splits' files: what MLflow shows as the data set's digest."""
    digest = hashlib.sha256()
    names = ["meta.json", *(path.name for split in SPLITS for path in (images_path(split, prepared_dir), labels_path(split, prepared_dir)))]
    for name in names:
        with open(prepared_dir / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
