"""Classify new images with a model logged by a training run: one call, from the MLflow run alone.

    from pipeline.predict import predict_images
    predict_images("RUN_ID", ["cat.png", "dog.jpg"])   # -> ["cat", "dog"]
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline import tracking
from pipeline.featurizer import load_featurizer


class UnreadableImage(ValueError):
    """An image file that cannot be classified; its message is `PATH: cannot read image (reason)`."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: cannot read image ({reason})")


def read_image(path: str | Path, image_size: int) -> np.ndarray:
    """Any image Pillow reads -> (image_size, image_size, 3) uint8, as `prepare` reads an image folder.

    Raises UnreadableImage naming the file: missing, a folder or a pipe, empty, truncated, not an
    image, over the size limits prepare applies.
    """
    from pipeline.datasets.decoding import Unreadable, decode_or_reason
    from pipeline.datasets.imagefolder import read_image_file

    data = read_image_file(Path(path))
    image = data if isinstance(data, Unreadable) else decode_or_reason(data, image_size)
    if isinstance(image, Unreadable):
        raise UnreadableImage(path, image.reason)
    return image


def predict_images(run_id: str, images, on_unreadable: Callable[[UnreadableImage], None] | None = None) -> list[str | None]:
    """Class names for `images`: a path or paths of image files, or an array (n, H, W, 3) uint8 of the run's image size.

    Downloads the run's featurizer (extractor parameters and fitted state) and model, extracts the
    features the model was trained on, and takes the highest-scoring class.
    on_unreadable : without it, a file that cannot be read raises UnreadableImage; with it, the error
        is handed to it, that file's name is None, and the other files are still classified.
    """
    with tempfile.TemporaryDirectory(prefix="featurebench-predict-") as scratch:
        featurizer = load_featurizer(tracking.download_artifacts(run_id, "featurizer", Path(scratch)))
    if isinstance(images, np.ndarray):
        return _classify(run_id, featurizer, images)
    paths, rows = [images] if isinstance(images, (str, os.PathLike)) else list(images), []
    for path in paths:
        try:
            rows.append(read_image(path, featurizer.image_shape[0]))
        except UnreadableImage as error:
            if on_unreadable is None:
                raise
            on_unreadable(error)
            rows.append(None)
    readable = [row for row in rows if row is not None]
    names = iter(_classify(run_id, featurizer, np.stack(readable)) if readable else [])
    return [None if row is None else next(names) for row in rows]


def _classify(run_id: str, featurizer, images: np.ndarray) -> list[str]:
    model = tracking.load_model(run_id)  # a torch.export program, exported in eval mode (it refuses .eval())
    with torch.no_grad():
        scores = model(torch.from_numpy(featurizer.transform(images)))
    return [featurizer.class_names[index] for index in scores.argmax(1).tolist()]
