"""What each extractor sees, drawn for people: HoG glyphs, colour histograms, the visual-word codebook.

The extract stage saves each extractor's picture beside its features; every training run on those
features logs it to MLflow, so a run shows what its classifier was given.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sample_images_figure(images: np.ndarray, title: str):
    """The images themselves: what raw-pixel features are."""
    figure, axes = plt.subplots(1, len(images), figsize=(1.4 * len(images), 1.8), squeeze=False)
    for axis, image in zip(axes[0], images):
        axis.imshow(image, interpolation="nearest")
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def hog_glyphs_figure(images: np.ndarray, glyphs: list[np.ndarray], title: str):
    """Each image above its HoG glyph picture (one star of oriented strokes per cell)."""
    figure, axes = plt.subplots(2, len(images), figsize=(1.4 * len(images), 3.2), squeeze=False)
    for column, (image, glyph) in enumerate(zip(images, glyphs)):
        axes[0, column].imshow(image, interpolation="nearest")
        axes[1, column].imshow(glyph, cmap="gray", interpolation="nearest")
        axes[0, column].axis("off")
        axes[1, column].axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def histograms_figure(images: np.ndarray, histograms: np.ndarray, bar_colors: list | None, title: str):
    """Each image above the bars of its (first region's) colour histogram."""
    figure, axes = plt.subplots(2, len(images), figsize=(1.6 * len(images), 3.4), squeeze=False)
    for column, (image, histogram) in enumerate(zip(images, histograms)):
        axes[0, column].imshow(image, interpolation="nearest")
        axes[0, column].axis("off")
        axes[1, column].bar(np.arange(len(histogram)), histogram, width=1.0, color=bar_colors or "tab:blue")
        axes[1, column].set_xticks([])
        axes[1, column].set_yticks([])
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def patch_grid_figure(patches: np.ndarray, title: str, columns: int = 40):
    """(k, p, p, 3) patches, each stretched to its own range, tiled into one image (Coates et al.'s Fig. 1)."""
    low = patches.min(axis=(1, 2, 3), keepdims=True)
    high = patches.max(axis=(1, 2, 3), keepdims=True)
    patches = (patches - low) / np.maximum(high - low, 1e-12)
    count, size = len(patches), patches.shape[1]
    rows = -(-count // columns)
    canvas = np.ones((rows * (size + 1) + 1, columns * (size + 1) + 1, 3))
    for index, patch in enumerate(patches):
        top, left = 1 + (index // columns) * (size + 1), 1 + (index % columns) * (size + 1)
        canvas[top : top + size, left : left + size] = patch
    figure, axis = plt.subplots(figsize=(min(16, 0.3 * columns + 1), min(16, 0.3 * rows + 1)))
    axis.imshow(canvas, interpolation="nearest")
    axis.axis("off")
    axis.set_title(title)
    figure.tight_layout()
    return figure
