"""Raw pixels: the baseline every hand-crafted feature is compared against."""
from __future__ import annotations

import numpy as np

from features.base import FeatureExtractor, check_images
from features.registry import register


@register("pixels")
class Pixels(FeatureExtractor):
    """The flattened image scaled to [0, 1]; d = H * W * 3."""

    def __init__(self):
        pass

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        return images.reshape(len(images), self.output_dim(images.shape[1:])).astype(np.float32) / np.float32(255)

    def figure(self, images):
        from features.figures import sample_images_figure

        return sample_images_figure(images, "pixels: the images themselves, flattened")

    def output_dim(self, image_shape):
        height, width, channels = image_shape
        return height * width * channels
