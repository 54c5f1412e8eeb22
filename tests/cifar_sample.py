"""Small samples of the real CIFAR-10 JPEG archive that lies beside the checkout (never copied into it).

FEATUREBENCH_SHARED_DATA names the folder holding it when it is not ../shared/data.
"""
from __future__ import annotations

import functools
import io
import os
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from tests.required import missing

SHARED_DATA = Path(os.environ.get("FEATUREBENCH_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SHARED_CIFAR10_JPEG = SHARED_DATA / "cifar10-jpeg.tar.gz"
REQUIRE_SHARED_DATA = "FEATUREBENCH_REQUIRE_SHARED_DATA"


def needs_shared_cifar10(test=None, *, archive: Path = SHARED_CIFAR10_JPEG):
    """Decorate a test that reads the shared archive: without it the test skips, or fails in CI."""
    if test is None:
        return functools.partial(needs_shared_cifar10, archive=archive)

    @functools.wraps(test)
    def checked(*args, **kwargs):
        if not archive.exists():
            missing(str(archive), "put cifar10-jpeg.tar.gz there or name its folder with FEATUREBENCH_SHARED_DATA", REQUIRE_SHARED_DATA)
        return test(*args, **kwargs)

    return checked


def first_images(n: int, archive: Path = SHARED_CIFAR10_JPEG) -> np.ndarray:
    """The first n images of the archive, uint8 (n, 32, 32, 3), read by streaming the tar."""
    images = []
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
                if len(images) == n:
                    break
    if len(images) < n:
        raise ValueError(f"{archive} holds only {len(images)} images; ask for fewer")
    return np.stack(images)


def write_sample_archive(target: Path, per_class: int, archive: Path = SHARED_CIFAR10_JPEG) -> None:
    """A .tar.gz at `target` with the first `per_class` images of every <split>/<class> folder."""
    taken: Counter = Counter()
    with tarfile.open(archive, "r|gz") as source, tarfile.open(target, "w:gz") as sample:
        for member in source:
            parts = member.name.split("/")  # cifar10/<split>/<class>/<image>
            if member.isfile() and len(parts) == 4 and taken[parts[1], parts[2]] < per_class:
                taken[parts[1], parts[2]] += 1
                sample.addfile(member, source.extractfile(member))
