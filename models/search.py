"""Choose hyperparameters on the validation split, then refit the chosen ones on train + validation.

Candidates come from a grid (every combination) or a seeded random sample of it, capped by a budget
of trials; each trial starts from the same seeded weights, so they differ only in their settings.
When every learning rate diverges, the search backs off below the smallest one before it gives up,
and a search that still fails names the cause it can see in the data (see `diagnose`).
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from models.mlp import MLP, MLPConfig
from models.training import EpochRecord, TrainConfig, TrainingFailed, can_train_together, kept_record, train_together

SEARCH_METHODS = ("grid", "random")
BACKOFF_DIVISORS = (10, 100)  # the smallest searched learning rate is divided by these, in turn, when all diverge
HUGE_FEATURE = 1e3  # a standardized column of n train rows stays within sqrt(n) of 0; beyond this, its std was tiny


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
    best_epoch: int  # the epoch whose weights `model` holds: the best on validation, or the last (config.keep)
    seconds: float
    history: list[EpochRecord]
    model: MLP
    learning_rate_divisor: int = 1  # > 1: every searched rate diverged; this is the smallest one divided by it


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


def run_trial(shared: tuple, candidate: tuple[TrainConfig, MLPConfig]) -> Trial | None:
    """One trial from seeded weights; None when training diverged (a learning rate too high for this
    feature set: the other points decide).

    shared : (train features, train labels, val features, val labels, device, augment, progress),
    the same for every trial, so a parallel map sends them to each worker once.
    """
    return run_trials_together(shared, [candidate])[0]


def run_trials_together(shared: tuple, candidates: list[tuple[TrainConfig, MLPConfig]]) -> list[Trial | None]:
    """[run_trial(shared, candidate) for each candidate], trained in lockstep (models.training.train_together):
    one read of each minibatch feeds every trial, with the same results. Each trial's `seconds` is an
    equal share of the joint training's."""
    train_features, train_labels, val_features, val_labels, device, augment, progress = shared
    models = []
    for config, model_config in candidates:
        torch.manual_seed(config.seed)
        models.append(MLP(model_config))
    start = time.perf_counter()
    configs = [config for config, _ in candidates]
    outcomes = train_together(models, configs, train_features, train_labels, val_features, val_labels, device=device, progress=progress, augment=augment)
    seconds = (time.perf_counter() - start) / len(candidates)
    return [
        None if isinstance(history, TrainingFailed) else _trial(config, model_config, history, model, seconds)
        for (config, model_config), model, history in zip(candidates, models, outcomes)
    ]


def _trial(config: TrainConfig, model_config: MLPConfig, history: list[EpochRecord], model: MLP, seconds: float) -> Trial:
    chosen = kept_record(history, config.keep)
    return Trial(config, model_config, chosen.val_accuracy, chosen.epoch, seconds, history, model)


def search(
    configs: list[tuple[TrainConfig, MLPConfig]],
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
    class_names: list[str] | None = None,
    map_trials: Callable | None = None,
) -> tuple[Trial, list[Trial]]:
    """(best trial by validation accuracy, all trials that did not diverge).

    map_trials(run_trial, configs, shared=...) runs the trials elsewhere and returns them in the
    configs' order (pipeline.engine.map_in_order with engine: ray, in parallel). Without it they run in
    this process, together in one pass over the rows where models.training.can_train_together allows,
    else one after another; the results are the same every way.

    When every configuration diverges, those with the smallest learning rate are tried again with it
    divided by 10, then by 100; if they diverge too, TrainingFailed names the cause `diagnose` finds.
    """
    if not configs:
        raise ValueError("search needs at least one configuration to try")
    data = (train_features, train_labels, val_features, val_labels)
    return _best_or_back_off(_trials(configs, data, device, augment, progress, map_trials), configs, data, device, augment, progress, class_names, map_trials)


def search_many(
    groups: list[list[tuple[TrainConfig, MLPConfig]]],
    train_features,
    train_labels: torch.Tensor,
    val_features,
    val_labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
    class_names: list[str] | None = None,
    map_trials: Callable | None = None,
) -> list[tuple[Trial, list[Trial]] | TrainingFailed]:
    """search() of each group of candidates (one group per classifier: an SVM's and a softmax's learning
    rates), in one pass over the rows for all of them where they can train together.

    Each group's outcome is what search() would return for it alone (its best trial and its trials), or
    the TrainingFailed search() would raise; a group whose every trial diverged backs off on its own.
    With `map_trials` (search()'s), the groups are searched one after another.
    """
    data = (train_features, train_labels, val_features, val_labels)
    flat = [candidate for group in groups for candidate in group]
    if map_trials is not None or not can_train_together([config for config, _ in flat], [model_config for _, model_config in flat]):
        return [_searched_or_failure(group, data, device, augment, progress, class_names, map_trials, None) for group in groups]
    outcomes, results = run_trials_together((*data, device, augment, progress), flat), []
    for group in groups:
        trials, outcomes = [trial for trial in outcomes[: len(group)] if trial is not None], outcomes[len(group) :]
        results.append(_searched_or_failure(group, data, device, augment, progress, class_names, None, trials))
    return results


