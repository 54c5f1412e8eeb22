"""Pictures people would rather look at than read: confusion matrix and learning curve."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = actual class, columns = predicted class."""
    return np.bincount(actual * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str):
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 2 + 0.5 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1, size))
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
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
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
