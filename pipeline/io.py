"""Atomic writes: a stage killed halfway leaves nothing that DVC would take for a result."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _read_umask() -> int:
    """The process's umask: reading it means setting it, so it is read once, at import, before any thread."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~UMASK)  # mkstemp's 0600 would make the output private
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path):
    """Yield an empty temporary directory beside `path`; it replaces `path` whole on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(temporary, 0o777 & ~UMASK)  # mkdtemp's 0700 would make the output private
    try:
        yield temporary
        if path.exists():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """np.savez to `path` atomically (uncompressed: features are read back whole, fast)."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)


def load_arrays(path: str | Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an .npz but those named in `skip`, which are never read from disk."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files if key not in skip}
