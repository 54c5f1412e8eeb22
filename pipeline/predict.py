"""Classify new images with a model logged by a training run: one call, from the MLflow run alone.

    from pipeline.predict import predict_images
    predict_images("RUN_ID", ["cat.png", "dog.jpg"])   # -> ["cat", "dog"]
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline import tracking
from pipeline.featurizer import load_featurizer


def read_image(path: str | Path, image_size: int) -> np.ndarray:
    """Any image Pillow reads -> (image_size, image_size, 3) uint8, as `prepare` reads an image folder."""
    from pipeline.datasets.imagefolder import _decode_image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    return _decode_image(path.read_bytes(), image_size)


def predict_images(run_id: str, images) -> list[str]:
    """Class names for `images`: paths of image files, or an array (n, H, W, 3) uint8 of the run's image size.

    Downloads the run's featurizer (extractor parameters and fitted state) and model, extracts the
    features the model was trained on, and takes the highest-scoring class.
    """
    with tempfile.TemporaryDirectory(prefix="featurebench-predict-") as scratch:
        featurizer = load_featurizer(tracking.download_artifacts(run_id, "featurizer", Path(scratch)))
    if not isinstance(images, np.ndarray):
        images = np.stack([read_image(path, featurizer.image_shape[0]) for path in images])
    model = tracking.load_model(run_id)  # a torch.export program, exported in eval mode (it refuses .eval())
    with torch.no_grad():
        scores = model(torch.from_numpy(featurizer.transform(images)))
    return [featurizer.class_names[index] for index in scores.argmax(1).tolist()]
