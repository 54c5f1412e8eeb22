"""Archives of downloaded data: safe extraction and streaming file hashes.

Archives come from the internet, so a member may try to write outside the destination
(`../x`, `/etc/x`, a symlink pointing out and a file written through it). `safe_extract`
refuses such members instead of trusting them, and never leaves a half-extracted folder.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from pipeline.datasets import DataError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
ARCHIVE_SUFFIXES = TAR_SUFFIXES + ZIP_SUFFIXES

_CHUNK_BYTES = 1 << 20
# What a damaged archive raises while being read (disk errors while writing are not among them).
TAR_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
# zipfile raises RuntimeError for an encrypted member and NotImplementedError for a compression it lacks (Deflate64).
ZIP_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError)


def archive_kind(path: str | os.PathLike) -> str | None:
    """'tar' or 'zip' from the file name, None when the name is not a supported archive."""
    name = Path(path).name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks so large archives never sit whole in memory."""
    return _hash_file(path, hashlib.sha256())


def md5_file(path: str | os.PathLike) -> str:
    """Hex md5 of a file; only for matching checksums published as md5 (e.g. CIFAR-10)."""
    return _hash_file(path, hashlib.md5())


def _hash_file(path, digest) -> str:
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member name, refusing any that could leave the archive root.

    Backslashes count as separators too: a zip made on Windows may use them, and on Windows
    `..\\x` escapes just as `../x` does.
    """
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise DataError(f"archive member {name!r} has an absolute path; refusing to extract it")
    parts = tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))
    if ".." in parts:
        raise DataError(f"archive member {name!r} points outside the archive ('..'); refusing to extract it")
    return parts


def safe_extract(archive_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract a .tar, .tar.gz/.tgz or .zip into dest_dir and return dest_dir.

    Only regular files and folders are extracted; links, devices and paths escaping dest_dir
    raise DataError naming the member. The archive is unpacked into a temporary sibling folder
    that is renamed into place at the end, so dest_dir either appears complete or not at all.
    """
    archive_path, dest_dir = Path(archive_path), Path(dest_dir)
    if not archive_path.is_file():
        raise DataError(f"archive {archive_path} does not exist")
    kind = archive_kind(archive_path)
    if kind is None:
        raise DataError(f"{archive_path}: unsupported archive type; expected one of {', '.join(ARCHIVE_SUFFIXES)}")
    if dest_dir.exists():
        raise DataError(f"{dest_dir} already exists; delete it to extract {archive_path.name} again")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    partial_dir = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.partial-", dir=dest_dir.parent))
    try:
        os.chmod(partial_dir, 0o755)
        if kind == "tar":
            _extract_tar(archive_path, partial_dir)
        else:
            _extract_zip(archive_path, partial_dir)
        os.rename(partial_dir, dest_dir)
    except BaseException:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    return dest_dir


def _extract_tar(archive_path: Path, into: Path) -> None:
    try:
        with tarfile.open(archive_path, "r|*") as archive:
            for member in archive:
                target = into.joinpath(*member_parts(member.name))
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    _write_file(archive.extractfile(member), target)
                else:
                    raise DataError(
                        f"archive member {member.name!r} is a {tar_member_type(member)}; "
                        "only regular files and folders are extracted"
                    )
    except TAR_READ_ERRORS as error:
        raise DataError(f"{archive_path} is not a readable tar archive: {error}") from error


def tar_member_type(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symlink to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "named pipe"
    return "special file"


def _extract_zip(archive_path: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.infolist():
                target = into.joinpath(*member_parts(member.filename))
                file_type = stat.S_IFMT(member.external_attr >> 16)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif file_type in (0, stat.S_IFREG):  # 0: written by a tool that stores no Unix mode
                    with archive.open(member) as source:
                        _write_file(source, target)
                else:
                    kind = "symlink" if file_type == stat.S_IFLNK else "special file"
                    raise DataError(
                        f"archive member {member.filename!r} is a {kind}; only regular files and folders are extracted"
                    )
    except ZIP_READ_ERRORS as error:
        raise DataError(f"{archive_path} is not a readable zip archive: {error}") from error


def _write_file(source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK_BYTES)

