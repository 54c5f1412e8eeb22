"""Colour histogram: how much of each hue an image holds, ignoring where it is."""
from __future__ import annotations

import numpy as np
from skimage.color import rgb2hsv

from features.base import FeatureExtractor, check_images, check_positive_int
from features.registry import register


@register("color_hist")
class ColorHistogram(FeatureExtractor):
    """Histogram of the hue channel in HSV, normalized to sum to one (the lecture's colour feature).

    bins : number of equal hue bins over [0, 1); d = bins.
    """

    def __init__(self, *, bins: int = 10):
        self.bins = check_positive_int("bins", bins)

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        n = len(images)
        if n == 0:
            return np.zeros((0, self.bins), np.float32)
        hue = rgb2hsv(images.reshape(n, -1, 1, 3)).reshape(n, -1, 3)[..., 0]
        bin_index = np.minimum((hue * self.bins).astype(np.int64), self.bins - 1)
        offsets = np.arange(n)[:, None] * self.bins
        counts = np.bincount((bin_index + offsets).ravel(), minlength=n * self.bins).reshape(n, self.bins)
        return (counts / hue.shape[1]).astype(np.float32)

    def output_dim(self, image_shape):
        return self.bins
