"""An extractor from another package: the mean colour of each image."""
import numpy as np

from features.base import FeatureExtractor, check_images


class MeanRGB(FeatureExtractor):
    """Mean red, green and blue of each image, in [0, 1]; d = 3."""

    def __init__(self, *, scale: float = 1.0):
        self.scale = scale

    def output_dim(self, image_shape):
        return 3

    def transform(self, images):
        check_images(images)
        return (images.mean(axis=(1, 2)) / 255 * self.scale).astype(np.float32)
