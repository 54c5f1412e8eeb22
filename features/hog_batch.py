"""Histogram of Oriented Gradients (Dalal & Triggs, CVPR 2005) for a whole batch of images at once.

`hog_batch` gives, image for image, the vectors of `skimage.feature.hog(image, ...,
feature_vector=True, transform_sqrt=False)` without a Python loop over images: the loops that remain
run over the pixels of one cell, the orientation bins or the cells of one block, a few dozen
iterations whatever the batch size.

Why it matches scikit-image (read from `skimage/feature/_hog.py` and `_hoghistogram.pyx`, 0.26):

- Gradient: central differences `I[y+1] - I[y-1]` (no division by 2), and 0 on the first and last
  row (for the row gradient) and column (for the column gradient), computed in the image's float
  type (float32 stays float32) and only then widened to float64.
- Colour (`channel_axis=-1`, the paper's "locally dominant colour channel"): the gradient of every
  channel, and at each pixel the one whose magnitude `hypot` is largest, the first on ties.
- Orientation: `rad2deg(arctan2(g_row, g_col)) % 180` in float64, hard-assigned (no interpolation
  between bins, unlike the paper) to bin i when `w*i <= angle < w*(i+1)` with `w = 180 / orientations`
  as a float64 and the products formed in float64, as the Cython comparisons do. An angle that
  rounds to 180.0 itself lies in no bin and votes nowhere.
- Cells: `H // pixels_per_cell` by `W // pixels_per_cell`; the pixels past the last whole cell never
  vote. A cell's bin is the sum of its voting magnitudes accumulated in float32 in row-major order
  (`total` is a `float32_t` in the Cython loop), divided in float32 by the cell area, and so is
  reproduced here to the bit.
- Blocks: every `cells_per_block` window of cells, stride one cell, normalised with eps = 1e-5:
  L1 `v / (sum|v| + eps)`, L1-sqrt its square root, L2 `v / sqrt(sum v^2 + eps^2)`, L2-Hys the
  L2 result clipped at 0.2 and L2-normalised again. Flattened as (block row, block column, cell row,
  cell column, orientation).

Only the order of the few additions inside a block norm differs from scikit-image, so the largest
difference is a few float64 rounding errors before the final cast to float32.
"""
from __future__ import annotations

import numpy as np

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
EPS = 1e-5  # skimage's `_hog_normalize_block` default
L2_HYS_CLIP = 0.2


def _pair(name: str, value) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them (rows, columns); got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_orientations(orientations) -> int:
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be an integer >= 1; got {orientations!r}")
    return int(orientations)


def _grid(image_shape, pixels_per_cell, cells_per_block) -> tuple[tuple[int, int], tuple[int, int]]:
    """(cells_row, cells_col), (blocks_row, blocks_col) for an (H, W) image; refuses too small an image."""
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
    return cells, blocks


def hog_output_dim(image_shape, *, orientations: int = 9, pixels_per_cell=8, cells_per_block=3) -> int:
    """Length d of one image's vector: blocks_row * blocks_col * cells_per_block**2 * orientations.

    image_shape : (H, W) or (H, W, C); blocks = H // pixels_per_cell - cells_per_block + 1 per axis.
    """
    _, blocks = _grid(image_shape, pixels_per_cell, cells_per_block)
    block_rows, block_cols = _pair("cells_per_block", cells_per_block)
    return blocks[0] * blocks[1] * block_rows * block_cols * _check_orientations(orientations)


def _float_type(dtype: np.dtype) -> type:
    """skimage's `_supported_float_type`: float16 and float32 work in float32, everything else in float64."""
    return np.float32 if np.dtype(dtype) in (np.dtype(np.float16), np.dtype(np.float32)) else np.float64


