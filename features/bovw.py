"""Bag of visual words (Csurka et al. 2004; Fei-Fei & Perona 2005): which local patch types an image holds.

The pipeline of Coates, Lee & Ng (AISTATS 2011): random patches of the train split only are
contrast-normalized and ZCA-whitened, their k-means (`features/kmeans.py`) learns a codebook from
them; each image is encoded by every dense patch's distances to the codewords (`hard`: the nearest
one; `triangle`: Coates et al.'s soft rule max(0, mean distance - distance)) and the codes are
sum-pooled over a spatial grid.

The arithmetic runs in torch, a few images at a time, into buffers reused from chunk to chunk: the
distance matrix of all CIFAR-10 patches to 1600 codewords would be 280 GB, one chunk's is ~75 MB.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from features.base import FeatureExtractor, NotFittedError, check_images, check_positive_int
from features.kmeans import kmeans
from features.registry import register

ENCODINGS = ("hard", "triangle")
CONTRAST_EPSILON = 10.0  # in squared 0..255 units, as in Coates et al.: flat patches do not blow up noise
IMAGES_PER_CHUNK = 16  # 16 x 729 patches x 1600 codewords x 4 bytes = 75 MB of distances at a time


def normalize_patches(patches: torch.Tensor, epsilon: float = CONTRAST_EPSILON) -> torch.Tensor:
    """Per-patch contrast normalization of (n, d) 0..255 rows: zero mean, unit-ish variance (in place)."""
    patches = patches - patches.mean(dim=1, keepdim=True)
    return patches.div_(torch.sqrt(patches.var(dim=1, keepdim=True) + epsilon))


def dense_patches(images: np.ndarray, patch_size: int, stride: int) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, rows, cols, 3 * patch_size**2) float32, each patch channel-major."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    n, _, height, width = batch.shape
    rows = (height - patch_size) // stride + 1
    cols = (width - patch_size) // stride + 1
    columns = F.unfold(batch, patch_size, stride=stride)  # (n, 3 * p * p, rows * cols)
    return columns.transpose(1, 2).reshape(n, rows, cols, -1)


def random_patches(images: np.ndarray, count: int, patch_size: int, rng: np.random.Generator) -> torch.Tensor:
    """`count` patches at random images and positions, in the layout of `dense_patches`."""
    n, height, width = images.shape[:3]
    which = rng.integers(0, n, count)
    top = rng.integers(0, height - patch_size + 1, count)
    left = rng.integers(0, width - patch_size + 1, count)
    offsets = np.arange(patch_size)
    rows = top[:, None, None] + offsets[None, :, None]
    cols = left[:, None, None] + offsets[None, None, :]
    patches = images[which[:, None, None], rows, cols]  # (count, p, p, 3)
    return torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2))).reshape(count, -1).float()


def zca_whitening(patches: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, W) so that (x - mean) @ W has near-identity covariance; epsilon damps the smallest directions."""
    mean = patches.mean(dim=0)
    centered = (patches - mean).double()
    covariance = centered.T @ centered / (len(patches) - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    whitening = eigenvectors @ torch.diag(1 / torch.sqrt(eigenvalues.clamp(min=0) + epsilon)) @ eigenvectors.T
    return mean.float(), whitening.float()


def region_bounds(positions: int, grid: int) -> list[tuple[int, int]]:
    """Split `positions` patch rows (or columns) into `grid` contiguous, near-equal ranges."""
    edges = [(positions * index + grid - 1) // grid for index in range(grid + 1)]
    return list(zip(edges[:-1], edges[1:]))


@register("bovw")
class BagOfVisualWords(FeatureExtractor):
    """Codebook of `n_clusters` k-means centroids over `n_patches` random `patch_size` patches.

    whitening : ZCA-whiten patches (with eigenvalue damping `whitening_epsilon`) before k-means and encoding.
    encoding : "hard" (histogram of nearest codewords) or "triangle" (max(0, mean distance - distance)).
    pooling_grid : g, sum-pool over a g x g grid of image regions; d = g * g * n_clusters.
    kmeans_iterations : Lloyd iterations (Coates et al. used 50; the codebook hardly changes after).
    """

    fitted = True

    def __init__(
        self,
        *,
        n_clusters: int = 1600,
        patch_size: int = 6,
        stride: int = 1,
        n_patches: int = 100000,
        whitening: bool = True,
        whitening_epsilon: float = 0.1,
        encoding: str = "triangle",
        pooling_grid: int = 2,
        kmeans_iterations: int = 50,
        seed: int = 0,
    ):
        self.n_clusters = check_positive_int("n_clusters", n_clusters, minimum=2)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.stride = check_positive_int("stride", stride)
        self.n_patches = check_positive_int("n_patches", n_patches)
        if n_clusters > n_patches:
            raise ValueError(f"n_clusters={n_clusters} needs at least as many patches; got n_patches={n_patches}")
        if not isinstance(whitening, bool):
            raise ValueError(f"whitening must be true or false; got {whitening!r}")
        self.whitening = whitening
        if isinstance(whitening_epsilon, bool) or not isinstance(whitening_epsilon, (int, float)) or not whitening_epsilon > 0:
            raise ValueError(f"whitening_epsilon must be a number > 0; got {whitening_epsilon!r}")
        self.whitening_epsilon = float(whitening_epsilon)
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
        self.encoding = encoding
        self.pooling_grid = check_positive_int("pooling_grid", pooling_grid)
        self.kmeans_iterations = check_positive_int("kmeans_iterations", kmeans_iterations)
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

    def _preprocess(self, patches: torch.Tensor) -> torch.Tensor:
        """Contrast-normalize, then whiten with the train statistics: the same for fit and transform."""
        patches = normalize_patches(patches)
        if self.whitening:
            patches = (patches - torch.from_numpy(self.patch_mean_)) @ torch.from_numpy(self.whitening_)
        return patches

    def fit(self, images: np.ndarray) -> "BagOfVisualWords":
        """Learn whitening and codebook from random patches of `images` (the train split)."""
        check_images(images)
        self._check_size(images.shape[1:])
        patches = normalize_patches(random_patches(images, self.n_patches, self.patch_size, np.random.default_rng(self.seed)))
        dim = patches.shape[1]
        if self.whitening:
            mean, whitening = zca_whitening(patches, self.whitening_epsilon)
        else:
            mean, whitening = torch.zeros(dim), torch.eye(dim)
        self.patch_mean_, self.whitening_ = mean.numpy(), whitening.numpy()
        self.codebook_ = kmeans((patches - mean) @ whitening, self.n_clusters, self.kmeans_iterations, self.seed).numpy()
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        if not hasattr(self, "codebook_"):
            raise NotFittedError("bovw must be fit on the train split before transform")
        rows, cols = self._check_size(images.shape[1:])
        codebook = torch.from_numpy(self.codebook_)
        squared_norms = (codebook * codebook).sum(1)
        out = np.empty((len(images), self.output_dim(images.shape[1:])), np.float32)
        distances = None
        for start in range(0, len(images), IMAGES_PER_CHUNK):
            chunk = images[start : start + IMAGES_PER_CHUNK]
            patches = self._preprocess(dense_patches(chunk, self.patch_size, self.stride).reshape(-1, codebook.shape[1]))
            if distances is None or distances.shape[0] != len(patches):
                distances = torch.empty(len(patches), self.n_clusters)  # reused: fresh 75 MB per chunk costs page faults
            torch.addmm(squared_norms, patches, codebook.T, alpha=-2, out=distances)
            distances.add_((patches * patches).sum(1, keepdim=True)).clamp_(min=0).sqrt_()
            codes = self._encode(distances).view(len(chunk), rows, cols, self.n_clusters)
            out[start : start + len(chunk)] = self._pool(codes).numpy()
        return out

    def _encode(self, distances: torch.Tensor) -> torch.Tensor:
        """Codes from distances, overwriting them (triangle) or as a one-hot of the nearest codeword (hard)."""
        if self.encoding == "hard":
            return F.one_hot(distances.argmin(1), self.n_clusters).float()
        mean = distances.mean(dim=1, keepdim=True)
        return distances.neg_().add_(mean).clamp_(min=0)

    def _pool(self, codes: torch.Tensor) -> torch.Tensor:
        """(n, rows, cols, k) -> (n, g * g * k): each region's codes summed, divided by its patch count."""
        rows, cols = codes.shape[1:3]
        regions = [
            codes[:, top:bottom, left:right].sum((1, 2)) / ((bottom - top) * (right - left))
            for top, bottom in region_bounds(rows, self.pooling_grid)
            for left, right in region_bounds(cols, self.pooling_grid)
        ]
        return torch.stack(regions, 1).reshape(len(codes), -1)

    def figure(self, images, shown: int = 400):
        """The codebook (its first `shown` visual words) as a grid of patches, whitened as k-means saw them."""
        from features.figures import patch_grid_figure

        if not hasattr(self, "codebook_"):
            raise NotFittedError("bovw must be fit before its codebook can be drawn")
        p = self.patch_size
        patches = self.codebook_[:shown].reshape(-1, 3, p, p).transpose(0, 2, 3, 1)
        whitened = "ZCA-whitened" if self.whitening else "contrast-normalized"
        return patch_grid_figure(patches, f"bovw: {min(shown, self.n_clusters)} of {self.n_clusters} visual words ({whitened} {p}x{p} patches)")

