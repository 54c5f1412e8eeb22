"""The studies' figures (matplotlib, Agg): each function returns a Figure; the report saves it as PNG."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

CLASS_COLOURS = ("tab:blue", "tab:orange")


def heatmap(values: np.ndarray, rows: list, columns: list, row_name: str, column_name: str, title: str):
    """values (len(rows), len(columns)) in [0, 1], each cell printed; NaN cells (missing points) blank."""
    figure, axis = plt.subplots(figsize=(1.3 * len(columns) + 2, 0.9 * len(rows) + 1.5))
    image = axis.imshow(values, cmap="viridis", vmin=np.nanmin(values) if np.isfinite(values).any() else 0, vmax=np.nanmax(values) if np.isfinite(values).any() else 1)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            axis.text(j, i, f"{value:.3f}", ha="center", va="center", color="white" if value < np.nanmean(values) else "black", fontsize=9)
    axis.set_xticks(range(len(columns)), [str(c) for c in columns])
    axis.set_yticks(range(len(rows)), [str(r) for r in rows])
    axis.set_xlabel(column_name)
    axis.set_ylabel(row_name)
    axis.set_title(title)
    figure.colorbar(image, ax=axis, shrink=0.8)
    figure.tight_layout()
    return figure


def lines(x: list, series: dict[str, list], x_label: str, y_label: str, title: str, log_x: bool = False):
    """One line per series over the same x; missing values (None) are left out."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        pairs = [(a, b) for a, b in zip(x, values) if b is not None]
        axis.plot([a for a, _ in pairs], [b for _, b in pairs], marker="o", label=name)
    if log_x:
        axis.set_xscale("log")
        axis.set_xticks(x, [f"{value:g}" for value in x])
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def grouped_bars(labels: list[str], series: dict[str, list], y_label: str, title: str):
    figure, axis = plt.subplots(figsize=(1.0 * len(labels) + 3, 4))
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = np.arange(len(labels)) + (index - (len(series) - 1) / 2) * width
        axis.bar(positions, [np.nan if v is None else v for v in values], width, label=name)
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _grid(x: torch.Tensor, steps: int = 200, margin: float = 0.3):
    low, high = x.min(0).values - margin, x.max(0).values + margin
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], steps), np.linspace(low[1], high[1], steps))
    return xs, ys, torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32))


def _scatter(axis, points: np.ndarray, labels: np.ndarray) -> None:
    for label, colour in enumerate(CLASS_COLOURS):
        axis.scatter(*points[labels == label].T, s=6, color=colour, edgecolors="none")


@torch.no_grad()
def _decision(axis, model, x: torch.Tensor, y: torch.Tensor, title: str) -> None:
    xs, ys, grid = _grid(x)
    model.eval()
    scores = model(grid)
    margin = (scores[:, 1] - scores[:, 0]).reshape(xs.shape).numpy()
    axis.contourf(xs, ys, margin > 0, levels=[-0.5, 0.5, 1.5], colors=["#c6dbef", "#fdd0a2"])
    axis.contour(xs, ys, margin, levels=[0], colors="k", linewidths=1)
    _scatter(axis, x.numpy(), y.numpy())
    axis.set_title(title, fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])


def decision_regions(fits: dict[str, object], x: torch.Tensor, y: torch.Tensor, title: str):
    """One panel per trained 2-class model: its decision regions and boundary over the data."""
    figure, axes = plt.subplots(1, len(fits), figsize=(3.6 * len(fits), 3.6))
    for axis, (name, model) in zip(np.atleast_1d(axes), fits.items()):
        _decision(axis, model, x, y, name)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


@torch.no_grad()
def space_warping(model, hidden: torch.Tensor, x: torch.Tensor, y: torch.Tensor, linear_model, title: str):
    """Input space with the MLP's boundary (and a linear model's), and the hidden layer's 2-D space with
    the output layer's boundary: a line there, w . h + b = 0 between the two class scores."""
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    _decision(axes[0], linear_model, x, y, "input space: a linear classifier")
    _decision(axes[1], model, x, y, "input space: MLP with 2 ReLU units")
    h = hidden.numpy()
    _scatter(axes[2], h, y.numpy())
    last = model.layers[-1]
    w = (last.weight[1] - last.weight[0]).numpy()
    b = float(last.bias[1] - last.bias[0])
    low, high = h.min(0) - 0.1 * (np.ptp(h, 0) + 1e-6), h.max(0) + 0.1 * (np.ptp(h, 0) + 1e-6)
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    margin = w[0] * xs + w[1] * ys + b
    axes[2].contourf(xs, ys, margin > 0, levels=[-0.5, 0.5, 1.5], colors=["#c6dbef", "#fdd0a2"], alpha=0.6)
    axes[2].contour(xs, ys, margin, levels=[0], colors="k", linewidths=1)
    _scatter(axes[2], h, y.numpy())
    axes[2].set_xlabel("ReLU unit 1")
    axes[2].set_ylabel("ReLU unit 2")
    axes[2].set_title("hidden space: the boundary is a line", fontsize=10)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def relu_sums(function, fits: dict[int, object], low: float, high: float, title: str):
    """Top: the function and each width's fit. Bottom: the widest fit's shifted, scaled ReLUs."""
    x = np.linspace(low, high, 400)
    widths = sorted(fits)
    figure, axes = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(x, function(x), "k", linewidth=2.5, label="target")
    for width in widths:
        error = np.abs(fits[width](x) - function(x)).max()
        axes[0].plot(x, fits[width](x), label=f"{width} ReLUs (max error {error:.3f})")
    axes[0].legend(fontsize=8)
    axes[0].set_title(title)
    shown = fits[widths[len(widths) // 2]]
    for unit in shown.units(x):
        axes[1].plot(x, unit, linewidth=0.8)
    axes[1].plot(x, shown(x), "k", linewidth=2, label=f"their sum + bias ({len(shown.knots)} units)")
    axes[1].legend(fontsize=8)
    axes[1].set_title("each hidden unit: w_i relu(x - k_i), a ReLU shifted to its knot and scaled")
    figure.tight_layout()
    return figure


def loss_lines(steps: np.ndarray, curves: dict[str, np.ndarray], title: str):
    """The objective along the straight line between two trained solutions, one panel per model."""
    figure, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6))
    for axis, (name, values) in zip(np.atleast_1d(axes), curves.items()):
        axis.plot(steps, values, "k")
        axis.axvline(0, color="tab:blue", linestyle=":", label="solution a")
        axis.axvline(1, color="tab:orange", linestyle=":", label="solution b")
        axis.set_xlabel("t: theta_a + t (theta_b - theta_a)")
        axis.set_ylabel("loss (data + L2)")
        axis.set_title(name, fontsize=10)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
