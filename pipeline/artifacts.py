"""Reading and writing what the stages hand each other, in one place so their layouts agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io import load_arrays, read_json

SPLITS = ("train", "val", "test")
MIRRORED_SPLITS = ("train", "val")  # extract.mirror adds these splits' left-right mirrored images as `{split}_mirrored`
PREPARED_DIR = Path("data/prepared")
FEATURES_DIR = Path("data/features")
TRAIN_RESULTS_DIR = Path("results/train")
EXTRACT_METRICS_DIR = Path("results/extract")
PREVIEW_NAME = "preview.png"  # an extractor's picture of what it sees, beside its features


def feature_dir(extractor: str) -> Path:
    return FEATURES_DIR / extractor


def feature_previews(members: list[str]) -> list[Path]:
    """The pictures of the extractors behind a feature set (extractors that draw none are skipped)."""
    return [feature_dir(member) / PREVIEW_NAME for member in members if (feature_dir(member) / PREVIEW_NAME).exists()]


def train_dir(classifier: str, feature_set: str) -> Path:
    return TRAIN_RESULTS_DIR / f"{classifier}-{feature_set}"


def load_prepared(prepared_dir: Path = PREPARED_DIR) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(meta, {split: {"images", "labels"}})"""
    if not (prepared_dir / "meta.json").exists():
        raise FileNotFoundError(f"{prepared_dir} holds no prepared data; run the `prepare` stage first (dvc repro)")
    return read_json(prepared_dir / "meta.json"), {split: load_arrays(prepared_dir / f"{split}.npz") for split in SPLITS}


def mirrored(split: str) -> str:
    """The features.npz key of a split's mirrored images."""
    return f"{split}_mirrored"


def load_feature_set(members: list[str], mirrored_rows: bool = True) -> dict[str, np.ndarray]:
    """{split: (n, sum of member dims) float32}, members' features concatenated in the given order.

    With `mirrored_rows`, the mirrored train and val rows come too when every member has them
    (`extract.mirror`); without, they are not read (half a gigabyte for raw pixels on CIFAR-10).
    """
    skip = () if mirrored_rows else tuple(mirrored(split) for split in MIRRORED_SPLITS)
    per_member = []
    for member in members:
        path = feature_dir(member) / "features.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `dvc repro extract@{member}` first")
        per_member.append(load_arrays(path, skip))
    keys = list(SPLITS)
    if all(mirrored(split) in arrays for arrays in per_member for split in MIRRORED_SPLITS):
        keys += [mirrored(split) for split in MIRRORED_SPLITS]
    return {key: np.concatenate([arrays[key] for arrays in per_member], axis=1) for key in keys}


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
    import hashlib

    digest = hashlib.sha256()
    for name in ["meta.json", *(f"{split}.npz" for split in SPLITS)]:
        with open(prepared_dir / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
