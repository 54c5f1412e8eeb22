"""Small samples of the real CIFAR-10 JPEG archive that lies beside the checkout (never copied into it)."""
from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_CIFAR10_JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


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
