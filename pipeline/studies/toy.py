"""The in-process parts of the studies: small seeded 2-D and 1-D problems with the pipeline's MLP and train().

Each function returns a ToyResult: figures by file name, and the facts the report states, as
numbers (`values`) and sentences (`facts`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models import toy
from pipeline.studies import figures

SPIRAL_MLP = [64, 64]
SEEDS = (0, 1, 2, 3, 4)


@dataclass
class ToyResult:
    figures: dict = field(default_factory=dict)  # file name -> matplotlib Figure
    values: dict = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)


TOY_L2_STRENGTHS = (0.001, 0.003, 0.01, 0.1)  # the lecture's three, and 0.003: on this problem 0.01 already leaves a line


def width_vs_l2() -> ToyResult:
    """A wide network (256 units) on two spirals at growing L2 strengths: the boundary smooths as L2 grows."""
    x, y = toy.two_spirals()
    fits = {}
    result = ToyResult()
    for strength in TOY_L2_STRENGTHS:
        fit = toy.fit(x, y, [256], reg_strength=strength, epochs=300, batch_size=100)
        fits[f"L2 {strength:g}: train accuracy {fit.train_accuracy:.2f}"] = fit.model
        result.values[f"train_accuracy_l2_{strength:g}"] = fit.train_accuracy
    result.figures["toy_decision_regions.png"] = figures.decision_regions(fits, x, y, "256 hidden units, two spirals: the same width, stronger L2")
    result.facts.append(
        "Two spirals, 256 ReLU units: train accuracy "
        + ", ".join(f"{result.values[f'train_accuracy_l2_{s:g}']:.2f} at L2 {s:g}" for s in TOY_L2_STRENGTHS)
        + ". The width stays; L2 alone decides how wiggly the boundary may be."
    )
    return result


def activations() -> ToyResult:
    """An MLP with activation none is one linear map: its output equals (W_L ... W_1) x + b exactly."""
    x, y = toy.two_spirals()
    deep = toy.fit(x, y, SPIRAL_MLP, activation="none", epochs=200, batch_size=100)
    linear = toy.fit(x, y, [], epochs=200, batch_size=100)
    weight, bias = toy.collapsed_linear(deep.model)
    with torch.no_grad():
        difference = float((deep.model(x) - (x @ weight.T + bias)).abs().max())
    result = ToyResult(values={"none_accuracy": deep.train_accuracy, "linear_accuracy": linear.train_accuracy, "collapse_max_difference": difference})
    result.figures["toy_none_vs_linear.png"] = figures.decision_regions(
        {f"MLP {SPIRAL_MLP}, activation none: {deep.train_accuracy:.2f}": deep.model, f"linear classifier: {linear.train_accuracy:.2f}": linear.model},
        x, y, "Without a nonlinearity, depth adds nothing: both boundaries are straight lines",
    )
    result.facts.append(
        f"An MLP {SPIRAL_MLP} with activation none, trained on two spirals, computes W x + b with W the product of its "
        f"{len(SPIRAL_MLP) + 1} weight matrices: largest difference between its scores and the product's {difference:.1e}. "
        f"Its train accuracy {deep.train_accuracy:.3f}, the linear classifier's {linear.train_accuracy:.3f}."
    )
    return result


def convexity() -> ToyResult:
    """Five seeds each of a linear classifier and an MLP on the same two spirals; the loss between two solutions."""
    x, y = toy.two_spirals()
    runs = {
        "softmax": [toy.fit(x, y, [], epochs=100, batch_size=100, seed=seed) for seed in SEEDS],
        f"MLP {SPIRAL_MLP}": [toy.fit(x, y, SPIRAL_MLP, epochs=300, batch_size=100, seed=seed) for seed in SEEDS],
    }
    result = ToyResult()
    for name, fits in runs.items():
        losses, accuracies = np.array([f.final_loss for f in fits]), np.array([f.train_accuracy for f in fits])
        result.values[name] = {"losses": losses.tolist(), "accuracies": accuracies.tolist(), "loss_spread": float(np.ptp(losses)), "accuracy_spread": float(np.ptp(accuracies))}
        result.facts.append(
            f"{name}, 5 seeds: final loss {losses.min():.4f} to {losses.max():.4f} (spread {np.ptp(losses):.1e}), "
            f"train accuracy {accuracies.min():.3f} to {accuracies.max():.3f}."
        )
    steps = np.linspace(-0.5, 1.5, 41)
    curves = {name: toy.loss_along_line(fits[0].model, fits[1].model, x, y, steps, "softmax", 1e-4) for name, fits in runs.items()}
    for name, values in curves.items():
        middle = values[np.searchsorted(steps, 0.5)]
        result.values[name]["line_barrier"] = float(middle - max(values[np.searchsorted(steps, 0.0)], values[np.searchsorted(steps, 1.0)]))
    result.figures["toy_loss_line.png"] = figures.loss_lines(steps, curves, "Loss on the straight line between seed 0's and seed 1's solutions (two spirals)")
    result.facts.append(
        "Between two solutions the linear model's loss is a bowl (convex on every line); the MLP's rises "
        f"by {result.values[f'MLP {SPIRAL_MLP}']['line_barrier']:.3f} half-way: two different minima, a ridge between them."
    )
    return result


def space_warping() -> ToyResult:
    """Two circles, an MLP with 2 ReLU units; and a 1-D function as a sum of shifted, scaled ReLUs."""
    x, y = toy.two_circles()
    # a 2-unit network often stops in a poor minimum (it is not convex): keep the best of five seeds
    restarts = [toy.fit(x, y, [2], epochs=300, batch_size=100, learning_rate=0.2, seed=seed) for seed in SEEDS]
    best = min(restarts, key=lambda fit: fit.final_loss)
    linear = toy.fit(x, y, [], epochs=100, batch_size=100)
    hidden = toy.hidden_representation(best.model, x)
    result = ToyResult(values={
        "mlp_accuracy": best.train_accuracy, "linear_accuracy": linear.train_accuracy,
        "restart_accuracies": [fit.train_accuracy for fit in restarts],
    })
    result.figures["space_warping.png"] = figures.space_warping(
        best.model, hidden, x, y, linear.model, f"Two circles: linear {linear.train_accuracy:.2f}, 2 ReLU units {best.train_accuracy:.2f}"
    )
    result.facts.append(
        f"Two circles (a disk inside a ring): a linear classifier reaches {linear.train_accuracy:.3f} (chance), an MLP "
        f"with one hidden layer of 2 ReLU units {best.train_accuracy:.3f} (the lowest loss of 5 seeds; their accuracies: "
        + ", ".join(f"{fit.train_accuracy:.2f}" for fit in restarts)
        + f"). Its hidden layer folds the plane: in the hidden space the output layer's boundary is a line, and it separates "
        f"{best.train_accuracy:.0%} of the points; two ReLU units can only carve an unbounded region, so one band of the ring "
        "stays on the disk's side (enclosing the disk takes three)."
    )
    target = lambda t: np.sin(2 * t) + 0.3 * t  # noqa: E731
    fits = {width: toy.fit_relu_sum(target, width, -3, 3) for width in (2, 4, 8, 16, 32)}
    grid = np.linspace(-3, 3, 400)
    errors = {width: float(np.abs(fit(grid) - target(grid)).max()) for width, fit in fits.items()}
    result.values["approximation_errors"] = errors
    result.figures["universal_approximation.png"] = figures.relu_sums(target, fits, -3, 3, "sin(2x) + 0.3x by 2-layer ReLU nets of growing width")
    result.facts.append(
        "Universal approximation: sin(2x) + 0.3x on [-3, 3] as a 2-layer ReLU net, largest error "
        + ", ".join(f"{errors[w]:.3f} with {w} units" for w in sorted(errors))
        + ". Each unit adds one kink; the output layer scales and sums them."
    )
    return result


TOY_PARTS = {"width-vs-l2": width_vs_l2, "activations": activations, "convexity": convexity, "space-warping": space_warping}


def run_toy(study_name: str) -> ToyResult:
    """The study's in-process part, on one thread (these problems are too small to gain from more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return TOY_PARTS[study_name]()
    finally:
        torch.set_num_threads(threads)
