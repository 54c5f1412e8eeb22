"""Histogram of Oriented Gradients (Dalal & Triggs, CVPR 2005): local edge orientation, robust to colour."""
from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray
from skimage.feature import hog

from features.base import FeatureExtractor, check_images, check_positive_int
from features.registry import register


@register("hog")
class HOG(FeatureExtractor):
    """`skimage.feature.hog` of the grayscale image, one image at a time.

    orientations : bins over unsigned gradient angle; pixels_per_cell, cells_per_block : square sizes.
    d = blocks_y * blocks_x * cells_per_block**2 * orientations, blocks = H // pixels_per_cell - cells_per_block + 1.
    """

    def __init__(self, *, orientations: int = 9, pixels_per_cell: int = 4, cells_per_block: int = 2, block_norm: str = "L2-Hys"):
        self.orientations = check_positive_int("orientations", orientations)
        self.pixels_per_cell = check_positive_int("pixels_per_cell", pixels_per_cell)
        self.cells_per_block = check_positive_int("cells_per_block", cells_per_block)
        if block_norm not in ("L1", "L1-sqrt", "L2", "L2-Hys"):
            raise ValueError(f"block_norm must be one of L1, L1-sqrt, L2, L2-Hys; got {block_norm!r}")
        self.block_norm = block_norm

    def _blocks(self, size: int, axis_name: str) -> int:
        cells = size // self.pixels_per_cell
        blocks = cells - self.cells_per_block + 1
        if blocks < 1:
            raise ValueError(
                f"image {axis_name} {size} holds {cells} cells of pixels_per_cell={self.pixels_per_cell}, "
                f"fewer than cells_per_block={self.cells_per_block}; lower either parameter"
            )
        return blocks

    def output_dim(self, image_shape):
        height, width = image_shape[:2]
        blocks = self._blocks(height, "height") * self._blocks(width, "width")
        return blocks * self.cells_per_block**2 * self.orientations

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        out = np.empty((len(images), self.output_dim(images.shape[1:])), np.float32)
        for row, image in enumerate(images):
            out[row] = hog(
                rgb2gray(image),
                orientations=self.orientations,
                pixels_per_cell=(self.pixels_per_cell, self.pixels_per_cell),
                cells_per_block=(self.cells_per_block, self.cells_per_block),
                block_norm=self.block_norm,
                feature_vector=True,
            )
        return out
