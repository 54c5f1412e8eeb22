"""Histogram of Oriented Gradients (Dalal & Triggs, CVPR 2005): local edge orientation, robust to colour.

`hog_batch(images, ...)[i]` equals `skimage.feature.hog(images[i], ..., feature_vector=True,
transform_sqrt=False)` to float32 rounding, with no Python loop over images, about 20x faster than a
per-image skimage loop (tests/benchmarks/bench_hog.py). The `hog` extractor is built on it.


What it reproduces, read from scikit-image 0.26 (`feature/_hog.py`, `feature/_hoghistogram.pyx`):

- Gradient: central differences `I[y+1] - I[y-1]` with no division by 2, and 0 on the first and last
  row (row gradient) and column (column gradient); computed in the image's float type (float32 stays
  float32) and only then widened to float64.
- Colour (`channel_axis=-1`, the paper's "locally dominant colour channel"): the gradient of every
  channel, and at each pixel the one whose `hypot` magnitude is largest, the first on ties.
- Orientation: `rad2deg(arctan2(g_row, g_col)) % 180`, hard-assigned (the paper interpolates between
  bins; skimage does not) to bin i when `w*i <= angle < w*(i+1)`, with `w = 180 / orientations` and
  the products formed in float64 as the Cython loop forms them. An angle that `% 180` rounds up to
  180.0 lies in no bin and votes nowhere.
- Cells: `H // pixels_per_cell` by `W // pixels_per_cell`; the pixels past the last whole cell never
  vote (nor do they shift the grid). A bin holds the sum of its pixels' magnitudes divided by the cell
  area, a mean over the whole cell rather than over the pixels that voted.
- Blocks: every `cells_per_block` window of cells, stride one cell, normalised with eps = 1e-5:
  L1 `v / (sum|v| + eps)`, L1-sqrt its square root, L2 `v / sqrt(sum v^2 + eps^2)`, L2-Hys the L2
  result clipped at 0.2 and L2-normalised again. Flattened as (block row, block column, cell row,
  cell column, orientation).

Where it departs, by rounding only: skimage adds a cell's magnitudes into a float32 `total` and
divides in float32; this sums in float64 (`np.bincount`), which is the more exact of the two, and
takes `sqrt(x^2 + y^2)` for the magnitude where skimage takes `hypot` (within an ulp). The bin a
pixel falls in is decided exactly as skimage decides it, so after normalisation the vectors differ
by about 1e-7 at most.
"""
from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray

from features.base import FeatureExtractor, check_images, check_positive_int
from features.registry import register

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
EPS = 1e-5  # skimage's `_hog_normalize_block` default
L2_HYS_CLIP = 0.2
# Images are processed this many pixels at a time, so every temporary (512 KiB in float64) stays in
# cache and its memory is reused; on 1,000 CIFAR-10 images a third faster than all at once.
PIXELS_PER_CHUNK = 1 << 16
# Pixels within this many bin widths of a bin edge are binned with skimage's own formula.
EDGE_MARGIN = 1e-6


def _pair(name: str, value) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them (rows, columns); got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_orientations(orientations) -> int:
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be an integer >= 1; got {orientations!r}")
    return int(orientations)


