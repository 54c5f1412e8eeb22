"""What a logged model needs beside its weights to go from images to class names.

A training run's model takes raw features; the features come from extractors with parameters and,
for fitted ones such as bag of visual words, state learned on the train split. Both are saved into
a folder that the run logs as its `featurizer/` artifact, so the run alone can classify new images,
whatever has happened to data/features since.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import feature_dir
from pipeline.io import load_arrays, read_json, write_json

DESCRIPTION = "featurizer.json"


def save_featurizer(folder: Path, feature_set: str, members: list[str], meta: dict) -> Path:
    """Copy each member extractor's extractor.json (and state.npz when fitted) into `folder`.

    meta : data/prepared/meta.json (image shape and class names).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for member in members:
        for file_name in ("extractor.json", "state.npz"):
            if (feature_dir(member) / file_name).exists():
                (folder / member).mkdir(exist_ok=True)
                shutil.copy(feature_dir(member) / file_name, folder / member / file_name)
    write_json(
        folder / DESCRIPTION,
        {"feature_set": feature_set, "members": members, "image_shape": meta["image_shape"], "class_names": meta["class_names"]},
    )
    return folder


@dataclass
class Featurizer:
    """Images -> the feature rows the model was trained on, plus the names of its classes."""

    extractors: list
    image_shape: tuple[int, int, int]
    class_names: list[str]

    def transform(self, images: np.ndarray) -> np.ndarray:
        """images : (n, H, W, 3) uint8 of `image_shape` -> (n, d) float32, members concatenated in order."""
        if tuple(images.shape) == self.image_shape:
            raise ValueError(f"images must be a batch (n, {', '.join(map(str, self.image_shape))}); got one image of "
                             f"shape {self.image_shape}: pass images[None] for a batch of one")
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images must be {self.image_shape}; got {tuple(images.shape[1:])}")
        # rounded as the extract stage stored them (float16 for bovw), so the model sees what it trained on
        rows = [extractor.transform(images).astype(getattr(extractor, "stored_as", np.float32), copy=False).astype(np.float32, copy=False) for extractor in self.extractors]
        return np.concatenate(rows, axis=1)


def load_featurizer(folder: Path) -> Featurizer:
    """Rebuild the extractors saved by `save_featurizer`, fitted state restored (attributes ending in `_`)."""
    from features import get_extractor

    description = read_json(folder / DESCRIPTION)
    extractors = []
    for member in description["members"]:
        saved = read_json(folder / member / "extractor.json")
        extractor = get_extractor(saved["name"], **saved["params"])
        if (folder / member / "state.npz").exists():
            for key, value in load_arrays(folder / member / "state.npz").items():
                setattr(extractor, key, value)
        extractors.append(extractor)
    return Featurizer(extractors, tuple(description["image_shape"]), list(description["class_names"]))