def _searched_or_failure(group, data, device, augment, progress, class_names, map_trials, trials: list[Trial] | None):
    """A group's (best trial, trials) from its `trials` (None: train them now), or the TrainingFailed of its search."""
    try:
        if trials is None:
            trials = _trials(group, data, device, augment, progress, map_trials)
        return _best_or_back_off(trials, group, data, device, augment, progress, class_names, map_trials)
    except TrainingFailed as failed:
        return failed


def _best_or_back_off(trials: list[Trial], configs, data, device, augment, progress, class_names, map_trials) -> tuple[Trial, list[Trial]]:
    """search()'s answer from the trials that did not diverge, backing off below the smallest rate when none did."""
    train_features, train_labels = data[:2]
    smallest = min(config.learning_rate for config, _ in configs)
    tried = sorted({config.learning_rate for config, _ in configs}, reverse=True)
    for divisor in BACKOFF_DIVISORS:
        if trials:
            break
        rate = smallest / divisor
        print(f"training diverged for every learning rate tried ({', '.join(f'{r:g}' for r in tried)}); backing off to {rate:g} (the smallest / {divisor})")
        tried.append(rate)
        backed_off = [(replace(config, learning_rate=rate), model_config) for config, model_config in configs if config.learning_rate == smallest]
        trials = _trials(backed_off, data, device, augment, progress, map_trials, learning_rate_divisor=divisor)
    if not trials:
        rates = ", ".join(f"{rate:g}" for rate in tried)
        raise failure(f"training diverged for every learning rate tried ({rates})", train_features, train_labels, configs[0][1].n_classes, class_names, tried[-1])
    return max(trials, key=lambda trial: trial.val_accuracy), trials


def _trials(configs, data, device, augment, progress, map_trials: Callable | None, learning_rate_divisor: int = 1) -> list[Trial]:
    """One trial per configuration that trains without diverging, in the configs' order."""
    outcomes = each_candidate(run_trial, run_trials_together, configs, (*data, device, augment, progress), map_trials)
    trials = [trial for trial in outcomes if trial is not None]
    for trial in trials:
        trial.learning_rate_divisor = learning_rate_divisor
    return trials


def each_candidate(alone: Callable, together: Callable, configs: list, shared: tuple, map_trials: Callable | None) -> list:
    """[alone(shared, candidate) for each candidate]: through map_trials (elsewhere: Ray tasks), else in
    one pass, together(shared, configs), where they can train together, else one after another."""
    if map_trials is not None:
        return list(map_trials(alone, configs, shared=shared))
    if can_train_together([config for config, _ in configs], [model_config for _, model_config in configs]):
        return together(shared, configs)
    return [alone(shared, candidate) for candidate in configs]


def diagnose(features: torch.Tensor, labels: torch.Tensor, n_classes: int, class_names: list[str] | None = None) -> list[tuple[str, str]]:
    """(cause, fix) of each problem in standardized training data that no learning rate gets past.

    features : (n, d) float32, standardized: a tensor, or a row source (anything with len() and
    rows(indices)); labels : (n,) int64. Looks for values that are NaN or infinite, values beyond
    HUGE_FEATURE (columns with almost no spread on the train split, divided by a tiny standard
    deviation) and classes without a training row. Read in chunks: no copy of `features`.
    """
    non_finite = largest = torch.zeros(0)  # per column, once the first chunk gives the width
    for chunk in _row_chunks(features):
        finite = torch.isfinite(chunk)
        counts, sizes = (~finite).sum(0), torch.where(finite, chunk.abs(), torch.zeros(())).amax(0)
        non_finite, largest = (counts, sizes) if not len(largest) else (non_finite + counts, torch.maximum(largest, sizes))
    problems = []
    if non_finite.any():
        columns = torch.nonzero(non_finite).flatten().tolist()
        problems.append(
            (
                f"the training features hold {_count(int(non_finite.sum()), 'NaN or infinite value')} in {_count(len(columns), 'column')} ({_some(columns)})",
                "fix the extractor that gives them, then rerun `dvc repro`",
            )
        )
    huge = torch.nonzero(largest > HUGE_FEATURE).flatten().tolist()
    if huge:
        problems.append(
            (
                f"standardized training features reach |x| = {largest.max().item():.3g} in {_count(len(huge), 'column')} ({_some(huge)}): "
                "columns with almost no spread on the train split, divided by a tiny standard deviation",
                "change the extractor's settings so those columns vary on the train split (for a plain background: fewer color_hist bins), "
                "or leave that extractor out of the feature set",
            )
        )
    counts = torch.bincount(labels.cpu(), minlength=n_classes)
    empty = [class_names[i] if class_names else str(i) for i in torch.nonzero(counts == 0).flatten().tolist()]
    if empty:
        names = ", ".join(repr(name) for name in empty)
        problems.append((f"class {names} has no training rows" if len(empty) == 1 else f"classes {names} have no training rows", "add images to their folders, or remove the folders"))
    return problems


