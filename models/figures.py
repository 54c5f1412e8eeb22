"""Pictures people would rather look at than read: confusion matrix and learning curve.

Figures are plain `matplotlib.figure.Figure` objects, not pyplot's: no backend or figure manager to
load (a third of a second of every training stage's start), nothing to close, and matplotlib itself
is imported only when a figure is drawn.
"""
from __future__ import annotations

import warnings

import numpy as np

# A class name in a script the installed fonts lack (CJK where only DejaVu is installed) draws as boxes,
# and matplotlib warns once per glyph and figure: dozens of lines a stage about what the figure shows.
MISSING_GLYPH_WARNING = r"Glyph \d+ .* missing from"


def ignore_missing_glyphs() -> None:
    """Silence matplotlib's missing-glyph warnings in this process (figures still draw the boxes)."""
    warnings.filterwarnings("ignore", message=MISSING_GLYPH_WARNING, category=UserWarning)


def new_figure(figsize: tuple[float, float]):
    """A figure outside pyplot: it saves to PNG through the Agg canvas, and is freed with its last reference."""
    from matplotlib.figure import Figure

    ignore_missing_glyphs()
    return Figure(figsize=figsize)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = actual class, columns = predicted class."""
    return np.bincount(actual * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str):
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 2 + 0.5 * len(class_names)
    figure = new_figure((size + 1, size))
    axes = figure.subplots()
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    if len(class_names) <= 20:
        for (row, col), value in np.ndenumerate(matrix):
            axes.text(col, row, str(value), ha="center", va="center", fontsize=7, color="white" if rates[row, col] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of actual class")
    figure.tight_layout()
    return figure


def learning_curve_figure(history, title: str):
    epochs = [record.epoch for record in history]
    figure = new_figure((9, 3.5))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [record.train_loss for record in history], marker=".")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("train loss")
    accuracy_axes.plot(epochs, [record.train_accuracy for record in history], marker=".", label="train")
    accuracy_axes.plot(epochs, [record.val_accuracy for record in history], marker=".", label="validation")
    accuracy_axes.set_xlabel("epoch")
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def template_images(weights: np.ndarray, image_shape) -> np.ndarray:
    """(k, H*W*3) weights on pixels -> (k, H, W, 3) images in [0, 1], each stretched to its own range."""
    templates = weights.reshape(len(weights), *image_shape)
    low = templates.min(axis=(1, 2, 3), keepdims=True)
    high = templates.max(axis=(1, 2, 3), keepdims=True)
    return (templates - low) / np.maximum(high - low, 1e-12)


def templates_figure(weights: np.ndarray, image_shape, titles: list[str] | None, title: str, columns: int = 10):
    """Rows of a pixel-space weight matrix drawn as images: a linear classifier's one template per class,
    or an MLP's first-layer units ("many reusable templates")."""
    images = template_images(weights, image_shape)
    rows = -(-len(images) // columns)
    figure = new_figure((1.3 * columns, 1.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index], interpolation="nearest")
            if titles:
                axis.set_title(titles[index], fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
