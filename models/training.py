"""One seeded minibatch SGD loop for every model, and its evaluation."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from models.losses import LOSSES, weight_penalty
from models.mlp import MLP


@dataclass
class TrainConfig:
    """Optimization settings; `loss` is "svm" or "softmax", `regularization` "l2" or "l1"."""

    loss: str = "softmax"
    learning_rate: float = 0.01
    momentum: float = 0.9
    reg_strength: float = 1e-4
    regularization: str = "l2"
    epochs: int = 10
    batch_size: int = 256
    lr_schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.regularization not in ("l2", "l1"):
            raise ValueError(f"regularization must be 'l2' or 'l1'; got {self.regularization!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if self.reg_strength < 0:
            raise ValueError(f"reg_strength must be >= 0; got {self.reg_strength}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; got {self.epochs}, {self.batch_size}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine'; got {self.lr_schedule!r}")


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    learning_rate: float


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when present unless a device is forced ("cpu", "cuda")."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from the initial rate to zero over the epochs, or constant."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


@torch.no_grad()
def sgd_momentum_step(parameters, gradients, velocities, learning_rate: float, momentum: float) -> None:
    """The lecture's update: v = momentum * v - learning_rate * grad; w = w + v (in place)."""
    for parameter, gradient, velocity in zip(parameters, gradients, velocities):
        velocity.mul_(momentum).sub_(gradient, alpha=learning_rate)
        parameter.add_(velocity)


@torch.no_grad()
def predict(model: MLP, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Class indices for every row of `features` (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [model(features[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(features), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.int64)


def evaluate(model: MLP, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy in [0, 1]."""
    if len(labels) == 0:
        return float("nan")
    return (predict(model, features) == labels.cpu()).float().mean().item()


def train(
    model: MLP,
    config: TrainConfig,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    device: torch.device | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = True,
) -> list[EpochRecord]:
    """Minibatch SGD with momentum; keeps the weights of the epoch with the best validation accuracy.

    features : (n, d) float32 tensors on the CPU; labels : (n,) int64. Returns one record per epoch.
    """
    device = device or choose_device()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    x, y = train_features.to(device), train_labels.to(device)
    parameters = list(model.parameters())
    velocities = [torch.zeros_like(p) for p in parameters]
    loss_function = LOSSES[config.loss]
    weights = model.weight_matrices()
    history: list[EpochRecord] = []
    best_accuracy, best_state = -1.0, None
    epochs = tqdm(range(config.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in epochs:
        rate = learning_rate_at(config, epoch)
        model.train()
        order = torch.randperm(len(x), generator=generator).to(device)
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            scores = model(x[batch])
            loss = loss_function(scores, y[batch])
            objective = loss + config.reg_strength * weight_penalty(weights, config.regularization)
            gradients = torch.autograd.grad(objective, parameters)
            sgd_momentum_step(parameters, gradients, velocities, rate, config.momentum)
            # summed on the device: one host sync per epoch, not two per batch
            total_loss += loss.detach() * len(batch)
            correct += (scores.detach().argmax(1) == y[batch]).sum()
        total_loss, correct = total_loss.item(), correct.item()
        if not math.isfinite(total_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: lower learning_rate (now {config.learning_rate})")
        record = EpochRecord(epoch + 1, total_loss / len(x), correct / len(x), evaluate(model, val_features, val_labels), rate)
        history.append(record)
        if record.val_accuracy > best_accuracy:
            best_accuracy = record.val_accuracy
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        epochs.set_postfix(loss=f"{record.train_loss:.3f}", val=f"{record.val_accuracy:.3f}")
        if on_epoch:
            on_epoch(record)
    model.load_state_dict(best_state)
    return history


def standardization(train: np.ndarray, epsilon: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column of the train features only; a constant column gets std epsilon, not 0."""
    mean = train.mean(0, dtype=np.float64).astype(np.float32)
    std = train.std(0, dtype=np.float64).astype(np.float32) + np.float32(epsilon)
    return mean, std
