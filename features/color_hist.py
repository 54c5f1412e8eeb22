"""Colour histograms: how much of each colour an image holds, optionally per region of a grid."""
from __future__ import annotations

import numpy as np
from skimage.color import rgb2hsv, rgb2lab

from features.base import FeatureExtractor, check_images, check_positive_int
from features.compiled import LazyKernel
from features.registry import register

COLOR_SPACES = ("hsv", "rgb", "lab")
MODES = ("hue", "per_channel", "joint")


def _count_hsv_bins(images, region, bins, mode, counts):
    """The kernel (compiled by _HSV_COUNTS): each pixel's HSV bins added to counts[image, its region, slot].

    HSV as skimage.color.rgb2hsv computes it, the same float64 operations in the same order (k * (1 / 255),
    the max, the spread, the hue of the last channel equal to the max), so every pixel falls in the same
    bins (a test compares all 16.7 million colours); mode 0 counts the hue bin, 1 the three channels'
    bins (slots channel * bins + bin), 2 the joint bin ((h * bins + s) * bins + v)."""
    scale = 1.0 / 255.0
    top = bins - 1
    for image in range(images.shape[0]):
        for y in range(images.shape[1]):
            for x in range(images.shape[2]):
                red, green, blue = images[image, y, x, 0] * scale, images[image, y, x, 1] * scale, images[image, y, x, 2] * scale
                value = max(red, max(green, blue))
                delta = value - min(red, min(green, blue))
                saturation, hue = 0.0, 0.0
                if delta != 0.0:
                    saturation = delta / value
                    if blue == value:
                        hue = 4.0 + (red - green) / delta
                    elif green == value:
                        hue = 2.0 + (blue - red) / delta
                    else:
                        hue = (green - blue) / delta
                    hue = (hue / 6.0) % 1.0
                hue_bin = min(int(hue * bins), top)
                out = counts[image, region[y, x]]
                if mode == 0:
                    out[hue_bin] += 1
                    continue
                saturation_bin, value_bin = min(int(saturation * bins), top), min(int(value * bins), top)
                if mode == 1:
                    out[hue_bin] += 1
                    out[bins + saturation_bin] += 1
                    out[2 * bins + value_bin] += 1
                else:
                    out[(hue_bin * bins + saturation_bin) * bins + value_bin] += 1


_HSV_COUNTS = LazyKernel(_count_hsv_bins)  # exact float64 arithmetic: no fastmath


def unit_channels(images: np.ndarray, color_space: str) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, H, W, 3) float in [0, 1] in the chosen colour space."""
    if color_space == "rgb":
        return images / 255.0
    if color_space == "hsv":
        return rgb2hsv(images)
    lab = rgb2lab(images)  # L in [0, 100], a and b within about [-128, 127]
    return np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], axis=-1)


@register("color_hist")
class ColorHistogram(FeatureExtractor):
    """Normalized colour histograms (Swain & Ballard 1991); the default is the lecture's hue histogram.

    bins : equal bins over each channel's range.
    mode : "hue" (HSV hue only; d = bins), "per_channel" (one histogram per channel; d = 3 * bins) or
        "joint" (a 3-D histogram over all three channels; d = bins ** 3).
    color_space : "hsv", "rgb" or "lab" (ignored by "hue", which is HSV by definition).
    grid : g, one histogram per cell of a g x g grid of the image, each summing to one; d *= g * g.
    """

    def __init__(self, *, bins: int = 10, mode: str = "hue", color_space: str = "hsv", grid: int = 1):
        self.bins = check_positive_int("bins", bins)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if color_space not in COLOR_SPACES:
            raise ValueError(f"color_space must be one of {', '.join(COLOR_SPACES)}; got {color_space!r}")
        self.mode = mode
        self.color_space = color_space
        self.grid = check_positive_int("grid", grid)

    def _histogram_length(self) -> tuple[int, int]:
        """(histograms per region, bins per histogram)"""
        return {"hue": (1, self.bins), "per_channel": (3, self.bins), "joint": (1, self.bins**3)}[self.mode]

    def output_dim(self, image_shape):
        height, width = image_shape[:2]
        if min(height, width) < self.grid:
            raise ValueError(f"grid={self.grid} has more cells than the {height}x{width} images have pixels")
        histograms, length = self._histogram_length()
        return self.grid**2 * histograms * length

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        n, height, width = images.shape[:3]
        dim = self.output_dim(images.shape[1:])
        if n == 0:
            return np.zeros((0, dim), np.float32)
        histograms, length = self._histogram_length()
        region = (np.arange(height)[:, None] * self.grid // height) * self.grid + np.arange(width)[None, :] * self.grid // width
        slots = histograms * length
        if self.mode == "hue" or self.color_space == "hsv":  # compiled: a pass over the pixels, no float images
            counts = np.zeros((n, self.grid**2, slots), np.int64)
            _HSV_COUNTS.compiled()(np.ascontiguousarray(images), region, self.bins, MODES.index(self.mode), counts)
        else:
            counts = self._counted(images, region, slots)
        counts = counts.reshape(n, self.grid**2, histograms, length)
        return (counts / counts.sum(-1, keepdims=True)).reshape(n, dim).astype(np.float32)

    def _counted(self, images: np.ndarray, region: np.ndarray, slots: int) -> np.ndarray:
        """(n, regions, slots) bin counts in RGB or Lab, through a float copy of the images."""
        n = len(images)
        bin_index = np.minimum((unit_channels(images, self.color_space) * self.bins).astype(np.int64), self.bins - 1)  # (n, H, W, 3)
        if self.mode == "per_channel":
            codes = bin_index + np.arange(3) * self.bins
        else:
            codes = ((bin_index[..., 0] * self.bins + bin_index[..., 1]) * self.bins + bin_index[..., 2])[..., None]
        flat = (np.arange(n)[:, None, None, None] * self.grid**2 + region[None, :, :, None]) * slots + codes
        return np.bincount(flat.ravel(), minlength=n * self.grid**2 * slots).reshape(n, self.grid**2, slots)

    def transform_with_mirror(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(transform(images), transform of their left-right mirrors), the mirrors' histograms taken from
        the images' own: a region's histogram does not depend on where its pixels lie in it, so a mirror's
        region (i, j) is its image's (i, grid - 1 - j) wherever the grid's columns are mirror-symmetric
        (the width a multiple of grid, or near it); elsewhere the mirrors are computed as any image."""
        check_images(images)
        width = images.shape[2]
        column_region = np.arange(width) * self.grid // width
        if not np.array_equal(column_region[::-1], self.grid - 1 - column_region):
            return super().transform_with_mirror(images)
        features = self.transform(images)
        regions = features.reshape(len(features), self.grid, self.grid, features.shape[1] // self.grid**2)
        return features, np.ascontiguousarray(regions[:, :, ::-1]).reshape(features.shape)  # (0, d) stays (0, d)

    def figure(self, images):
        """Each sample image above its histogram (the first grid region's), hue bins in their own colours."""
        from matplotlib.colors import hsv_to_rgb

        from features.figures import histograms_figure

        histograms, length = self._histogram_length()
        first_region = self.transform(images)[:, : histograms * length]
        colors = None
        if self.mode == "hue":
            colors = [hsv_to_rgb(((index + 0.5) / self.bins, 1, 1)) for index in range(self.bins)]
        return histograms_figure(images, first_region, colors, f"color_hist: {self.mode} histogram ({self.color_space}, {self.bins} bins)")

