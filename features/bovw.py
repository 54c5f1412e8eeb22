"""Bag of visual words (Csurka et al. 2004; Fei-Fei & Perona 2005): which local patch types an image holds.

The pipeline of Coates, Lee & Ng (AISTATS 2011): random patches of the train split only are
contrast-normalized and ZCA-whitened, their k-means (`features/kmeans.py`) learns a codebook from
them; each image is encoded by every dense patch's distances to the codewords (`hard`: the nearest
one; `triangle`: Coates et al.'s soft rule max(0, mean distance - distance)) and the codes are
sum-pooled over a spatial grid.

Encoding is one matrix product per image plus a few passes over its result, so it runs at most of
the speed of torch.matmul (tests/benchmarks/bench_bovw.py measures both): the patches are strided
views of the image copied once in pixel-major order; contrast normalization is one layer_norm; and
the product [y, 1, |y|^2] @ [-2 c; |c|^2; 1] gives the squared distances |y - c|^2 directly, with no
broadcast additions after it. The triangle code and the pooling are one compiled read of that product
(`features/triangle_codes.py`), one image at a time (its 729 x 1600 distances, 4.7 MB, stay in the CPU
cache), on as many Python threads as torch has, each single-threaded: whole images in parallel rather
than every small operation split in two, which on a busy machine waits on whichever core is descheduled.
The distance matrix of all CIFAR-10 patches to 1600 codewords would be 280 GB; one worker's buffer is 4.7 MB.

An image's left-right mirror is encoded from the image's own distances (`transform_with_mirror`):
the mirror's patch at (row r, column c) is the mirror P x of the image's patch x at (r, C - 1 - c).
`fit` makes the whitening commute with P (ZCA of the patches and their mirrors) and the codebook
closed under P (k-means with centroids in mirror pairs, `features/kmeans.py`: P c_j = c_pi(j)), so
|W(P x - m) - c_j| = |W(x - m) - c_pi(j)|: the mirror's code at (r, c, j) is the image's at
(r, C - 1 - c, pi(j)). The pooling regions are not mirror-symmetric (27 positions split 14 + 13),
so each code of the image is also added to the mirror's region of its column, counted from the right,
and the mirror's codeword axis permuted by pi: a second sum instead of a second encoding. Only the triangle code is
derived: a mirror-symmetric patch (every flat one) lies exactly as near c_j as c_pi(j), so the hard
code's nearest word between the two is float32 rounding's choice, and a derived histogram would
count the other word of the pair than the mirror's own encoding does.
"""
from __future__ import annotations

import numbers

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from features.base import FeatureExtractor, NotFittedError, check_images, check_positive_int
from features.kmeans import kmeans, mirror_partners, run_on_torch_threads
from features.registry import register
from features.triangle_codes import TrianglePooling, region_of_positions, region_sizes

ENCODINGS = ("hard", "triangle")
CONTRAST_EPSILON = 10.0  # in squared 0..255 units, as in Coates et al.: flat patches do not blow up noise
IMAGES_PER_CHUNK = 1  # per worker: 729 patches x 1600 codewords x 4 bytes = 4.7 MB of distances, cache-sized


def normalize_patches(patches: torch.Tensor, epsilon: float = CONTRAST_EPSILON) -> torch.Tensor:
    """Per-patch contrast normalization of (n, d) 0..255 rows: zero mean, unit-ish variance (in place)."""
    patches = patches - patches.mean(dim=1, keepdim=True)
    return patches.div_(torch.sqrt(patches.var(dim=1, keepdim=True) + epsilon))


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """A C-contiguous tensor of images: numpy calls a one-image slice of a reversed batch (images[::-1])
    contiguous although its strides are negative, which torch.from_numpy refuses."""
    images = np.ascontiguousarray(images)
    return torch.from_numpy(images if all(stride >= 0 for stride in images.strides) else images.copy())


