"""Choose hyperparameters on the validation split: train one model per grid point, keep the best."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from models.mlp import MLP
from models.training import EpochRecord, TrainConfig, train


@dataclass
class Trial:
    config: TrainConfig
    val_accuracy: float
    seconds: float
    history: list[EpochRecord]
    model: MLP


def grid(base: TrainConfig, learning_rates: list[float], reg_strengths: list[float]) -> list[TrainConfig]:
    return [replace(base, learning_rate=rate, reg_strength=strength) for rate, strength in itertools.product(learning_rates, reg_strengths)]


def grid_search(
    build_model: Callable[[], MLP],
    configs: list[TrainConfig],
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    device: torch.device,
    progress: bool = True,
) -> tuple[Trial, list[Trial]]:
    """(best trial by validation accuracy, all trials); each trial starts from the same seeded weights."""
    trials = []
    for config in configs:
        torch.manual_seed(config.seed)
        model = build_model()
        start = time.perf_counter()
        try:
            history = train(model, config, train_features, train_labels, val_features, val_labels, device=device, progress=progress)
        except FloatingPointError:
            continue  # a learning rate too high for this feature set; the grid's other points decide
        best_val = max(record.val_accuracy for record in history)
        trials.append(Trial(config, best_val, time.perf_counter() - start, history, model))
    if not trials:
        raise FloatingPointError("training diverged for every learning rate in the grid; lower learning_rates")
    return max(trials, key=lambda trial: trial.val_accuracy), trials
