"""Image-folder data source: one sub-folder of images per class, from a directory or an archive.

Accepted layouts, optionally inside one wrapping folder (`cifar10/train/cat/0001.jpg`):
    <root>/<class>/<image>                  no given test split: RawDataset.test is None
    <root>/train/<class>/<image>            test/ is optional
    <root>/test/<class>/<image>
Archives are read member by member straight from the tar or zip stream: for tens of thousands of
small images one pass over the compressed stream is far faster than extracting them to disk.
"""
from __future__ import annotations

import hashlib
import numbers
import os
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets import DataError, RawDataset, StreamedImages
from pipeline.datasets.archives import (
    ARCHIVE_SUFFIXES,
    TAR_READ_ERRORS,
    ZIP_READ_ERRORS,
    archive_kind,
    member_parts,
    sha256_file,
    tar_member_type,
)
from pipeline.datasets.decoding import Entry, Parts, Unreadable, decoded_in_order

# Split folders, in any case, and the split each is read into. A given validation folder (train/val/test
# exports) adds to train: validation is carved from train, stratified (data.val_fraction).
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "train", "valid": "train", "validation": "train",
                 "test": "test", "testing": "test"}
ON_BAD_IMAGE = ("error", "skip")
_LAYOUTS_HELP = "expected <root>/<class>/<image> or <root>/train|val|test/<class>/<image>"

# An image file larger than this is not read: a 50-megapixel camera JPEG is about 25 MB, and a file
# that will be shrunk to image_size pixels never needs more. Without a limit, a 1 MB zip holding a
# 1 GiB member took 2.5 GB of memory to prepare.
MAX_IMAGE_FILE_BYTES = 64 << 20