def _row_chunks(features, size: int = 4096):
    """(<= size, d) float32 CPU tensors of `features`: a tensor, or a row source read with rows(indices)."""
    for start in range(0, len(features), size):
        if isinstance(features, torch.Tensor):
            yield features[start : start + size].cpu().float()
        else:
            yield torch.as_tensor(features.rows(np.arange(start, min(start + size, len(features))))).cpu().float()


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _some(columns: list[int], shown: int = 5) -> str:
    return ", ".join(map(str, columns[:shown])) + (f" and {len(columns) - shown} more" if len(columns) > shown else "")


def failure(what: str, features, labels, n_classes: int, class_names: list[str] | None, last_rate: float) -> TrainingFailed:
    """TrainingFailed for `what`, naming what `diagnose` finds; without a finding, the fix is a lower learning rate."""
    problems = diagnose(features, labels, n_classes, class_names)
    if not problems:
        return TrainingFailed(what, f"lower learning_rates below {last_rate:g}")
    return TrainingFailed(f"{what}: {'; '.join(cause for cause, _ in problems)}", "; ".join(fix for _, fix in problems))


def search_and_refit(
    candidate: tuple[TrainConfig, MLPConfig],
    train_features,
    train_labels: torch.Tensor,
    refit_features,
    refit_labels: torch.Tensor,
    val_features,
    val_labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
    class_names: list[str] | None = None,
) -> tuple[Trial, list[Trial], MLP]:
    """search() and refit() of a single candidate in one pass over the rows: (its trial, [its trial], its refit).

    With one candidate there is nothing to choose but the epoch, so its refit need not wait for the
    search: it trains beside the trial on the same minibatches of `refit_features` (train + validation,
    the train rows first, as many as `train_features` has), learning from all of their rows while the
    trial learns from their train rows (models.training.train_together's twins), and keeps its weights
    of the trial's kept epoch. Each minibatch is read once for both: on CIFAR-10's `bovw` rows 1.16x
    faster than the search then the refit (tests/benchmarks/bench_joint_refit.py), the refit's weights
    the same to float32 rounding (the two learn from one product, models.training.LinearStack).
    A trial that diverges goes the long way (search's back-off, then refit).
    """
    (outcome,) = search_and_refit_many([[candidate]], train_features, train_labels, refit_features, refit_labels, val_features, val_labels, device, augment, progress, class_names)
    if isinstance(outcome, TrainingFailed):
        raise outcome
    return outcome


def search_and_refit_many(
    groups: list[list[tuple[TrainConfig, MLPConfig]]],
    train_features,
    train_labels: torch.Tensor,
    refit_features,
    refit_labels: torch.Tensor,
    val_features,
    val_labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
    class_names: list[str] | None = None,
    map_trials: Callable | None = None,
) -> list[tuple[Trial, list[Trial], MLP] | TrainingFailed]:
    """search() then refit() of each group of linear candidates (an SVM's learning rates, a softmax's),
    every candidate trained beside its refit (search_and_refit's twin), each group keeping the twin of
    its best trial: in one pass over the rows for all of them where they can train together.

    A linear epoch is mostly reading rows, so the twins of the candidates that lose cost little beside
    the refit pass they save (tests/benchmarks/bench_joint_refit.py --whole-stage). map_trials (search()'s)
    trains each candidate and its twin elsewhere, with the same results. Each group's outcome is (best
    trial, its trials, the best's refit), or the TrainingFailed search() or refit() would raise; a group
    whose every trial diverged goes the long way (search's back-off, then refit).
    """
    flat = [candidate for group in groups for candidate in group]
    shared = (len(train_features), refit_features, refit_labels, val_features, val_labels, device, augment, progress)
    pairs, results = each_candidate(run_trial_and_refit, _trials_and_refits, flat, shared, map_trials), []
    for group in groups:
        mine, pairs = pairs[: len(group)], pairs[len(group) :]
        trials = [(trial, refitted) for trial, refitted in mine if trial is not None]
        if not trials:
            data = (train_features, train_labels, val_features, val_labels)
            results.append(_searched_then_refit(group, data, refit_features, refit_labels, device, augment, progress, class_names, map_trials))
            continue
        best, refitted = max(trials, key=lambda pair: pair[0].val_accuracy)  # the first of equals, as search()
        if isinstance(refitted, TrainingFailed):
            results.append(failure(refitted.reason, refit_features, refit_labels, best.model_config.n_classes, class_names, best.config.learning_rate))
        else:
            results.append((best, [trial for trial, _ in trials], refitted))
    return results


