"""Full-batch L-BFGS for the linear classifiers, with the loss streamed over row chunks.

A linear classifier's objective, mean loss + reg_strength * ||W||^2, is convex (softmax, squared
hinge, hinge): a quasi-Newton method reaches its minimum in far fewer passes over the rows than SGD's
learning-rate grid x epochs (Nocedal & Wright, Numerical Optimization, ch. 7; scikit-learn's
LogisticRegression solves it the same way). No stage holds a split in memory, so every function
evaluation is one streaming pass: chunks of `chunk_rows` rows, each chunk's share of the mean loss
backpropagated, gradients summed. torch.optim.LBFGS does the two-loop recursion and the strong-Wolfe
line search. Only the L2 penalty is supported (L1 is not differentiable at 0: its solver stays SGD).

The reg_strengths grid is solved as a path, largest first, each point warm-started from the last
(the regularization path of glmnet, Friedman, Hastie & Tibshirani 2010): the later, less regularized
problems start close to their optimum.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from models.losses import LOSSES, weight_penalty
from models.mlp import MLP, MLPConfig
from models.search import Trial
from models.training import KEEP_CHOICES, EpochRecord, TrainingFailed, as_row_source, best_record, evaluate, kept_record, read_rows

SOLVERS = ("sgd", "lbfgs")
CHUNK_ROWS = 8192


@dataclass
class LBFGSConfig:
    """What an L-BFGS fit needs; logged as the trial's params (there is no learning rate to log).

    max_iterations : L-BFGS iterations at most (about 1.1 passes over the rows each, line search included).
    tolerance : stop when the largest gradient entry is below it.
    record_every : iterations between two history records (each costs a pass over the validation rows).
    val_patience : stop after this many records without a better validation accuracy (0: off). Past the
        best record L-BFGS only fits the train rows closer; measured on CIFAR-10 it saves half the passes.
    chunk_rows : rows per streamed read; the result does not depend on it beyond float rounding.
    keep : "best_val" (the record with the best validation accuracy) or "last" (the minimum, or where
        max_iterations stopped, with no stop for validation: the convexity study compares these).
    """

    loss: str = "softmax"
    reg_strength: float = 1e-4
    regularization: str = "l2"
    max_iterations: int = 100
    tolerance: float = 1e-5
    history_size: int = 10
    record_every: int = 5
    val_patience: int = 2
    chunk_rows: int = CHUNK_ROWS
    keep: str = "best_val"
    seed: int = 0
    solver: str = "lbfgs"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.regularization != "l2":
            raise ValueError(f"solver lbfgs minimizes an L2-penalized objective; got regularization {self.regularization!r} (use solver: sgd for l1)")
        if self.reg_strength < 0:
            raise ValueError(f"reg_strength must be >= 0; got {self.reg_strength}")
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}; got {self.keep!r}")
        if min(self.max_iterations, self.record_every, self.chunk_rows, self.history_size) < 1:
            raise ValueError("max_iterations, record_every, chunk_rows and history_size must be >= 1")


def streamed_objective(model: MLP, config: LBFGSConfig, features, labels: torch.Tensor, device: torch.device) -> tuple[float, int]:
    """(mean loss + reg_strength * ||W||^2, correctly classified rows), gradients accumulated in .grad.

    features : a row source (or tensor) of n rows, read `config.chunk_rows` at a time; labels : (n,) int64.
    Each chunk contributes loss_chunk * len(chunk) / n, so the summed gradient is the full batch's.
    """
    source, n = as_row_source(features), len(labels)
    loss_function = LOSSES[config.loss]
    total, correct = 0.0, 0
    for start in range(0, n, config.chunk_rows):
        stop = min(start + config.chunk_rows, n)
        rows = read_rows(source, np.arange(start, stop), device)
        targets = labels[start:stop].to(device)
        scores = model(rows)
        share = loss_function(scores, targets) * ((stop - start) / n)
        share.backward()
        total += share.item()
        correct += int((scores.detach().argmax(1) == targets).sum())
    penalty = config.reg_strength * weight_penalty(model.weight_matrices(), config.regularization)
    penalty.backward()
    return total + penalty.item(), correct


def fit_lbfgs(
    model: MLP,
    config: LBFGSConfig,
    train_features,
    train_labels: torch.Tensor,
    val_features,
    val_labels: torch.Tensor,
    device: torch.device,
    max_iterations: int | None = None,
) -> list[EpochRecord]:
    """L-BFGS from the model's current weights; keeps the weights of the record with the best val accuracy
    (config.keep "best_val"), or the last ones ("last").

    Returns one EpochRecord per `record_every` iterations: epoch is the iteration count, train loss and
    accuracy those of the last evaluation (the accepted point, as a rule), learning_rate the line
    search's last step length. Stops at max_iterations (config.max_iterations unless given) or when
    the gradient or the loss stops changing. Without validation rows (the refit) it keeps the last weights.
    """
    model.to(device).train()
    parameters = list(model.parameters())
    limit = max_iterations or config.max_iterations
    optimizer = torch.optim.LBFGS(
        parameters,
        lr=1.0,
        max_iter=config.record_every,
        max_eval=config.record_every * 10,
        tolerance_grad=config.tolerance,
        tolerance_change=1e-9,
        history_size=config.history_size,
        line_search_fn="strong_wolfe",
    )
    last: dict = {}

    def closure():
        optimizer.zero_grad()
        loss, correct = streamed_objective(model, config, train_features, train_labels, device)
        last.update(loss=loss, correct=correct)
        return torch.tensor(loss)

    history: list[EpochRecord] = []
    best_accuracy, best_state = -1.0, None
    state = optimizer.state[parameters[0]]
    while state.get("n_iter", 0) < limit:
        optimizer.param_groups[0]["max_iter"] = min(config.record_every, limit - state.get("n_iter", 0))
        before = state.get("n_iter", 0)
        optimizer.step(closure)
        if not math.isfinite(last["loss"]):
            raise TrainingFailed(f"L-BFGS diverged at iteration {state.get('n_iter', 0)} with reg_strength {config.reg_strength:g}", "raise reg_strengths")
        done = state.get("n_iter", 0) - before
        if done == 0 and history:
            break  # converged at the start of this round: nothing new to record
        record = EpochRecord(state.get("n_iter", 0), last["loss"], last["correct"] / len(train_labels), evaluate(model, val_features, val_labels), float(state.get("t", 0.0)))
        history.append(record)
        if config.keep == "best_val" and (len(val_labels) == 0 or record.val_accuracy > best_accuracy):
            best_accuracy = record.val_accuracy
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if done < optimizer.param_groups[0]["max_iter"]:
            break  # the gradient or the loss stopped changing: converged
        if config.keep == "best_val" and config.val_patience and len(val_labels) and len(history) - 1 - history.index(best_record(history)) >= config.val_patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def lbfgs_path(
    configs: list[LBFGSConfig],
    model_config: MLPConfig,
    train_features,
    train_labels: torch.Tensor,
    val_features,
    val_labels: torch.Tensor,
    device: torch.device,
) -> tuple[Trial, list[Trial]]:
    """(best trial by val accuracy, every trial): one per reg_strength, largest first, each warm-started
    from the previous one's kept weights. A trial's best_epoch is the iteration count of its best record.

    The path stops at the first reg_strength that scores below the one before it: less regularization
    past that point overfits more (the rest of the grid is not tried, and the trials say so by their count).
    """
    torch.manual_seed(configs[0].seed)
    model = MLP(model_config)
    trials = []
    for config in sorted(configs, key=lambda c: -c.reg_strength):
        start = time.perf_counter()
        history = fit_lbfgs(model, config, train_features, train_labels, val_features, val_labels, device)
        chosen = kept_record(history, config.keep)
        trials.append(Trial(config, model_config, chosen.val_accuracy, chosen.epoch, time.perf_counter() - start, history, copy.deepcopy(model)))
        if len(trials) > 1 and trials[-1].val_accuracy < trials[-2].val_accuracy:
            break
    return max(trials, key=lambda trial: trial.val_accuracy), trials


def refit_lbfgs(chosen: Trial, features, labels: torch.Tensor, device: torch.device) -> tuple[MLP, list[EpochRecord]]:
    """The chosen reg_strength solved on `features` (train + validation), warm-started from the chosen
    trial's weights, for at most as many iterations as the trial's best record had."""
    model = copy.deepcopy(chosen.model)
    history = fit_lbfgs(model, chosen.config, features, labels, torch.zeros(0), labels[:0], device, max_iterations=chosen.best_epoch)
    return model, history