def dense_patches(images: np.ndarray, patch_size: int, stride: int) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, rows, cols, 3 * patch_size**2) float32, each patch channel-major."""
    batch = as_tensor(images).permute(0, 3, 1, 2).float()
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


def mirror_symmetric_zca(patches: torch.Tensor, epsilon: float, mirror: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`zca_whitening` of the (n, d) patches together with their mirror images patches[:, mirror].

    The covariance of that set commutes with the mirror, so its whitening does too; the last float32
    rounding is symmetrized as well, so that mean[mirror] == mean and W[mirror][:, mirror] == W exactly.
    """
    mean, whitening = zca_whitening(torch.cat([patches, patches[:, mirror]]), epsilon)
    return (mean + mean[mirror]) / 2, (whitening + whitening[mirror][:, mirror]) / 2


def mirrored_patch_order(patch_size: int) -> torch.Tensor:
    """order such that x[order] is channel-major patch x (as in `dense_patches`) mirrored left-right."""
    return torch.arange(3 * patch_size * patch_size).view(3, patch_size, patch_size).flip(2).reshape(-1)


def region_bounds(positions: int, grid: int) -> list[tuple[int, int]]:
    """Split `positions` patch rows (or columns) into `grid` contiguous, near-equal ranges."""
    edges = [(positions * index + grid - 1) // grid for index in range(grid + 1)]
    return list(zip(edges[:-1], edges[1:]))


def pixel_major_order(patch_size: int) -> torch.Tensor:
    """order[j]: the channel-major index (as in `dense_patches`) of pixel-major entry j (row, column, channel)."""
    return torch.arange(3 * patch_size * patch_size).view(3, patch_size, patch_size).permute(1, 2, 0).reshape(-1)


def strided_patches(images: np.ndarray, patch_size: int, stride: int) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n * rows * cols, 3 * patch_size**2) float32, each patch pixel-major.

    A patch's rows are contiguous runs of 3 * patch_size values in the (H, W, 3) image, so the patches
    are one strided view of it, and the reshape is their only copy (unfold's layout needs a second).
    """
    batch = as_tensor(images).float()
    n, height, width = batch.shape[:3]
    rows = (height - patch_size) // stride + 1
    cols = (width - patch_size) // stride + 1
    row_step, pixel_step = 3 * width, 3
    view = batch.as_strided(
        (n, rows, cols, patch_size, 3 * patch_size),
        (height * row_step, stride * row_step, stride * pixel_step, row_step, 1),
    )
    return view.reshape(n * rows * cols, 3 * patch_size * patch_size)


@dataclass(frozen=True)
class EncodingOperands:
    """The fitted state folded once into what `squared_distances` multiplies by.

    whitening : (d, d) rows in pixel-major order, times sqrt((d - 1) / d), which turns layer_norm's
        biased variance into `normalize_patches`' unbiased one.
    whitened_mean : (d,) the patch mean, whitened.
    augmented_codebook : (d + 2, k) [-2 c; |c|^2; 1], so that [y, 1, |y|^2] @ it is |y - c|^2.
    """

    whitening: torch.Tensor
    whitened_mean: torch.Tensor
    augmented_codebook: torch.Tensor

    @classmethod
    def fold(cls, patch_mean: np.ndarray, whitening: np.ndarray, codebook: np.ndarray, patch_size: int) -> "EncodingOperands":
        mean, whitening, codebook = (torch.from_numpy(array).float() for array in (patch_mean, whitening, codebook))
        dim = codebook.shape[1]
        variance_correction = ((dim - 1) / dim) ** 0.5
        augmented = torch.cat([-2 * codebook, (codebook * codebook).sum(1, keepdim=True), torch.ones(len(codebook), 1)], 1)
        return cls(
            whitening=(whitening[pixel_major_order(patch_size)] * variance_correction).contiguous(),
            whitened_mean=mean @ whitening,
            augmented_codebook=augmented.T.contiguous(),
        )


def squared_distances(patches: torch.Tensor, operands: EncodingOperands, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(p, d) raw pixel-major patches -> (p, k) squared distances of their normalized, whitened selves to the codewords.

    `rows` (p, d + 2) and `out` (p, k) are the caller's buffers; rows[:, d] must hold ones. Contrast
    normalization is layer_norm with its epsilon rescaled for the biased variance (see EncodingOperands).
    """
    dim = patches.shape[1]
    normalized = F.layer_norm(patches, (dim,), eps=CONTRAST_EPSILON * (dim - 1) / dim)
    whitened = rows[:, :dim]
    torch.addmm(operands.whitened_mean, normalized, operands.whitening, beta=-1, out=whitened)
    torch.linalg.vector_norm(whitened, dim=1, out=rows[:, dim + 1])
    rows[:, dim + 1].square_()
    return torch.mm(rows, operands.augmented_codebook, out=out)


def pool_hard(squared: torch.Tensor, rows: list, cols: list, out: torch.Tensor) -> None:
    """Histograms of the nearest codewords of (n * r * c, k) squared distances over the regions, into out."""
    n, k = len(out), squared.shape[1]
    row_region = region_of_positions(rows, max(bottom for _, bottom in rows))
    column_region = region_of_positions(cols, max(right for _, right in cols))
    region = torch.from_numpy(row_region[:, None] * len(cols) + column_region[None, :])  # region i * len(cols) + j
    index = squared.argmin(1).view(n, -1) + region.view(1, -1) * k
    out.zero_().scatter_add_(1, index, torch.ones(index.shape))
    out.view(n, -1, k).div_(torch.from_numpy(region_sizes(rows, cols)).view(1, -1, 1))


@register("bovw")
class BagOfVisualWords(FeatureExtractor):
    """Codebook of `n_clusters` k-means centroids over `n_patches` random `patch_size` patches.

    whitening : ZCA-whiten patches (with eigenvalue damping `whitening_epsilon`) before k-means and encoding.
    encoding : "hard" (histogram of nearest codewords) or "triangle" (max(0, mean distance - distance)).
    pooling_grid : g, sum-pool over a g x g grid of image regions; d = g * g * n_clusters.
    kmeans_iterations : Lloyd iterations (Coates et al. used 50; the codebook hardly changes after).
    """

    fitted = True
    # pooled codes are means of distances in whitened units, a few at most (histogram fractions for `hard`):
    # float16's three digits keep every CIFAR-10 accuracy, and training reads half the bytes (README: Benchmarks)
    stored_as = np.float16

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
        if isinstance(whitening_epsilon, bool) or not isinstance(whitening_epsilon, (int, float)) or not 0 < whitening_epsilon < float("inf"):
            raise ValueError(f"whitening_epsilon must be a finite number > 0; got {whitening_epsilon!r}")
        self.whitening_epsilon = float(whitening_epsilon)
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
        self.encoding = encoding
        self.pooling_grid = check_positive_int("pooling_grid", pooling_grid)
        self.kmeans_iterations = check_positive_int("kmeans_iterations", kmeans_iterations)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be a whole number; got {seed!r}")
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
        """Learn whitening and codebook from random patches of `images` (the train split), both closed
        under left-right mirroring: `mirrored_codeword_[j]` is the index of codeword j's mirror image."""
        check_images(images)
        self._check_size(images.shape[1:])
        patches = normalize_patches(random_patches(images, self.n_patches, self.patch_size, np.random.default_rng(self.seed)))
        dim, mirror = patches.shape[1], mirrored_patch_order(self.patch_size)
        if self.whitening:
            mean, whitening = mirror_symmetric_zca(patches, self.whitening_epsilon, mirror)
        else:
            mean, whitening = torch.zeros(dim), torch.eye(dim)
        self.patch_mean_, self.whitening_ = mean.numpy(), whitening.numpy()
        self.codebook_ = kmeans((patches - mean) @ whitening, self.n_clusters, self.kmeans_iterations, self.seed, mirror).numpy()
        self.mirrored_codeword_ = mirror_partners(self.n_clusters).numpy()
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, pooling_grid**2 * n_clusters) float32 pooled codes."""
        return self._encode(images, with_mirror=False)[0]

    def transform_with_mirror(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(transform(images), transform of their left-right mirrors), the mirrors' codes derived from the
        images' own distances (see the module's docstring).

        Encodes the mirrors the plain way where derivation is impossible or inexact: a codebook fit
        before codebooks were mirror-closed (no `mirrored_codeword_`), a stride that does not end on
        the last column ((W - patch_size) % stride != 0: the mirror's patches are not the image's),
        or `encoding: hard` (its ties, see the module's docstring).
        """
        check_images(images)
        derivable = self.encoding == "triangle" and hasattr(self, "mirrored_codeword_") and (images.shape[2] - self.patch_size) % self.stride == 0
        if hasattr(self, "codebook_") and derivable:
            return self._encode(images, with_mirror=True)
        return super().transform_with_mirror(images)

    def _encode(self, images: np.ndarray, with_mirror: bool) -> list[np.ndarray]:
        """[pooled codes] or [pooled codes, the mirrors' pooled codes], one encoding per image."""
        check_images(images)
        if not hasattr(self, "codebook_"):
            raise NotFittedError("bovw must be fit on the train split before transform")
        rows, cols = self._check_size(images.shape[1:])
        row_regions, col_regions = region_bounds(rows, self.pooling_grid), region_bounds(cols, self.pooling_grid)
        operands = EncodingOperands.fold(self.patch_mean_, self.whitening_, self.codebook_, self.patch_size)
        dim, k, patches_per_image = self.codebook_.shape[1], self.n_clusters, rows * cols
        outs = [np.empty((len(images), self.output_dim(images.shape[1:])), np.float32) for _ in range(2 if with_mirror else 1)]
        # never with_mirror for the hard code (transform_with_mirror encodes its mirrors the plain way)
        pool = TrianglePooling(rows, cols, row_regions, col_regions, with_mirror) if self.encoding == "triangle" else None

        def encode(start: int, buffers: dict) -> None:
            chunk = images[start : start + IMAGES_PER_CHUNK]
            patches = strided_patches(chunk, self.patch_size, self.stride)
            if "rows" not in buffers or len(buffers["rows"]) != len(patches):
                # reused from image to image: a fresh 4.7 MB buffer each time costs page faults
                buffers["rows"] = torch.empty(len(patches), dim + 2)
                buffers["rows"][:, dim] = 1
                buffers["distances"] = torch.empty(len(patches), self.n_clusters)
            squared = squared_distances(patches, operands, buffers["rows"], buffers["distances"])
            if pool is None:
                pool_hard(squared, row_regions, col_regions, torch.from_numpy(outs[0][start : start + len(chunk)]))
                return
            distances = squared.numpy()
            for image in range(len(chunk)):
                own = distances[image * patches_per_image : (image + 1) * patches_per_image]
                pool(own, *(out[start + image] for out in outs))
                if with_mirror:
                    mirrored = outs[1][start + image].reshape(-1, k)
                    mirrored[:] = mirrored[:, self.mirrored_codeword_]  # the mirror's word j is the image's word pi(j)

        run_on_torch_threads(range(0, len(images), IMAGES_PER_CHUNK), encode)
        return outs

    def figure(self, images, shown: int = 400):
        """The codebook (its first `shown` visual words) as a grid of patches, whitened as k-means saw them."""
        from features.figures import patch_grid_figure

        if not hasattr(self, "codebook_"):
            raise NotFittedError("bovw must be fit before its codebook can be drawn")
        p = self.patch_size
        patches = self.codebook_[:shown].reshape(-1, 3, p, p).transpose(0, 2, 3, 1)
        whitened = "ZCA-whitened" if self.whitening else "contrast-normalized"
        return patch_grid_figure(patches, f"bovw: {min(shown, self.n_clusters)} of {self.n_clusters} visual words ({whitened} {p}x{p} patches)")