def run_trial_and_refit(shared: tuple, candidate: tuple[TrainConfig, MLPConfig]) -> tuple[Trial | None, MLP | TrainingFailed]:
    """One candidate beside its refit, as search_and_refit_many trains it: (its trial, None when it
    diverged; its refit, or the refit's TrainingFailed).

    shared : (number of train rows, train + validation features, their labels, val features, val labels,
    device, augment, progress), the same for every candidate.
    """
    return _trials_and_refits(shared, [candidate])[0]


def _trials_and_refits(shared: tuple, flat: list[tuple[TrainConfig, MLPConfig]]) -> list[tuple[Trial | None, MLP | TrainingFailed]]:
    train_rows, refit_features, refit_labels, val_features, val_labels, device, augment, progress = shared
    models, twins = [], []
    for config, model_config in flat:
        torch.manual_seed(config.seed)
        models.append(MLP(model_config))
        torch.manual_seed(config.seed)
        twins.append(MLP(model_config))  # the weights refit() would start from
    start = time.perf_counter()
    configs = [config for config, _ in flat]
    outcomes = train_together(models, configs, refit_features, refit_labels, val_features, val_labels, device, progress, augment, twins=twins, train_rows=train_rows)
    seconds = (time.perf_counter() - start) / len(flat)
    return [
        (
            None if isinstance(history, TrainingFailed) else _trial(config, model_config, history, model, seconds),
            twin_history if isinstance(twin_history, TrainingFailed) else twin,
        )
        for (config, model_config), model, twin, history, twin_history in zip(flat, models, twins, outcomes[: len(flat)], outcomes[len(flat) :])
    ]


def _searched_then_refit(group, data, refit_features, refit_labels, device, augment, progress, class_names, map_trials) -> tuple[Trial, list[Trial], MLP] | TrainingFailed:
    """The long way for one group: its search (backing off when every rate diverges), then the best's refit."""
    searched = _searched_or_failure(group, data, device, augment, progress, class_names, map_trials, None)
    if isinstance(searched, TrainingFailed):
        return searched
    best, trials = searched
    (refitted,) = refit_many([best], refit_features, refit_labels, device, augment, progress)
    return refitted if isinstance(refitted, TrainingFailed) else (best, trials, refitted)


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
    (outcome,) = _refits([chosen], features, labels, device, augment, progress)
    if isinstance(outcome, TrainingFailed):
        raise outcome
    return outcome


def refit_many(
    chosen: list[Trial],
    features,
    labels: torch.Tensor,
    device: torch.device,
    augment: Callable | None = None,
    progress: bool = True,
) -> list[MLP | TrainingFailed]:
    """refit() of each chosen trial (an SVM's and a softmax's), in one pass over the rows where they can
    train together: each model what refit() would give alone (to float32 rounding, linear models sharing
    one product), or the TrainingFailed it would raise."""
    return [outcome if isinstance(outcome, TrainingFailed) else outcome[0] for outcome in _refits(chosen, features, labels, device, augment, progress)]


def _refits(chosen: list[Trial], features, labels, device, augment, progress) -> list[tuple[MLP, list[EpochRecord]] | TrainingFailed]:
    configs = [replace(trial.config, patience=0) for trial in chosen]
    if not can_train_together(configs, [trial.model_config for trial in chosen]):
        return [_refits([trial], features, labels, device, augment, progress)[0] for trial in chosen]
    models = []
    for config, trial in zip(configs, chosen):
        torch.manual_seed(config.seed)
        models.append(MLP(trial.model_config))
    empty = torch.zeros(0), labels[:0]  # no validation rows: `features` may be a row source, not a tensor
    histories = train_together(
        models, configs, features, labels, *empty, device=device, progress=progress, augment=augment, stop_after=[trial.best_epoch for trial in chosen]
    )
    outcomes = []
    for config, trial, model, history in zip(configs, chosen, models, histories):
        if isinstance(history, TrainingFailed):
            what = f"the refit on train + validation diverged with learning_rate {config.learning_rate:g}"
            outcomes.append(failure(what, features, labels, trial.model_config.n_classes, None, config.learning_rate))
        else:
            outcomes.append((model, history))
    return outcomes