def _blocks(image_shape, pixels_per_cell, cells_per_block) -> tuple[int, int]:
    """(blocks_row, blocks_col) of an (H, W[, C]) image; refuses an image too small for one block."""
    height, width = image_shape[:2]
    cell_rows, cell_cols = _pair("pixels_per_cell", pixels_per_cell)
    block_rows, block_cols = _pair("cells_per_block", cells_per_block)
    cells = (height // cell_rows, width // cell_cols)
    blocks = (cells[0] - block_rows + 1, cells[1] - block_cols + 1)
    if min(blocks) < 1:
        raise ValueError(
            f"an image of {height}x{width} pixels holds {cells[0]}x{cells[1]} cells of pixels_per_cell="
            f"{pixels_per_cell}, fewer than cells_per_block={cells_per_block}; it needs at least "
            f"{block_rows * cell_rows}x{block_cols * cell_cols} pixels, or lower either parameter"
        )
    return blocks


def hog_output_dim(image_shape, *, orientations: int, pixels_per_cell, cells_per_block) -> int:
    """Length d of one image's vector: blocks_row * blocks_col * cells_per_block**2 * orientations.

    image_shape : (H, W) or (H, W, C); blocks = H // pixels_per_cell - cells_per_block + 1 per axis.
    """
    blocks_row, blocks_col = _blocks(image_shape, pixels_per_cell, cells_per_block)
    block_rows, block_cols = _pair("cells_per_block", cells_per_block)
    return blocks_row * blocks_col * block_rows * block_cols * _check_orientations(orientations)


def _float_type(dtype: np.dtype) -> type:
    """skimage's `_supported_float_type`: float16 and float32 work in float32, everything else in float64."""
    return np.float32 if np.dtype(dtype) in (np.dtype(np.float16), np.dtype(np.float32)) else np.float64


def _plane_gradient(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along rows and columns of (..., H, W), zero on the border rows/columns."""
    g_row = np.empty_like(planes)
    g_row[..., 0, :] = g_row[..., -1, :] = 0
    np.subtract(planes[..., 2:, :], planes[..., :-2, :], out=g_row[..., 1:-1, :])
    g_col = np.empty_like(planes)
    g_col[..., 0] = g_col[..., -1] = 0
    np.subtract(planes[..., 2:], planes[..., :-2], out=g_col[..., 1:-1])
    return g_row, g_col


def _dominant_gradient(g_row: np.ndarray, g_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g_row, g_col), each (n, H, W), of the channel of largest gradient magnitude, given (C, n, H, W).

    skimage takes the first argmax of `hypot` in the image's float type. `x*x + y*y` costs a fifth as
    much and ranks the channels alike, except where another channel's gradient comes within a few
    rounding errors of the best and is a different vector (an equal vector, as grey pixels give, is
    the same choice); only those pixels are ranked again with hypot. Squares that underflow belong
    to gradients below 1e-154, whose votes vanish against eps in the normalised output.
    """
    squared = g_row * g_row
    squared += g_col * g_col
    best, row, col = squared[0].copy(), g_row[0].copy(), g_col[0].copy()
    for channel in range(1, len(squared)):
        larger = squared[channel] > best  # strictly: the first channel wins a tie, as in argmax
        np.copyto(row, g_row[channel], where=larger)
        np.copyto(col, g_col[channel], where=larger)
        np.maximum(best, squared[channel], out=best)
    near_best = best * (1 - 16 * np.finfo(squared.dtype).eps)
    unsure = np.zeros(best.shape, bool)
    for channel in range(len(squared)):
        unsure |= (squared[channel] >= near_best) & ((g_row[channel] != row) | (g_col[channel] != col))
    unsure = np.flatnonzero(unsure)
    rows, cols = g_row.reshape(len(g_row), -1)[:, unsure], g_col.reshape(len(g_col), -1)[:, unsure]
    dominant = np.hypot(rows, cols).argmax(axis=0)
    row.ravel()[unsure] = rows[dominant, np.arange(len(unsure))]
    col.ravel()[unsure] = cols[dominant, np.arange(len(unsure))]
    return row, col


def _gradient(images: np.ndarray, multichannel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(g_row, g_col), each (n, H, W) float64; for colour, the channel of largest magnitude per pixel.

    images : (n, H, W), or (n, H, W, C) when multichannel, in the float type skimage would use.
    """
    if multichannel:
        g_row, g_col = _dominant_gradient(*_plane_gradient(np.ascontiguousarray(np.moveaxis(images, -1, 0))))
    else:
        g_row, g_col = _plane_gradient(images)
    return g_row.astype(np.float64, copy=False), g_col.astype(np.float64, copy=False)


def _orientation_slots(g_row: np.ndarray, g_col: np.ndarray, orientations: int) -> np.ndarray:
    """Histogram slot of every pixel, in [0, 2 * orientations]: slot s < 2 * orientations is bin
    s % orientations, slot 2 * orientations is no bin.

    skimage bins `rad2deg(arctan2(g_row, g_col)) % 180`, and that `%` alone costs more than the rest
    of this function. Counted in bin widths from -180 degrees the angle is
    `(radians + pi) * orientations / pi`, and its integer part is the slot: bin k for angles below
    0 degrees (where `% 180` adds 180), bin k - orientations from 0 up. That shortcut can round
    differently from skimage only next to a bin edge, so the pixels within EDGE_MARGIN bin widths of
    one take skimage's own formula and comparisons; in CIFAR-10 they are about one pixel in twelve,
    mostly flat areas and horizontal gradients, at exactly 0 or 180 degrees.
    """
    radians = np.arctan2(g_row, g_col)
    position = np.multiply(radians, orientations / np.pi)
    position += orientations
    slots = position.astype(np.intp)  # position >= -1e-15, so truncation is floor or an edge case
    position -= slots
    position -= 0.5
    np.abs(position, out=position)
    edge = np.flatnonzero(position > 0.5 - EDGE_MARGIN)
    degrees = np.rad2deg(radians.ravel()[edge]) % 180
    upper_edges = np.float64(180.0 / orientations) * np.arange(1, orientations + 1)
    exact = np.searchsorted(upper_edges, degrees, side="right")  # the bin, or `orientations` for none
    exact[exact == orientations] = 2 * orientations
    slots.ravel()[edge] = exact
    return slots


def _slot_offsets(n: int, cells_row: int, cells_col: int, cell_rows: int, cell_cols: int, n_slots: int) -> np.ndarray:
    """(n, cells_row * cell_rows, cells_col * cell_cols) intp: index of each pixel's cell's first slot."""
    cell_of_pixel = np.arange(cells_row).repeat(cell_rows)[:, None] * cells_col + np.arange(cells_col).repeat(cell_cols)
    return (np.arange(n)[:, None, None] * (cells_row * cells_col) + cell_of_pixel) * n_slots


def _cell_histograms(
    g_row: np.ndarray, g_col: np.ndarray, orientations: int, cell_rows: int, cell_cols: int, slot_offsets: np.ndarray
) -> np.ndarray:
    """(n, cells_row, cells_col, orientations) float64: the magnitude per bin summed over a cell, over its area.

    slot_offsets : `_slot_offsets(m, ...)` for some m >= n, the same for every chunk of a batch.
    """
    n = g_row.shape[0]
    cells_row, cells_col = g_row.shape[1] // cell_rows, g_row.shape[2] // cell_cols
    g_row = g_row[:, : cells_row * cell_rows, : cells_col * cell_cols]
    g_col = g_col[:, : cells_row * cell_rows, : cells_col * cell_cols]
    magnitude = np.multiply(g_row, g_row)
    magnitude += g_col * g_col
    np.sqrt(magnitude, out=magnitude)

    n_slots = 2 * orientations + 1
    index = _orientation_slots(g_row, g_col, orientations)
    index += slot_offsets[:n]
    sums = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=n * cells_row * cells_col * n_slots)
    sums = sums.reshape(n, cells_row, cells_col, n_slots)
    return (sums[..., :orientations] + sums[..., orientations : 2 * orientations]) / (cell_rows * cell_cols)


def _window_sum(cell_values: np.ndarray, block_rows: int, block_cols: int) -> np.ndarray:
    """(n, cells_row, cells_col) -> (n, blocks_row, blocks_col): the sum over each block's cells."""
    blocks_row = cell_values.shape[1] - block_rows + 1
    blocks_col = cell_values.shape[2] - block_cols + 1
    total = np.zeros((cell_values.shape[0], blocks_row, blocks_col))
    for dy in range(block_rows):
        for dx in range(block_cols):
            total += cell_values[:, dy : dy + blocks_row, dx : dx + blocks_col]
    return total


def _normalize_blocks(histograms: np.ndarray, block_rows: int, block_cols: int, block_norm: str, out: np.ndarray) -> None:
    """Write into out, float32 (n, blocks_row, blocks_col, block_rows, block_cols, orientations), the
    normalised blocks of histograms (n, cells_row, cells_col, orientations).

    A block's norm is the sum of its cells' sums, so only the output itself is built block by block.
    """
    windows = np.lib.stride_tricks.sliding_window_view(histograms, (block_rows, block_cols), axis=(1, 2))
    blocks = windows.transpose(0, 1, 2, 4, 5, 3)  # a strided view of the histograms, no copy yet
    if block_norm in ("L1", "L1-sqrt"):
        l1 = _window_sum(np.abs(histograms).sum(axis=-1), block_rows, block_cols) + EPS
        if block_norm == "L1":
            np.divide(blocks, l1[..., None, None, None], out=out, casting="same_kind")
        else:
            np.sqrt(blocks / l1[..., None, None, None], out=out, casting="same_kind")
        return
    l2 = np.sqrt(_window_sum((histograms * histograms).sum(axis=-1), block_rows, block_cols) + EPS**2)
    if block_norm == "L2":
        np.divide(blocks, l2[..., None, None, None], out=out, casting="same_kind")
        return
    clipped = blocks / l2[..., None, None, None]
    np.minimum(clipped, L2_HYS_CLIP, out=clipped)
    flat = clipped.reshape(*clipped.shape[:3], -1)
    l2_clipped = np.sqrt(np.einsum("...i,...i->...", flat, flat) + EPS**2)
    np.divide(clipped, l2_clipped[..., None, None, None], out=out, casting="same_kind")


def hog_batch(
    images: np.ndarray,
    *,
    orientations: int,
    pixels_per_cell,
    cells_per_block,
    block_norm: str,
    channel_axis: int | None = None,
) -> np.ndarray:
    """HoG (Dalal & Triggs, CVPR 2005) of every image; row i is `skimage.feature.hog(images[i], ...)`.

    images : (n, H, W) grayscale, or (n, H, W, C) with channel_axis=-1 (the gradient then comes from
        the channel of largest magnitude at each pixel). Finite floats, or integers taken as they are
        (not rescaled to [0, 1]) as skimage takes them; float16/float32 images get a float32 gradient.
    orientations : bins over the unsigned gradient angle, [0, 180) degrees.
    pixels_per_cell, cells_per_block : int for a square, or (rows, columns).
    block_norm : "L1", "L1-sqrt", "L2" or "L2-Hys".
    Returns (n, hog_output_dim(...)) float32, each row ordered as skimage's feature_vector=True.
    """
    images = np.asarray(images)
    orientations = _check_orientations(orientations)
    if block_norm not in BLOCK_NORMS:
        raise ValueError(f"block_norm must be one of {', '.join(BLOCK_NORMS)}; got {block_norm!r}")
    if channel_axis is None and images.ndim != 3:
        raise ValueError(
            f"grayscale images must be an array of shape (n, H, W); got shape {images.shape} "
            "(pass channel_axis=-1 for (n, H, W, C) colour images)"
        )
    if channel_axis is not None and (channel_axis not in (-1, 3) or images.ndim != 4):
        raise ValueError(
            f"colour images must be an array of shape (n, H, W, C) with channel_axis=-1; "
            f"got shape {images.shape} and channel_axis={channel_axis!r}"
        )
    if images.dtype.kind not in "biuf":
        raise ValueError(f"images must hold real numbers; got dtype {images.dtype}")
    blocks_row, blocks_col = _blocks(images.shape[1:3], pixels_per_cell, cells_per_block)
    cell_rows, cell_cols = _pair("pixels_per_cell", pixels_per_cell)
    block_rows, block_cols = _pair("cells_per_block", cells_per_block)

    n = len(images)
    out = np.empty((n, blocks_row, blocks_col, block_rows, block_cols, orientations), np.float32)
    chunk = max(1, PIXELS_PER_CHUNK // int(np.prod(images.shape[1:])))
    cells_row, cells_col = blocks_row + block_rows - 1, blocks_col + block_cols - 1
    slot_offsets = _slot_offsets(min(chunk, n), cells_row, cells_col, cell_rows, cell_cols, 2 * orientations + 1)
    for start in range(0, n, chunk):
        # C order: the binning writes through `ravel()` views, which for a transposed, rot90 or
        # Fortran-order array are copies, so those writes were lost and the histograms came out wrong.
        part = np.ascontiguousarray(images[start : start + chunk], dtype=_float_type(images.dtype))
        g_row, g_col = _gradient(part, multichannel=channel_axis is not None)
        histograms = _cell_histograms(g_row, g_col, orientations, cell_rows, cell_cols, slot_offsets)
        _normalize_blocks(histograms, block_rows, block_cols, block_norm, out[start : start + chunk])
    return out.reshape(n, blocks_row * blocks_col * block_rows * block_cols * orientations)


@register("hog")
class HOG(FeatureExtractor):
    """HoG of each image, from its grayscale version or, with color=True, from the colour channel of
    largest gradient at each pixel (Dalal & Triggs' variant).

    orientations : bins over unsigned gradient angle; pixels_per_cell, cells_per_block : square sizes.
    d = blocks_y * blocks_x * cells_per_block**2 * orientations, blocks = H // pixels_per_cell - cells_per_block + 1.
    """

    def __init__(self, *, orientations: int = 9, pixels_per_cell: int = 4, cells_per_block: int = 2, block_norm: str = "L2-Hys", color: bool = False):
        self.orientations = check_positive_int("orientations", orientations)
        self.pixels_per_cell = check_positive_int("pixels_per_cell", pixels_per_cell)
        self.cells_per_block = check_positive_int("cells_per_block", cells_per_block)
        if block_norm not in BLOCK_NORMS:
            raise ValueError(f"block_norm must be one of {', '.join(BLOCK_NORMS)}; got {block_norm!r}")
        self.block_norm = block_norm
        if not isinstance(color, bool):
            raise ValueError(f"color must be true or false; got {color!r}")
        self.color = color

    def output_dim(self, image_shape):
        return hog_output_dim(
            image_shape[:2], orientations=self.orientations, pixels_per_cell=self.pixels_per_cell, cells_per_block=self.cells_per_block
        )

    def transform(self, images: np.ndarray) -> np.ndarray:
        check_images(images)
        self.output_dim(images.shape[1:])  # refuses cells larger than the image, naming the parameter
        settings = dict(orientations=self.orientations, pixels_per_cell=self.pixels_per_cell, cells_per_block=self.cells_per_block, block_norm=self.block_norm)
        if self.color:
            return hog_batch(images / 255.0, channel_axis=-1, **settings)
        return hog_batch(rgb2gray(images), **settings)

    def figure(self, images):
        """Each sample image above skimage's HoG glyphs: per cell, strokes as long as each orientation's strength."""
        from skimage.feature import hog

        from features.figures import hog_glyphs_figure

        settings = dict(orientations=self.orientations, pixels_per_cell=(self.pixels_per_cell,) * 2, cells_per_block=(self.cells_per_block,) * 2, visualize=True)
        glyphs = [
            hog(image / 255.0, channel_axis=-1, **settings)[1] if self.color else hog(rgb2gray(image), **settings)[1]
            for image in images
        ]
        return hog_glyphs_figure(images, glyphs, f"hog: {self.orientations} orientations, {self.pixels_per_cell}x{self.pixels_per_cell}-pixel cells")

