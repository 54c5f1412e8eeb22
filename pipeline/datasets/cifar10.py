"""CIFAR-10 from its official python release (Krizhevsky, 2009: 60,000 32x32 colour images, 10 classes).

The release is a tar.gz of pickled batches (`cifar-10-batches-py/data_batch_1..5`, `test_batch`,
`batches.meta`). The batches are read straight from the tar stream and unpickled with an
allow-list of the few numpy constructors they use, so a tampered local archive cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from pipeline.datasets import DataError, ImageSet, RawDataset
from pipeline.datasets.archives import TAR_READ_ERRORS, md5_file, sha256_file

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)  # stored channel-first: 1024 red, then 1024 green, then 1024 blue values per row

_CHUNK_BYTES = 1 << 20
# A batch of the release is 31 MB (10,000 images of 3,072 bytes); a member claiming more is refused
# before it is unpickled, which would hold all of it in memory.
MAX_BATCH_BYTES = 64 << 20
_BAD_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError)
_DOWNLOAD_TIMEOUT_SECONDS = 60


def download(url: str, dest_path: str | os.PathLike, md5: str, progress: bool = True) -> Path:
    """Fetch url to dest_path unless a file with this md5 is already there; return dest_path.

    The bytes go to a temporary file beside dest_path and are renamed into place only once the
    md5 matches, so dest_path never holds a partial or wrong download.
    """
    dest_path = Path(dest_path)
    if dest_path.is_file() and md5_file(dest_path) == md5:
        return dest_path
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=f".{dest_path.name}.", suffix=".partial", dir=dest_path.parent)
    try:
        digest = hashlib.md5()
        with (
            os.fdopen(handle, "wb") as partial,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response,
        ):
            total_bytes = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"downloading {dest_path.name}",
                      disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    partial.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise DataError(
                f"download of {url} failed its checksum: expected md5 {md5}, got {digest.hexdigest()}; "
                "the file was deleted, try again or download it by hand and pass it as a local archive"
            )
        os.replace(partial_name, dest_path)
    except urllib.error.URLError as error:  # also HTTPError
        raise DataError(
            f"cannot download {url}: {error.reason}; download it by hand and pass it as a local archive"
        ) from None
    except OSError as error:  # timeouts and dropped connections while reading
        raise DataError(f"download of {url} broke off: {error}; try again") from None
    finally:
        if os.path.exists(partial_name):
            os.remove(partial_name)
    return dest_path


def load_cifar10(
    cache_dir: str | os.PathLike = "data/raw",
    archive: str | os.PathLike | None = None,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    progress: bool = True,
) -> RawDataset:
    """The 50,000 train and 10,000 test images as uint8 (n, 32, 32, 3), with the official class names.

    archive : a local cifar-10-python.tar.gz to read instead of downloading; it is not held to the
    official md5 (so a re-packed copy works), only to the official layout. Otherwise the release
    is downloaded to cache_dir once and its md5 checked.
    checksum : sha256 of the archive read.
    """
    if archive is None:
        archive = download(url, Path(cache_dir) / _file_name(url), md5, progress=progress)
        source = url
    else:
        archive = Path(archive)
        if not archive.is_file():
            raise DataError(f"CIFAR-10 archive {archive} does not exist")
        source = str(archive)
    members = _read_batch_files(archive)
    class_names = _class_names(members[META_FILE], archive)
    return RawDataset(
        class_names=class_names,
        train=_concatenate([_image_set(members[name], name, class_names, archive) for name in TRAIN_BATCHES]),
        test=_image_set(members[TEST_BATCH], TEST_BATCH, class_names, archive),
        source=f"cifar10:{source}",
        checksum=sha256_file(archive),
    )


def _file_name(url: str) -> str:
    return PurePosixPath(urllib.parse.urlparse(url).path).name or "cifar-10-python.tar.gz"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches contain: dicts, lists, bytes, ints and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # pickles written by numpy 1 (the official release)
        ("numpy._core.multiarray", "_reconstruct"),  # pickles written by numpy 2
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 pickles
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_batch_files(archive: Path) -> dict[str, object]:
    """{file name: unpickled content} for the seven files of the release, in one pass over the tar."""
    wanted = set(TRAIN_BATCHES) | {TEST_BATCH, META_FILE}
    found: dict[str, object] = {}
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                folder, _, name = member.name.removeprefix("./").rpartition("/")
                if folder == BATCH_FOLDER and name in wanted and member.isfile():
                    if member.size > MAX_BATCH_BYTES:
                        raise DataError(
                            f"{archive}:{member.name} holds {member.size >> 20} MiB, more than a CIFAR-10 batch "
                            f"({MAX_BATCH_BYTES >> 20} MiB at most); it is not the CIFAR-10 python release"
                        )
                    try:
                        # encoding="bytes": the release was pickled by Python 2, its str keys become bytes.
                        found[name] = _BatchUnpickler(tar.extractfile(member), encoding="bytes").load()
                    except _BAD_PICKLE_ERRORS as error:
                        raise DataError(f"{archive}:{member.name} is not a CIFAR-10 batch: {error}") from None
    except TAR_READ_ERRORS as error:
        raise DataError(f"{archive} is not a readable tar.gz archive: {error}") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataError(
            f"{archive} is not the CIFAR-10 python release: missing {', '.join(f'{BATCH_FOLDER}/{m}' for m in missing)}"
        )
    return found


def _class_names(meta: object, archive: Path) -> list[str]:
    try:
        return [name.decode("utf-8") for name in meta[b"label_names"]]
    except (TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise DataError(f"{archive}:{BATCH_FOLDER}/{META_FILE} has no list of label_names") from None


def _image_set(batch: object, name: str, class_names: list[str], archive: Path) -> ImageSet:
    where = f"{archive}:{BATCH_FOLDER}/{name}"
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where} must be a dict with b'data' and b'labels'") from None
    pixels_per_image = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels_per_image or labels.shape != (len(data),):
        raise DataError(
            f"{where}: expected uint8 data (n, {pixels_per_image}) and n labels, "
            f"got {data.dtype} {data.shape} and {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataError(f"{where}: labels must lie in 0..{len(class_names) - 1}")
    images = data.reshape(-1, *IMAGE_SHAPE).transpose(0, 2, 3, 1)
    return ImageSet(images=np.ascontiguousarray(images), labels=labels)


def _concatenate(image_sets: list[ImageSet]) -> ImageSet:
    return ImageSet(
        images=np.concatenate([image_set.images for image_set in image_sets]),
        labels=np.concatenate([image_set.labels for image_set in image_sets]),
    )
