"""Bag of visual words (Csurka et al. 2004; Fei-Fei & Perona 2005): which local patch types an image holds.

A k-means codebook is learned from random patches of the train split only; each image is then encoded
by assigning every dense patch to its nearest codeword and pooling the assignments over a spatial grid.
The `triangle` encoding is the soft assignment of Coates, Lee & Ng (AISTATS 2011).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.cluster import KMeans

from features.base import FeatureExtractor, NotFittedError, check_images, check_positive_int
from features.registry import register

ENCODINGS = ("hard", "triangle")


def normalize_patches(patches: np.ndarray, epsilon: float = 10.0) -> np.ndarray:
    """Per-patch contrast normalization on 0..255 values: zero mean, unit-ish variance.

    epsilon (in squared 0..255 units, as in Coates et al.) keeps flat patches from blowing up noise.
    """
    patches = patches - patches.mean(axis=-1, keepdims=True)
    return patches / np.sqrt(patches.var(axis=-1, keepdims=True) + epsilon)


def dense_patches(images: np.ndarray, patch_size: int, stride: int) -> np.ndarray:
    """(n, H, W, 3) -> (n, rows, cols, patch_size * patch_size * 3) float32 patches at `stride`."""
    windows = sliding_window_view(images, (patch_size, patch_size, 3), axis=(1, 2, 3))[:, ::stride, ::stride, 0]
    n, rows, cols = windows.shape[:3]
    return windows.reshape(n, rows, cols, -1).astype(np.float32)


@register("bovw")
class BagOfVisualWords(FeatureExtractor):
    """Codebook of `n_clusters` k-means centroids over `n_patches` random `patch_size` patches.

    encoding : "hard" (histogram of nearest codewords) or "triangle" (max(0, mean distance - distance)).
    pooling_grid : g, sum-pool over a g x g grid of image regions; d = g * g * n_clusters.
    """

    fitted = True

    def __init__(
        self,
        *,
        n_clusters: int = 256,
        patch_size: int = 6,
        stride: int = 2,
        n_patches: int = 50000,
        encoding: str = "hard",
        pooling_grid: int = 1,
        seed: int = 0,
    ):
        self.n_clusters = check_positive_int("n_clusters", n_clusters, minimum=2)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.stride = check_positive_int("stride", stride)
        self.n_patches = check_positive_int("n_patches", n_patches)
        if n_clusters > n_patches:
            raise ValueError(f"n_clusters={n_clusters} needs at least as many patches; got n_patches={n_patches}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
        self.encoding = encoding
        self.pooling_grid = check_positive_int("pooling_grid", pooling_grid)
        self.seed = int(seed)

    def _check_size(self, image_shape) -> tuple[int, int]:
        height, width = image_shape[:2]
        if min(height, width) < self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} is larger than the {height}x{width} images")
        rows = (height - self.patch_size) // self.stride + 1
        cols = (width - self.patch_size) // self.stride + 1
        if min(rows, cols) < self.pooling_grid:
            raise ValueError(f"pooling_grid={self.pooling_grid} exceeds the {rows}x{cols} patch positions")
        return rows, cols

    def output_dim(self, image_shape):
        self._check_size(image_shape)
        return self.pooling_grid**2 * self.n_clusters

    def fit(self, images: np.ndarray) -> "BagOfVisualWords":
        """Learn the codebook from random patches of `images` (the train split)."""
        check_images(images)
        self._check_size(images.shape[1:])
        rng = np.random.default_rng(self.seed)
        n, height, width = images.shape[:3]
        p = self.patch_size
        which = rng.integers(0, n, self.n_patches)
        top = rng.integers(0, height - p + 1, self.n_patches)
        left = rng.integers(0, width - p + 1, self.n_patches)
        offsets = np.arange(p)
        patches = images[which[:, None, None], top[:, None, None] + offsets[None, :, None], left[:, None, None] + offsets[None, None, :]]
        patches = normalize_patches(patches.reshape(self.n_patches, -1).astype(np.float32))
        kmeans = KMeans(n_clusters=self.n_clusters, n_init=1, max_iter=100, random_state=self.seed).fit(patches)
        self.codebook_ = kmeans.cluster_centers_.astype(np.float32)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        if not hasattr(self, "codebook_"):
            raise NotFittedError("bovw must be fit on the train split before transform")
        rows, cols = self._check_size(images.shape[1:])
        patches = normalize_patches(dense_patches(images, self.patch_size, self.stride))
        n = len(images)
        flat = patches.reshape(-1, patches.shape[-1])
        squared = (flat**2).sum(1, keepdims=True) - 2 * flat @ self.codebook_.T + (self.codebook_**2).sum(1)
        distances = np.sqrt(np.maximum(squared, 0))
        if self.encoding == "hard":
            codes = np.zeros_like(distances)
            codes[np.arange(len(codes)), distances.argmin(1)] = 1
        else:
            codes = np.maximum(distances.mean(1, keepdims=True) - distances, 0)
        codes = codes.reshape(n, rows, cols, self.n_clusters)
        g = self.pooling_grid
        region_of_row = np.arange(rows) * g // rows
        region_of_col = np.arange(cols) * g // cols
        pooled = np.zeros((n, g, g, self.n_clusters), np.float32)
        for region_row in range(g):
            for region_col in range(g):
                block = codes[:, region_of_row == region_row][:, :, region_of_col == region_col]
                pooled[:, region_row, region_col] = block.sum((1, 2)) / (block.shape[1] * block.shape[2])
        return pooled.reshape(n, -1)
