"""The shape every feature extractor shares, so params log to MLflow as they are."""
from __future__ import annotations

import inspect

import numpy as np


class NotFittedError(RuntimeError):
    """`transform` was called on a fitted extractor before `fit`."""


class FeatureExtractor:
    """Base class: keyword-only hyperparameters stored by `__init__`, learned state ends in `_`.

    Subclasses implement `transform(images) -> float32 (n, d)` and `output_dim(image_shape)`;
    fitted ones (bag of visual words) also override `fit` and set `fitted = True` on the class.
    """

    name: str = ""
    fitted: bool = False
    # The dtype the extract stage stores the rows in, which training reads back as float32: float16
    # where the values need no more (bovw's), half the bytes to read every epoch.
    stored_as: type = np.float32

    def get_params(self) -> dict:
        """The keyword arguments of `__init__`, read back from attributes of the same name."""
        signature = inspect.signature(type(self).__init__)
        return {
            key: getattr(self, key)
            for key, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def fit(self, images: np.ndarray) -> "FeatureExtractor":
        """Stateless extractors learn nothing; fitted ones override this with train-split learning."""
        check_images(images)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform_with_mirror(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(transform(images), transform of the images mirrored left-right), each (n, d) float32.

        The extract stage asks for both when training augments with mirrored rows; this default
        encodes the mirrors as any other images. An extractor that can derive a mirror's features
        from its image's (bag of visual words) overrides it.
        """
        return self.transform(images), self.transform(np.ascontiguousarray(images[:, :, ::-1]))

    def figure(self, images: np.ndarray):
        """A matplotlib figure of what the extractor sees in a few sample images, or None (the default)."""
        return None

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        """Length d of one image's feature vector for images of shape (H, W, 3)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_images(images: np.ndarray) -> np.ndarray:
    """Refuse anything but a uint8 (n, H, W, 3) batch, saying what was given."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        described = f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"images must be a uint8 array of shape (n, H, W, 3); got {described}")
    return images


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)
