"""Small 2-D and 1-D problems for the studies, solved with the pipeline's own MLP and train() loop.

They make the lecture's geometric claims visible in seconds: what a hidden layer does to the
space (space warping), what L2 does to decision regions, that a linear model's loss is convex, and
that a 2-layer ReLU network is a sum of shifted, scaled ReLUs (universal approximation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from models.losses import LOSSES, weight_penalty
from models.mlp import MLP, MLPConfig
from models.training import EpochRecord, TrainConfig, evaluate, train


def two_circles(n: int = 400, factor: float = 0.3, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A disk inside a ring, which no line separates: x (n, 2) float32, y (n,) int64 (0 outer, 1 inner)."""
    generator = np.random.default_rng(seed)
    angles = generator.uniform(0, 2 * math.pi, n)
    labels = np.arange(n) % 2
    radius = np.where(labels == 1, factor, 1.0)
    points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1) + generator.normal(0, noise, (n, 2))
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def two_spirals(n: int = 400, turns: float = 1.5, noise: float = 0.08, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals: x (n, 2) float32 in about [-1, 1], y (n,) int64."""
    generator = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = np.sqrt(generator.uniform(0.02, 1, n)) * turns * 2 * math.pi
    sign = np.where(labels == 1, -1.0, 1.0)
    points = sign[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], 1) / (turns * 2 * math.pi)
    points += generator.normal(0, noise, (n, 2))
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


@dataclass
class ToyFit:
    model: MLP
    history: list[EpochRecord]
    train_accuracy: float
    final_loss: float  # data loss + penalty over the whole set: the objective the run minimized


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden_sizes: list[int],
    activation: str = "relu",
    reg_strength: float = 1e-4,
    epochs: int = 300,
    learning_rate: float = 0.1,
    batch_size: int = 64,
    seed: int = 0,
    loss: str = "softmax",
) -> ToyFit:
    """Train the pipeline's MLP on (x, y) with the pipeline's train() loop (no validation: last epoch kept)."""
    torch.manual_seed(seed)  # the initial weights, like the stages, follow the seed
    model = MLP(MLPConfig(input_dim=x.shape[1], n_classes=int(y.max()) + 1, hidden_sizes=list(hidden_sizes), activation=activation))
    config = TrainConfig(loss=loss, learning_rate=learning_rate, reg_strength=reg_strength, epochs=epochs, batch_size=batch_size, seed=seed)
    empty_x, empty_y = x[:0], y[:0]
    history = train(model, config, x, y, empty_x, empty_y, device=torch.device("cpu"), progress=False)
    return ToyFit(model, history, evaluate(model, x, y), objective(model, x, y, loss, reg_strength))


@torch.no_grad()
def objective(model: MLP, x: torch.Tensor, y: torch.Tensor, loss: str, reg_strength: float, regularization: str = "l2") -> float:
    """The loss train() minimizes, over the whole set: mean data loss + reg_strength * penalty(weights)."""
    model.eval()
    return float(LOSSES[loss](model(x), y) + reg_strength * weight_penalty(model.weight_matrices(), regularization))


@torch.no_grad()
def hidden_representation(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """(n, width) activations after the first hidden layer (Linear then activation): the warped space."""
    return model.layers[1](model.layers[0](x))


@torch.no_grad()
def collapsed_linear(model: MLP) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the single linear map an MLP without nonlinearities computes: W = W_L ... W_1.

    Only exact for activation "none" without batch norm or dropout.
    """
    linears = [module for module in model.layers if isinstance(module, torch.nn.Linear)]
    weight, bias = linears[0].weight, linears[0].bias
    for layer in linears[1:]:
        weight, bias = layer.weight @ weight, layer.weight @ bias + layer.bias
    return weight, bias


@torch.no_grad()
def loss_along_line(model_a: MLP, model_b: MLP, x: torch.Tensor, y: torch.Tensor, steps: np.ndarray, loss: str, reg_strength: float) -> np.ndarray:
    """The objective at theta_a + t (theta_b - theta_a) for every t in `steps` (0: model a, 1: model b)."""
    probe = MLP(model_a.config)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    values = []
    for t in steps:
        probe.load_state_dict({key: state_a[key] + float(t) * (state_b[key] - state_a[key]) for key in state_a})
        values.append(objective(probe, x, y, loss, reg_strength))
    return np.array(values)


@dataclass
class ReluSum:
    """A 2-layer ReLU net f(x) = bias + sum_i weights[i] * relu(x - knots[i]) on 1-D inputs."""

    knots: np.ndarray  # (width,)
    weights: np.ndarray  # (width,)
    bias: float

    def units(self, x: np.ndarray) -> np.ndarray:
        """(width, len(x)): each hidden unit's contribution, a shifted and scaled ReLU."""
        return self.weights[:, None] * np.maximum(x[None, :] - self.knots[:, None], 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.bias + self.units(x).sum(0)

    def as_mlp(self) -> MLP:
        """The same function as the pipeline's MLP (1 input, `width` ReLU units, 1 output)."""
        model = MLP(MLPConfig(input_dim=1, n_classes=1, hidden_sizes=[len(self.knots)], activation="relu"))
        with torch.no_grad():
            first, last = model.layers[0], model.layers[-1]
            first.weight.fill_(1.0)
            first.bias.copy_(torch.from_numpy(-self.knots.astype(np.float32)))
            last.weight.copy_(torch.from_numpy(self.weights.astype(np.float32))[None, :])
            last.bias.fill_(self.bias)
        return model


def fit_relu_sum(function: Callable[[np.ndarray], np.ndarray], width: int, low: float, high: float, samples: int = 400) -> ReluSum:
    """Least-squares fit of a width-unit ReLU sum to `function` on [low, high], knots evenly spaced.

    The constructive side of universal approximation (Cybenko 1989; Hornik 1991 for ReLU-like units):
    with the knots fixed the output layer is linear in its weights, so least squares finds the best one.
    """
    x = np.linspace(low, high, samples)
    knots = np.linspace(low, high, width + 1)[:-1]
    design = np.concatenate([np.ones((samples, 1)), np.maximum(x[:, None] - knots[None, :], 0)], 1)
    solution, *_ = np.linalg.lstsq(design, function(x), rcond=None)
    return ReluSum(knots, solution[1:], float(solution[0]))
