"""Image files to small RGB arrays, decoded by worker processes once a folder is large enough.

Decoding is most of what preparing a folder of photos costs (a 12-megapixel JPEG takes milliseconds even
at a reduced DCT scale, a PNG of that size far longer), and every file is independent. So once decoding
has taken SERIAL_SECONDS, which a small folder never does, files go in batches to one process per core
(FEATUREBENCH_DECODE_WORKERS) and come back in the order they were read: the prepared arrays are the same,
byte for byte, whatever the number of workers.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.datasets import DataError

WORKERS_VARIABLE = "FEATUREBENCH_DECODE_WORKERS"
MAX_WORKERS = 16
SERIAL_SECONDS = 1.0  # decoding in the stage's own process until then: a small folder never pays for starting workers
BATCH_FILES = 512  # files per task at most: each task's round trip costs the stage's own process time
BATCH_BYTES = 16 << 20  # and at most this many bytes of files, or of decoded images: a batch of photos stays small
BATCHES_PER_WORKER = 2  # batches sent ahead of the one being waited for: what the reader may hold in memory


@dataclass(frozen=True)
class Unreadable:
    """A file left unread, and why: too large, or not a regular file (a pipe would block forever)."""

    reason: str


def decode_or_reason(data: bytes, image_size: int) -> np.ndarray | Unreadable:
    """`_decode_image`, or Unreadable(why) for a file Pillow cannot read: corrupt, truncated, empty,
    not an image, or over the decompression-bomb limit."""
    try:
        return _decode_image(data, image_size)
    except UnidentifiedImageError:  # its message names a BytesIO object, not the file
        return Unreadable("UnidentifiedImageError: not an image format Pillow reads" if data else "an empty file")
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ... for damaged files
        return Unreadable(f"{type(error).__name__}: {error}")


def _decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Any image Pillow reads -> (image_size, image_size, 3) uint8, the whole image squashed to a square.

    Images over Image.MAX_IMAGE_PIXELS are refused outright: Pillow only warns between that limit and
    twice it, and decoding such a file (a few KB of PNG can claim 20000 x 20000 pixels) could take
    gigabytes of memory. A tiny data set image never needs that many pixels.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    with image:
        if image.format == "JPEG" and min(image.size) >= 2 * image_size:
            # Decode big JPEGs at a reduced DCT scale: much faster, and we downsample anyway.
            image.draft("RGB", (image_size, image_size))
        if "exif" in image.info:  # photos store their rotation in EXIF; only then pay for reading it
            image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
        if rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        # Pillow's own conversion clips 16-bit values at 255, turning most pixels white; rescale instead.
        # 32-bit "I" is what older Pillow opened 16-bit PNGs as, so it is read as 16-bit too, unless no
        # value is over 255: then it holds 8-bit values (a 32-bit integer TIFF of 0-255), kept as they are.
        values = np.asarray(image).astype(np.float64)
        eight_bit = image.mode == "I" and values.size and 0 <= values.min() and values.max() <= 255
        image = Image.fromarray(np.clip(np.rint(values if eight_bit else values / 257.0), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        # 32-bit float (scientific TIFFs): values in [0, 1] are intensities to scale, others 0-255 values;
        # Pillow's own conversion would clip [0, 1] to black
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and 0.0 <= values.min() and values.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    return image.convert("RGB")


# A path as a tuple of its components, relative to the directory or archive root.
Parts = tuple[str, ...]
# What a reader yields: a folder (data None), an image file with its bytes, or a file it would not read.
Entry = tuple[Parts, bytes | Unreadable | None]
# What decoding makes of it: None for a folder, the Unreadable, or the image; with the bytes' sha256 or None.
Decoded = tuple[Parts, np.ndarray | Unreadable | None, str | None]


def decode_workers() -> int:
    """FEATUREBENCH_DECODE_WORKERS, else one worker per core this process may use (at most MAX_WORKERS);
    1 decodes everything in the stage's own process."""
    value = os.environ.get(WORKERS_VARIABLE, "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise DataError(f"{WORKERS_VARIABLE} must be a whole number of processes, at least 1; got {value!r}")
        return workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def decoded_in_order(
    entries: Iterable[Entry],
    image_size: int,
    hash_bytes: bool,
    workers: int | None = None,
    serial_seconds: float | None = None,
) -> Iterator[Decoded]:
    """Each entry decoded (`decode_or_reason`), in the order of `entries`; folders and Unreadables pass through.

    hash_bytes : also give each file's sha256 (a directory's checksum is made of them).
    workers : processes that decode what is left once `serial_seconds` (None: SERIAL_SECONDS) have passed
    (None: decode_workers()); at most BATCHES_PER_WORKER * workers batches of bytes wait in memory at a time.
    The workers are spawned, as multiprocessing does on macOS and Windows: a script of your own that reads
    a large folder this way needs the usual `if __name__ == "__main__":` guard (the stages have it).
    """
    workers = decode_workers() if workers is None else workers
    if multiprocessing.current_process().daemon:  # a daemonic process may not start children
        workers = 1
    entries = iter(entries)
    deadline = time.monotonic() + (SERIAL_SECONDS if serial_seconds is None else serial_seconds)
    for entry in entries:
        yield _decoded(entry, image_size, hash_bytes)
        if workers > 1 and time.monotonic() >= deadline:
            yield from _decoded_by_workers(entries, image_size, hash_bytes, workers)
            return


def _decoded(entry: Entry, image_size: int, hash_bytes: bool) -> Decoded:
    parts, data = entry
    if not isinstance(data, bytes):
        return parts, data, None
    return parts, decode_or_reason(data, image_size), hashlib.sha256(data).hexdigest() if hash_bytes else None


def _decode_batch(batch: list[Entry], image_size: int, hash_bytes: bool) -> list[Decoded]:
    return [_decoded(entry, image_size, hash_bytes) for entry in batch]


def _batches(entries: Iterator[Entry], image_size: int) -> Iterator[list[Entry]]:
    files = max(1, min(BATCH_FILES, BATCH_BYTES // (3 * image_size * image_size)))
    batch, size = [], 0
    for entry in entries:
        batch.append(entry)
        size += len(entry[1]) if isinstance(entry[1], bytes) else 0
        if len(batch) >= files or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _ignore_interrupts() -> None:
    """Ctrl-C reaches every process of the terminal's group: the stage's own process stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decoded_by_workers(entries: Iterator[Entry], image_size: int, hash_bytes: bool, workers: int) -> Iterator[Decoded]:
    # spawn, not fork: the stage may hold threads (tqdm's monitor, a BLAS pool) that a fork would copy mid-state
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
    pending = deque()
    try:
        for batch in _batches(entries, image_size):
            pending.append(pool.submit(_decode_batch, batch, image_size, hash_bytes))
            if len(pending) > BATCHES_PER_WORKER * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    except BrokenProcessPool:
        raise DataError(
            "a process decoding images stopped before its work was done (out of memory, or killed); "
            f"run again with {WORKERS_VARIABLE}=1 to decode in the stage's own process"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