def _channel_gradient(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along rows and columns of (n, H, W[, C]), zero on the border rows/columns."""
    g_row = np.zeros_like(images)
    g_row[:, 1:-1] = images[:, 2:] - images[:, :-2]
    g_col = np.zeros_like(images)
    g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    return g_row, g_col


def _gradient(images: np.ndarray, multichannel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(g_row, g_col), each (n, H, W) float64; for colour, the channel of largest magnitude per pixel."""
    g_row, g_col = _channel_gradient(images)
    if multichannel:
        dominant = np.hypot(g_row, g_col).argmax(axis=-1)[..., None]
        g_row = np.take_along_axis(g_row, dominant, axis=-1)[..., 0]
        g_col = np.take_along_axis(g_col, dominant, axis=-1)[..., 0]
    return g_row.astype(np.float64, copy=False), g_col.astype(np.float64, copy=False)


def _orientation_bins(g_row: np.ndarray, g_col: np.ndarray, orientations: int) -> np.ndarray:
    """Bin index of every pixel as skimage compares it; `orientations` means "in no bin"."""
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    # Bin upper bounds w * (i + 1) exactly as the Cython loop forms them (float64 product).
    upper = np.float64(180.0 / orientations) * np.arange(1, orientations + 1)
    return np.searchsorted(upper, angle, side="right")


def _cell_histograms(g_row: np.ndarray, g_col: np.ndarray, orientations: int, cell_rows: int, cell_cols: int) -> np.ndarray:
    """(n, cells_row, cells_col, orientations) float64: mean voting magnitude per cell and bin."""
    n = g_row.shape[0]
    cells_row, cells_col = g_row.shape[1] // cell_rows, g_row.shape[2] // cell_cols
    g_row = g_row[:, : cells_row * cell_rows, : cells_col * cell_cols]
    g_col = g_col[:, : cells_row * cell_rows, : cells_col * cell_cols]
    magnitude = np.hypot(g_col, g_row).reshape(n, cells_row, cell_rows, cells_col, cell_cols)
    bins = _orientation_bins(g_row, g_col, orientations).reshape(n, cells_row, cell_rows, cells_col, cell_cols)
    # One float32 accumulator per (cell, bin) plus a discard slot for votes in no bin. A cell gives
    # one pixel per in-cell offset, so each step writes distinct slots and plain fancy assignment
    # reproduces skimage's float32 `total += magnitude` (double sum, rounded to float) in its order.
    slots = orientations + 1
    totals = np.zeros(n * cells_row * cells_col * slots, np.float32)
    cell_base = (np.arange(n * cells_row * cells_col) * slots).reshape(n, cells_row, cells_col)
    for dy in range(cell_rows):
        for dx in range(cell_cols):
            index = cell_base + bins[:, :, dy, :, dx]
            totals[index] = totals[index] + magnitude[:, :, dy, :, dx]
    totals = totals.reshape(n, cells_row, cells_col, slots)[..., :orientations]
    return (totals / np.float32(cell_rows * cell_cols)).astype(np.float64)


def _normalize_blocks(blocks: np.ndarray, block_norm: str) -> np.ndarray:
    """Normalise (..., block_rows, block_cols, orientations) over its last three axes."""
    axes = (-3, -2, -1)
    if block_norm == "L1":
        return blocks / (np.abs(blocks).sum(axis=axes, keepdims=True) + EPS)
    if block_norm == "L1-sqrt":
        return np.sqrt(blocks / (np.abs(blocks).sum(axis=axes, keepdims=True) + EPS))
    out = blocks / np.sqrt((blocks**2).sum(axis=axes, keepdims=True) + EPS**2)
    if block_norm == "L2-Hys":
        out = np.minimum(out, L2_HYS_CLIP)
        out = out / np.sqrt((out**2).sum(axis=axes, keepdims=True) + EPS**2)
    return out


def hog_batch(
    images: np.ndarray,
    *,
    orientations: int = 9,
    pixels_per_cell=8,
    cells_per_block=3,
    block_norm: str = "L2-Hys",
    channel_axis: int | None = None,
) -> np.ndarray:
    """HoG (Dalal & Triggs, CVPR 2005) of every image, equal to skimage.feature.hog image by image.

    images : (n, H, W) grayscale, or (n, H, W, C) with channel_axis=-1 (gradient from the channel of
        largest magnitude at each pixel); float (float32 is kept for the gradient, as skimage does) or
        integer values taken as they are, not rescaled.
    orientations : bins over unsigned gradient angle [0, 180) degrees.
    pixels_per_cell, cells_per_block : int for a square, or (rows, columns).
    block_norm : one of "L1", "L1-sqrt", "L2", "L2-Hys".
    Defaults are skimage's. Returns (n, hog_output_dim(...)) float32, rows as with feature_vector=True.
    """
    images = np.asarray(images)
    orientations = _check_orientations(orientations)
    if block_norm not in BLOCK_NORMS:
        raise ValueError(f"block_norm must be one of {', '.join(BLOCK_NORMS)}; got {block_norm!r}")
    if channel_axis is None:
        if images.ndim != 3:
            raise ValueError(
                f"grayscale images must be an array of shape (n, H, W); got shape {images.shape} "
                "(pass channel_axis=-1 for (n, H, W, C) colour images)"
            )
    elif channel_axis not in (-1, 3) or images.ndim != 4:
        raise ValueError(f"colour images must be (n, H, W, C) with channel_axis=-1; got shape {images.shape}, channel_axis={channel_axis!r}")
    if images.dtype.kind not in "fiub":
        raise ValueError(f"images must hold real numbers; got dtype {images.dtype}")
    (cells_row, cells_col), (blocks_row, blocks_col) = _grid(images.shape[1:3], pixels_per_cell, cells_per_block)
    cell_rows, cell_cols = _pair("pixels_per_cell", pixels_per_cell)
    block_rows, block_cols = _pair("cells_per_block", cells_per_block)

    g_row, g_col = _gradient(images.astype(_float_type(images.dtype), copy=False), channel_axis is not None)
    histograms = _cell_histograms(g_row, g_col, orientations, cell_rows, cell_cols)
    # (n, blocks_row, blocks_col, block_rows, block_cols, orientations), a strided view then one copy.
    windows = np.lib.stride_tricks.sliding_window_view(histograms, (block_rows, block_cols), axis=(1, 2))
    blocks = windows.transpose(0, 1, 2, 4, 5, 3)
    normalized = _normalize_blocks(blocks, block_norm)
    return normalized.reshape(len(images), -1).astype(np.float32)