def load_imagefolder(
    path: str | os.PathLike,
    image_size: int = 32,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_bad_image: str = "error",
) -> RawDataset:
    """Read every image under `path` as RGB uint8 (image_size, image_size, 3), labelled by its folder.

    path : a directory, or a .tar, .tar.gz/.tgz or .zip archive of one.
    Class names are the sorted class-folder names; images are ordered by path within each split,
    so two loads of the same data give byte-identical arrays. Hidden files and folders (names
    starting with '.') and `__MACOSX` folders are skipped. Symlinks leading out of a directory `path`
    are refused (DataError); those staying inside are followed.
    on_bad_image : what to do with files Pillow cannot read (corrupt, truncated, not an image, or
    over Pillow's decompression-bomb limit of Image.MAX_IMAGE_PIXELS pixels) and files never read
    (over MAX_IMAGE_FILE_BYTES, or pipes, sockets, devices): "error" raises one
    DataError naming every such file; "skip" leaves them out and lists them in RawDataset.skipped.
    Grayscale, RGBA, palette, 16-bit and CMYK images are not bad: they are converted to RGB.
    cache_dir : where the decoded images wait (or its nearest existing parent), in one unnamed temporary
    file (deleted when the last split is dropped), for the order of the paths: archives are read in their stored order, never
    extracted, and only file names and row numbers stay in memory; None: the system's temporary folder.
    The splits come back as StreamedImages, read from that file a batch at a time.
    seed : accepted so that every data source takes the same arguments (the order comes from the paths).
    checksum : sha256 of the archive file, or for a directory a sha256 over the sorted
    (relative path, file sha256) pairs of the images read.
    """
    del seed  # see the docstring
    if on_bad_image not in ON_BAD_IMAGE:
        raise DataError(f"data.on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {on_bad_image!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise DataError(f"image_size must be a positive integer number of pixels, got {image_size!r}")
    path = Path(path).expanduser()  # params.yaml's `data.path: ~/photos`, as dataset_label reads it
    if not path.exists():
        raise DataError(f"image folder {path} does not exist")
    is_directory = path.is_dir()
    if is_directory:
        total, entries = _directory_entries(path)
    elif archive_kind(path) == "tar":
        total, entries = None, _tar_entries(path)
    elif archive_kind(path) == "zip":
        total, entries = _zip_entries(path)
    else:
        raise DataError(
            f"{path}: unsupported archive type; give a directory or one of {', '.join(ARCHIVE_SUFFIXES)}"
        )

    staged = StagedImages((image_size, image_size, 3), cache_dir)
    rows: dict[Parts, int] = {}
    folders: set[Parts] = set()
    file_sha256: dict[Parts, str] = {}
    bad: list[tuple[Parts, str]] = []
    decoded = decoded_in_order(entries, image_size, hash_bytes=is_directory)
    # on an unreadable archive (or Ctrl-C), close it and stop the decoding workers now, not when the traceback is freed
    with closing(entries), closing(decoded):
        for parts, image, sha256 in tqdm(decoded, total=total, desc=f"reading {path.name}", unit="file", disable=not progress):
            if image is None:
                folders.add(parts)
            elif isinstance(image, Unreadable):
                bad.append((parts, image.reason))
            else:
                rows[parts] = staged.append(image)
                if sha256 is not None:
                    file_sha256[parts] = sha256
    image_depths = {len(parts) for parts in rows}
    bad = [(parts, reason) for parts, reason in bad if not _beside_the_classes(parts, image_depths)]
    skipped = [{"path": readable_path(parts), "reason": reason} for parts, reason in bad]
    if skipped and on_bad_image == "error":
        raise DataError(_bad_images_message(path, skipped))

    splits = _layout(rows.keys(), folders, path, skipped=[parts for parts, _ in bad])
    class_names = sorted(splits["train"])
    image_sets = {split: _image_set(classes, class_names, rows, staged) for split, classes in splits.items()}
    return RawDataset(
        class_names=class_names,
        train=image_sets["train"],
        test=image_sets.get("test"),
        source=f"imagefolder:{path}",
        checksum=_directory_checksum(file_sha256) if is_directory else sha256_file(path),
        skipped=skipped,
    )


def _bad_images_message(path: Path, bad: list[dict], shown: int = 10) -> str:
    """One line naming the unreadable files (the first `shown` of them) and the way to skip them."""
    listed = "; ".join(f"{_shown_name(path, tuple(item['path'].split('/')))} ({item['reason']})" for item in bad[:shown])
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    noun = "image" if len(bad) == 1 else f"{len(bad)} images:"
    return f"cannot read {noun} {listed}{more}; set data.on_bad_image: skip to leave them out"


# What Windows leaves in folders of pictures (thumbnail caches, folder settings): not data either
WINDOWS_METADATA = {"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini"}


# Files that travel with image data sets but are never images: a README or Kaggle's labels.csv beside the
# class folders (or the train/ and test/ folders) is left out. Inside a class folder such a file is a bad
# image like any other (data.on_bad_image): it may be one mislabelled, and the user decides. Any other
# file is tried as an image whatever its suffix (cameras and scrapers write .jpeg, .JPG, .jfif or none).
NOT_IMAGE_SUFFIXES = frozenset(
    ".txt .md .rst .csv .tsv .json .jsonl .xml .yaml .yml .toml .ini .cfg .html .htm .pdf .doc .docx .xls .xlsx "
    ".py .ipynb .sh .bat .log .pkl .npy .npz .mat .h5".split()
)


def _is_skipped(parts: Parts) -> bool:
    """Hidden files (.DS_Store, ._x AppleDouble), macOS zip metadata and Windows' Thumbs.db and
    desktop.ini are not data."""
    return any(part.startswith(".") or part == "__MACOSX" or part.lower() in WINDOWS_METADATA for part in parts)


def _is_not_an_image(name: str) -> bool:
    """A file named as a document, table, notebook or array (NOT_IMAGE_SUFFIXES)."""
    return os.path.splitext(name)[1].lower() in NOT_IMAGE_SUFFIXES


def _beside_the_classes(parts: Parts, image_depths: set[int]) -> bool:
    """Whether a bad file is a document lying where no image lies (image_depths: the images' path lengths),
    above the class folders."""
    return _is_not_an_image(parts[-1]) and len(parts) not in image_depths


def _shown_name(path: Path, parts: Parts) -> str:
    joined = "/".join(parts)
    return str(path / joined) if path.is_dir() else f"{path}:{joined}"


def _directory_entries(root: Path) -> tuple[int, Iterator[Entry]]:
    """Every folder and file under root, listed first so the progress bar knows the total.

    Symlinks are followed only where they stay inside root: a link out of it would make any folder on
    the machine a class, and the data set would no longer be what data.path holds.
    """
    folders: list[Parts] = []
    files: list[Parts] = []
    real_root = root.resolve()
    # followlinks: subsets are often built from symlinked class folders (two may lead to the same folder);
    # a folder whose real path is one of its own ancestors' is a cycle, not walked again.
    for current, dir_names, file_names in os.walk(root, followlinks=True):
        relative = Path(current).relative_to(root).parts
        if _is_cycle(root, relative):
            dir_names.clear()
            continue
        dir_names[:] = sorted(name for name in dir_names if not _is_skipped((name,)))
        file_names = sorted(name for name in file_names if not _is_skipped((name,)))
        for name in dir_names + file_names:
            _refuse_link_outside(root, real_root, Path(current) / name)
        folders.extend(relative + (name,) for name in dir_names)
        files.extend(relative + (name,) for name in file_names)

    def entries() -> Iterator[Entry]:
        for parts in folders:
            yield parts, None
        for parts in files:
            yield parts, read_image_file(root.joinpath(*parts))

    return len(folders) + len(files), entries()


def _is_cycle(root: Path, relative: Parts) -> bool:
    """Whether root/relative leads (through symlinks) back to a folder it is inside of."""
    if not relative:
        return False
    real_path = os.path.realpath(root.joinpath(*relative))
    return any(os.path.realpath(root.joinpath(*relative[:depth])) == real_path for depth in range(len(relative)))


def _refuse_link_outside(root: Path, real_root: Path, path: Path) -> None:
    if not path.is_symlink():
        return
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a link loop: reading it fails, and names it as unreadable
        return
    if not target.is_relative_to(real_root):
        raise DataError(
            f"{path} is a symlink to {target}, outside {root}; an image folder is read only from inside "
            "data.path: replace the link with a copy of what it points to, or remove it"
        )


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def read_image_file(path: Path, limit: int = MAX_IMAGE_FILE_BYTES) -> bytes | Unreadable:
    """The bytes of the regular file at path, or Unreadable(why) for anything prepare must not read.

    Pipes, sockets and devices are never opened (reading a pipe waits for a writer forever), and
    the file is opened non-blocking and checked again in case it was swapped for one in between.
    A file over `limit` bytes is refused by its size, and read with a bounded read so that one
    growing meanwhile cannot take more memory either.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            return Unreadable(f"{_file_kind(mode)}, not an image file")
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(descriptor, "rb") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                return Unreadable(f"{_file_kind(status.st_mode)}, not an image file")
            if status.st_size > limit:
                return _too_large(status.st_size, limit)
            return read_at_most(file, limit)
    except OSError as error:  # permission denied, a broken symlink, a disk error
        return Unreadable(f"{type(error).__name__}: {error.strerror or error}")


def read_at_most(stream, limit: int, chunk_bytes: int = 1 << 20) -> bytes | Unreadable:
    """All of stream if it holds at most `limit` bytes, else Unreadable; never more than limit + 1 read.

    Read a chunk at a time: one `read(limit + 1)` on a zip member inflates up to limit + 1 bytes
    before zipfile cuts them to the size the header claims, so a header understating a 64 MiB
    member still cost 134 MB of memory.
    """
    data = bytearray()
    while len(data) <= limit:
        block = stream.read(min(chunk_bytes, limit + 1 - len(data)))
        if not block:
            return bytes(data)
        data += block
    return _too_large(None, limit)


def _too_large(size: int | None, limit: int) -> Unreadable:
    stated = f"{size / (1 << 20):,.0f} MiB" if size is not None else "more bytes than its size claimed"
    return Unreadable(f"{stated}, over the {limit >> 20} MiB limit for one image file; shrink it or remove it")


def _tar_entries(archive_path: Path) -> Iterator[Entry]:
    try:
        # "r|*": one sequential pass over the compressed stream, no seeking back for each member.
        with tarfile.open(archive_path, "r|*") as archive:
            for member in archive:
                parts = member_parts(member.name)
                if not parts or _is_skipped(parts):
                    continue
                if member.isdir():
                    yield parts, None
                elif member.isfile() and member.size > MAX_IMAGE_FILE_BYTES:
                    yield parts, _too_large(member.size, MAX_IMAGE_FILE_BYTES)  # the stream skips it unread
                elif member.isfile():
                    yield parts, read_at_most(archive.extractfile(member), MAX_IMAGE_FILE_BYTES)
                elif member.islnk():  # a duplicate photo; a stream cannot go back for its target's bytes
                    yield parts, Unreadable(f"a {tar_member_type(member)}, which a tar stream cannot read back; "
                                            "archive the folder with tar --hard-dereference")
                else:
                    raise DataError(
                        f"{archive_path}:{member.name} is a {tar_member_type(member)}; "
                        "an image folder archive may hold only regular files and folders"
                    )
    except TAR_READ_ERRORS as error:
        raise DataError(f"{archive_path} is not a readable tar archive: {error}") from None


def _zip_entries(archive_path: Path) -> tuple[int, Iterator[Entry]]:
    try:
        archive = zipfile.ZipFile(archive_path)
    except ZIP_READ_ERRORS as error:
        raise DataError(f"{archive_path} is not a readable zip archive: {error}") from None
    members = [member for member in archive.infolist() if not _is_skipped(member_parts(zip_member_name(member)))]

    def entries() -> Iterator[Entry]:
        with archive:
            for member in members:
                parts = member_parts(zip_member_name(member))
                if parts:
                    yield parts, _read_zip_member(archive, member)

    return len(members), entries()


def zip_member_name(member: zipfile.ZipInfo) -> str:
    """A zip member's name as its maker wrote it: zips without the UTF-8 flag (Linux's `zip -r`, older
    Windows tools) often hold UTF-8 names all the same, which zipfile decodes as cp437 ("café" becomes
    "caf├⌐"); such a name is read as UTF-8 where its bytes are valid UTF-8, else kept as cp437."""
    if member.flag_bits & 0x800:
        return member.filename
    try:
        return member.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return member.filename


def readable_path(parts: Parts) -> str:
    """A file's path as text any output can hold: each component read as `class_name` reads a folder's."""
    return "/".join(class_name(part) for part in parts)


def class_name(folder: str) -> str:
    """A class folder's name as a class name. NFC, since macOS writes names decomposed and a test/ copied
    from one must still match train/; a name whose bytes are not UTF-8 (an old archive unpacked on Linux:
    Python keeps such bytes as lone surrogates, which no figure, JSON or MLflow param can hold) read as
    Windows-1252, or Latin-1 where that has no character for a byte."""
    if any("\udc80" <= character <= "\udcff" for character in folder):
        raw = folder.encode("utf-8", "surrogateescape")
        try:
            folder = raw.decode("cp1252")
        except UnicodeDecodeError:
            folder = raw.decode("latin-1")
    return unicodedata.normalize("NFC", folder)


def _read_zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes | Unreadable | None:
    """None for a folder; a member's declared size is checked before it is inflated, its bytes are
    read bounded all the same (a zip's header may lie: 1 MB of zip can inflate to gigabytes).
    A member that cannot be read (encrypted, compressed with a method zipfile lacks, damaged) is a bad
    file like any other: the others are independent of it."""
    if member.is_dir():
        return None
    if member.file_size > MAX_IMAGE_FILE_BYTES:
        return _too_large(member.file_size, MAX_IMAGE_FILE_BYTES)
    if member.flag_bits & 0x1:
        return Unreadable("encrypted (a password-protected zip); zip the folder again without a password")
    try:
        with archive.open(member) as source:
            return read_at_most(source, MAX_IMAGE_FILE_BYTES)
    except NotImplementedError as error:  # Deflate64 (Windows Explorer's for large folders), bzip2 without bz2, ...
        return Unreadable(f"compressed with a method Python's zipfile cannot read ({error}); zip the folder again with standard Deflate")
    except ZIP_READ_ERRORS as error:
        return Unreadable(f"damaged in the archive ({type(error).__name__}: {error})")


def _split_of(folder: str) -> str | None:
    """"train" or "test" for a split folder's name (SPLIT_FOLDERS, any case), else None."""
    return SPLIT_FOLDERS.get(folder.lower())


def _layout(image_paths, folders: set[Parts], path: Path, skipped: list[Parts] = ()) -> dict[str, dict[str, list[Parts]]]:
    """{'train': {class: [image paths]}, optionally 'test': {...}}; flat layouts come back as 'train'.

    The layout is split (train/, test/ and val/ above the class folders: SPLIT_FOLDERS) only where such a
    folder holds class folders of images: in a flat layout a class may itself be called train or test.
    `skipped`: files left out as unreadable, named where they leave a class folder empty.
    """
    image_paths = list(image_paths)
    if not image_paths:
        raise DataError(f"no images found in {path}; {_LAYOUTS_HELP}")
    tops = {parts[0] for parts in image_paths}
    wrapper: Parts = ()
    if len(tops) == 1 and not any(_split_of(top) for top in tops) and all(len(parts) >= 3 for parts in image_paths):
        wrapper = (tops.pop(),)
        tops = {parts[1] for parts in image_paths}
    depth = len(wrapper)
    is_split = any(_split_of(parts[depth]) and len(parts) == depth + 3 for parts in image_paths)
    class_depth = depth + (2 if is_split else 1)

    splits: dict[str, dict[str, list[Parts]]] = {}
    for parts in sorted(image_paths):
        split = _split_of(parts[depth]) if is_split else "train"
        if split and len(parts) == class_depth:
            raise DataError(
                f"{_shown_name(path, parts)} does not fit an image-folder layout: it is not in a class folder, and an "
                f"image without a label cannot be trained on or scored; move it into its class's folder or out of {path}"
            )
        if len(parts) != class_depth + 1 or split is None:
            raise DataError(f"{_shown_name(path, parts)} does not fit an image-folder layout; {_LAYOUTS_HELP}")
        splits.setdefault(split, {}).setdefault(class_name(parts[class_depth - 1]), []).append(parts)

    for folder in sorted(folders):
        if len(folder) != class_depth or folder[:depth] != wrapper:
            continue
        split = _split_of(folder[depth]) if is_split else "train"
        if split and class_name(folder[-1]) not in splits.get(split, {}):
            unreadable = sum(1 for parts in skipped if parts[: len(folder)] == folder)
            if unreadable:
                raise DataError(
                    f"class folder {_shown_name(path, folder)} holds no readable images: its {unreadable} "
                    f"file{'' if unreadable == 1 else 's'} could not be read and {'was' if unreadable == 1 else 'were'} "
                    "skipped (data.on_bad_image: skip); replace them or delete the folder"
                )
            raise DataError(f"class folder {_shown_name(path, folder)} holds no images; add some or delete it")

    if "train" not in splits:
        raise DataError(f"{path} has a test/ folder but no train/ folder; {_LAYOUTS_HELP}")
    train_classes = sorted(splits["train"])
    if len(train_classes) < 2:
        raise DataError(f"{path} has a single class ({train_classes[0]!r}); a classifier needs at least two")
    if "test" in splits and set(splits["test"]) != set(train_classes):
        only_train = sorted(set(train_classes) - set(splits["test"]))
        only_test = sorted(set(splits["test"]) - set(train_classes))
        raise DataError(
            f"{path}: train/ and test/ must hold the same class folders; "
            f"only in train: {only_train}, only in test: {only_test}"
        )
    return splits


class StagedImages:
    """Decoded images appended to an unnamed temporary file, and read back by row number a batch at a time.

    An archive is read in its stored order, but the splits are ordered by path: the rows wait here, on
    disk, so that a folder of half a million photos costs its file names in memory, not its pixels. Each
    read maps the file only for its duration (see pipeline/artifacts.py: a long-lived mapping would keep
    every page it touched in the resident set).
    """

    def __init__(self, image_shape: tuple[int, int, int], directory: str | os.PathLike | None = None):
        self.image_shape = tuple(image_shape)
        self.file = tempfile.TemporaryFile(prefix="featurebench-decoded-", dir=_existing_folder(directory))
        self.count = 0

    def append(self, image: np.ndarray) -> int:
        """Store one (H, W, 3) uint8 image; its row number."""
        self.file.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        self.count += 1
        return self.count - 1

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The images at these row numbers, in this order, as one (len(index), H, W, 3) array."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return np.zeros((0, *self.image_shape), np.uint8)
        self.file.flush()
        mapped = np.memmap(self.file, dtype=np.uint8, mode="r", shape=(self.count, *self.image_shape))
        try:
            return np.array(mapped[index])
        finally:
            del mapped

    def batch_rows(self) -> int:
        """Rows per read: about 32 MB whatever the image size, at least one image."""
        return max(1, (32 << 20) // int(np.prod(self.image_shape)))


def _existing_folder(directory: str | os.PathLike | None) -> Path | None:
    """directory, or its nearest existing parent: the file lands on the project's disk (a system /tmp may
    be a small RAM disk), and a stage that fails leaves no folder behind."""
    if directory is None:
        return None
    return next((folder for folder in (Path(directory), *Path(directory).absolute().parents) if folder.is_dir()), None)


def _image_set(classes: dict[str, list[Parts]], class_names: list[str], rows: dict[Parts, int], staged: StagedImages) -> StreamedImages:
    """A split ordered by path, its images read from `staged` when prepare asks for them."""
    ordered = sorted((parts, class_names.index(name)) for name, paths in classes.items() for parts in paths)
    order = np.array([rows[parts] for parts, _ in ordered], dtype=np.int64)
    step = staged.batch_rows()

    def batches():
        for start in range(0, len(order), step):
            yield staged.rows(order[start : start + step])

    labels = np.array([label for _, label in ordered], dtype=np.int64)
    return StreamedImages(labels, staged.image_shape, batches)


def _directory_checksum(file_sha256: dict[Parts, str]) -> str:
    digest = hashlib.sha256()
    for parts in sorted(file_sha256, key="/".join):
        digest.update(f"{'/'.join(parts)}\0{file_sha256[parts]}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
