"""Choose hyperparameters on the validation split, then refit the chosen ones on train + validation.

Candidates come from a grid (every combination) or a seeded random sample of it, capped by a budget
of trials; each trial starts from the same seeded weights, so they differ only in their settings.
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from models.mlp import MLP, MLPConfig
from models.training import EpochRecord, TrainConfig, best_epoch, train

SEARCH_METHODS = ("grid", "random")


@dataclass
class SearchSpace:
    """The values tried for each searched setting; the other settings come from the base configs."""

    learning_rates: list[float]
    reg_strengths: list[float]
    hidden_sizes: list[list[int]]
    epochs: list[int]

    def size(self) -> int:
        return len(self.learning_rates) * len(self.reg_strengths) * len(self.hidden_sizes) * len(self.epochs)


@dataclass
class Trial:
    config: TrainConfig
    model_config: MLPConfig
    val_accuracy: float
    best_epoch: int
    seconds: float
    history: list[EpochRecord]
    model: MLP


def candidates(
    space: SearchSpace, base: TrainConfig, base_model: MLPConfig, method: str, budget: int, seed: int
) -> list[tuple[TrainConfig, MLPConfig]]:
    """(train config, model config) per trial: the whole grid, or `budget` points of it drawn at random."""
    if method not in SEARCH_METHODS:
        raise ValueError(f"search must be one of {', '.join(SEARCH_METHODS)}; got {method!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 trial; got {budget}")
    points = list(itertools.product(space.learning_rates, space.reg_strengths, space.hidden_sizes, space.epochs))
    if method == "grid" and len(points) > budget:
        raise ValueError(f"the grid has {len(points)} points but budget allows {budget} trials; raise budget or use search: random")
    if method == "random":
        points = random.Random(seed).sample(points, min(budget, len(points)))
    return [
        (replace(base, learning_rate=rate, reg_strength=strength, epochs=epochs), replace(base_model, hidden_sizes=list(hidden)))
        for rate, strength, hidden, epochs in points
    ]


def map_in_order(function: Callable, items: list, *, shared: object = None) -> list:
    """[function(shared, item) for every item]: trials one after another in this process."""
    return [function(shared, item) for item in items]


def run_trial(shared: tuple, candidate: tuple[TrainConfig, MLPConfig]) -> Trial | None:
    """One trial from seeded weights; None when training diverged.

    shared : (train features, train labels, val features, val labels, device, augment, progress),
    the same for every trial, so a parallel map sends them to each worker once.
    """
    train_features, train_labels, val_features, val_labels, device, augment, progress = shared
    config, model_config = candidate
    torch.manual_seed(config.seed)
    model = MLP(model_config)
    start = time.perf_counter()
    try:
        history = train(model, config, train_features, train_labels, val_features, val_labels, device=device, progress=progress, augment=augment)
    except FloatingPointError:
        return None  # a learning rate too high for this feature set; the other points decide
    chosen_epoch = best_epoch(history)
    return Trial(config, model_config, history[chosen_epoch - 1].val_accuracy, chosen_epoch, time.perf_counter() - start, history, model)


def search(
    configs: list[tuple[TrainConfig, MLPConfig]],
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
    map_trials: Callable = map_in_order,
) -> tuple[Trial, list[Trial]]:
    """(best trial by validation accuracy, all trials that did not diverge).

    map_trials(run_trial, configs, shared=...) runs the trials and returns them in the configs' order:
    one after another here, or in parallel (pipeline.engine.map_in_order with engine: ray).
    """
    shared = (train_features, train_labels, val_features, val_labels, device, augment, progress)
    trials = [trial for trial in map_trials(run_trial, configs, shared=shared) if trial is not None]
    if not trials:
        raise FloatingPointError("training diverged for every learning rate searched; lower learning_rates")
    return max(trials, key=lambda trial: trial.val_accuracy), trials


def refit(
    chosen: Trial,
    features: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
) -> tuple[MLP, list[EpochRecord]]:
    """The chosen settings trained afresh on `features` (train + validation), stopped at the chosen trial's best epoch.

    The learning-rate schedule is the trial's, so the refit sees the same rates epoch by epoch.
    """
    config = replace(chosen.config, patience=0)
    torch.manual_seed(config.seed)
    model = MLP(chosen.model_config)
    empty = features[:0], labels[:0]
    history = train(model, config, features, labels, *empty, device=device, progress=progress, augment=augment, stop_after=chosen.best_epoch)
    return model, history
