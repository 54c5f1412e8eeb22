"""Stages `train@FEATURE_SET` (`linear`: every linear classifier) and `train_mlp@FEATURE_SET`: search on
val, refit the chosen settings, report test once, log one MLflow run per classifier.

Three parts, each testable alone: `load_training_data` (memory-mapped features, streaming standardization),
`fit_and_score_many` (search, refit, test predictions: the SVM and the softmax of a linear stage in one
pass over the rows), `write_results` (the DVC outputs). Minibatches are read from disk as the loop asks
for them, so memory is bounded by batch size, feature dimension and models.
"""
from __future__ import annotations

import gc

if __name__ == "__main__":
    # A stage imports about a million objects that live until it exits (torch, MLflow, torch.export's
    # tracer); with the default thresholds the collector walks them again and again, a fifth of the
    # start-up's CPU time. Young objects are still collected, every 50,000 allocations instead of 700.
    gc.set_threshold(50_000, 20, 100)

import argparse
import csv
import functools
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from models.augment import MirroredImageRows, augmentation
from models.figures import confusion_figure, confusion_matrix, learning_curve_figure, templates_figure
from models.mlp import MLPConfig, StandardizedClassifier
from models.precision import resolve_precision
from models.search import SearchSpace, candidates, refit_many, search_and_refit_many, search_many
from models.solvers import LBFGSConfig, lbfgs_path, refit_lbfgs
from models.training import (
    TrainConfig,
    TrainingFailed,
    can_train_together,
    choose_device,
    evaluate_many,
    fit_channel_standardization,
    fit_standardization,
    kept_record,
    predict,
    predict_many,
)
from pipeline import tracking
from pipeline.artifacts import (
    PREPARED_DIR,
    SPLITS,
    STATISTICS_CHUNK_ROWS,
    AppendedRows,
    ColumnConcatenation,
    StandardizedRows,
    extract_seconds,
    feature_previews,
    has_mirrored_rows,
    hold_rows,
    mirrored,
    open_feature_set,
    open_images,
    prepared_digest,
    read_labels,
    read_meta,
    train_dir,
)
from pipeline.engine import map_in_order
from pipeline.featurizer import save_featurizer
from pipeline.io import atomic_path, write_json
from pipeline.params import CLASSIFIERS, LINEAR_CLASSIFIERS, ParamsError, load_params
from pipeline.scores import per_class_accuracy
from pipeline.stage import run_stage

LEARNING_CURVE_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_accuracy"]
LEARNING_RATE_NOT_APPLICABLE = "not applicable (lbfgs)"
PREDICTION_COLUMNS = ["index", "actual", "predicted"]  # index: the image's row in data/prepared/test_images.npy


def write_csv(path, header: list[str], rows) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def linear_loss(classifier: str, svm_loss: str) -> str:
    """The models.losses name a linear classifier trains with: linear.svm_loss picks the SVM's."""
    if classifier == "svm":
        return "svm" if svm_loss == "hinge" else "squared_hinge"
    return classifier


def adds_mirrored_rows(requested: str, feature_set: str, extracted: bool) -> bool:
    """Whether a feature set's flips are its mirrored rows: asked for (augment) and extracted (extract.mirror)."""
    if "flip" not in requested.split("+"):
        return False
    if not extracted:
        print(f"augment {requested}: {feature_set} has no mirrored rows (extract.mirror is false), so none are added")
        return False
    return True


def with_mirrored_rows(members: list[str], split: str, labels: np.ndarray, mirror: bool) -> tuple[list, np.ndarray]:
    """(row sources, labels) of a split, followed by its mirrored rows (the same labels) when `mirror`.

    The mirrored rows are appended by index, never concatenated in memory.
    """
    if not mirror:
        return [open_feature_set(members, split)], labels
    return [open_feature_set(members, split), open_feature_set(members, mirrored(split))], np.concatenate([labels, labels])


@dataclass
class TrainingData:
    """A feature set as training reads it: row sources standardized as they are read, labels in memory.

    train / val include their mirrored rows when `augment: flip` uses them; `train_only` is the train
    split alone (what train_accuracy is scored on); `raw_train` the unstandardized rows (the model's input).
    """

    meta: dict
    feature_set: str
    members: list[str]
    mean: np.ndarray
    scale: np.ndarray
    train: StandardizedRows
    train_labels: torch.Tensor
    val: StandardizedRows
    val_labels: torch.Tensor
    refit: StandardizedRows  # train then val rows, for the refit of the chosen settings
    refit_labels: torch.Tensor
    train_only: StandardizedRows
    train_only_labels: torch.Tensor
    test: StandardizedRows
    test_labels: torch.Tensor
    raw_train: ColumnConcatenation
    augment_name: str
    augment: object
    raw_pixels: bool

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]


def load_training_data(members: list[str], feature_set: str, augment: str) -> TrainingData:
    """Open a feature set's splits, fit standardization in one streaming pass over train, decide the flips.

    Raw pixels share one mean and scale per colour channel (mirrored and shifted rows stay exactly
    standardized) and flip and shift batch by batch; other features flip by adding their mirrored rows.
    """
    meta = read_meta()
    image_shape = tuple(meta["image_shape"])
    raw_pixels = members == ["pixels"]
    raw_train = open_feature_set(members, "train")
    chunks = raw_train.batches(STATISTICS_CHUNK_ROWS)
    mean, scale = fit_channel_standardization(chunks, image_shape) if raw_pixels else fit_standardization(chunks)
    mirror = not raw_pixels and adds_mirrored_rows(augment, feature_set, has_mirrored_rows(members))
    augment_name = augment if raw_pixels else "flip" if mirror else "none"
    labels = {split: read_labels(split) for split in SPLITS}
    train_parts, train_labels = with_mirrored_rows(members, "train", labels["train"], mirror)
    val_parts, val_labels = with_mirrored_rows(members, "val", labels["val"], mirror)

    def standardized(parts: list) -> StandardizedRows:
        return StandardizedRows(parts[0] if len(parts) == 1 else AppendedRows(parts), mean, scale)

    hold_rows(train_parts + val_parts)  # read every step (train) or epoch (val): from memory, up to the budget

    return TrainingData(
        meta=meta,
        feature_set=feature_set,
        members=members,
        mean=mean,
        scale=scale,
        train=standardized(train_parts),
        train_labels=torch.from_numpy(train_labels),
        val=standardized(val_parts),
        val_labels=torch.from_numpy(val_labels),
        refit=standardized(train_parts + val_parts),
        refit_labels=torch.from_numpy(np.concatenate([train_labels, val_labels])),
        train_only=standardized([raw_train]),
        train_only_labels=torch.from_numpy(labels["train"]),
        test=standardized([open_feature_set(members, "test")]),
        test_labels=torch.from_numpy(labels["test"]),
        raw_train=raw_train,
        augment_name=augment_name,
        augment=augmentation(augment_name, image_shape) if raw_pixels else None,
        raw_pixels=raw_pixels,
    )


@dataclass
class Fitted:
    """What the search and the refit leave: the chosen trial, every trial, the final model, its test
    predictions, and its accuracy on the train split (None: not scored yet)."""

    best: object
    trials: list
    model: torch.nn.Module
    test_predictions: np.ndarray
    search_seconds: float
    train_seconds: float
    train_accuracy: float | None = None


def fit_and_score(data: TrainingData, configs: list, device: torch.device, refit_chosen: bool, engine: str = "local") -> Fitted:
    """fit_and_score_many for one classifier's candidates; raises its TrainingFailed."""
    (outcome,) = fit_and_score_many(data, [configs], device, refit_chosen, engine)
    if isinstance(outcome, TrainingFailed):
        raise outcome
    return outcome


def fit_and_score_many(data: TrainingData, groups: list[list], device: torch.device, refit_chosen: bool, engine: str = "local") -> list[Fitted | TrainingFailed]:
    """For each group of configurations (one per classifier): search them on val, refit the chosen one
    on train + val (when asked), predict test once; or the TrainingFailed that stopped it.

    The groups train together, each minibatch read once for all of them (an SVM's and a softmax's
    learning rates on the same rows: models.search.search_many, refit_many), where their minibatches
    are the same (one seed and batch size) and `engine` is local; with `ray` each trial is a Ray task
    (a GPU each when training on one) and the groups run one after another. The results are the same
    either way; each group's seconds are then an equal share of the joint training. Linear candidates
    to refit train beside their refits, in the search's pass (models.search.search_and_refit_many: a
    linear epoch is mostly reading rows, so that saves the refit's pass); with `ray`, a Ray task each,
    except lone ones, which gain nothing from a task and train together in this process.
    """
    if isinstance(groups[0][0][0], LBFGSConfig):
        return [_fitted_or_failure(fit_and_score_lbfgs, data, configs, device, refit_chosen) for configs in groups]
    flat = [candidate for configs in groups for candidate in configs]
    one_pass = refit_chosen and all(not model_config.hidden_sizes for _, model_config in flat)
    lone = all(len(configs) == 1 for configs in groups)  # a lone trial gains nothing from a Ray task: trained here with either engine
    together = (engine == "local" or (one_pass and lone)) and can_train_together([config for config, _ in flat], [model_config for _, model_config in flat])
    if len(groups) > 1 and not together:
        return [fit_and_score_many(data, [configs], device, refit_chosen, engine)[0] for configs in groups]
    map_trials = None  # local: in this process, trials that can train together in one pass over the rows
    if engine == "ray" and not (one_pass and lone):
        map_trials = functools.partial(map_in_order, engine=engine, description="search", unit="trial", gpus_per_task=1 if device.type == "cuda" else 0)
    start = time.perf_counter()
    if one_pass:
        # every candidate's refit trains in the search's pass over the rows, each row read once for all
        # (an MLP's epoch is compute, which a refit of the chosen one alone, stopped at its best epoch, saves)
        outcomes = search_and_refit_many(
            groups, data.train, data.train_labels, data.refit, data.refit_labels, data.val, data.val_labels, device, data.augment, class_names=data.class_names, map_trials=map_trials
        )
        search_seconds = time.perf_counter() - start
    else:
        searched = search_many(groups, data.train, data.train_labels, data.val, data.val_labels, device, data.augment, class_names=data.class_names, map_trials=map_trials)
        search_seconds = time.perf_counter() - start
        chosen = [outcome[0] for outcome in searched if not isinstance(outcome, TrainingFailed)]
        finals = iter(refit_many(chosen, data.refit, data.refit_labels, device, data.augment) if refit_chosen else [best.model for best in chosen])
        outcomes = []
        for outcome in searched:
            final = outcome if isinstance(outcome, TrainingFailed) else next(finals)
            outcomes.append(final if isinstance(final, TrainingFailed) else (*outcome, final))
    train_seconds = time.perf_counter() - start
    trained = [outcome for outcome in outcomes if not isinstance(outcome, TrainingFailed)]
    models = [model.cpu() for _, _, model in trained]
    predictions = iter(predict_many(models, data.test)) if models else iter(())
    train_accuracies = iter(evaluate_many(models, data.train_only, data.train_only_labels)) if models else iter(())
    share = len(groups)
    return [
        outcome
        if isinstance(outcome, TrainingFailed)
        else Fitted(outcome[0], outcome[1], outcome[2].cpu(), next(predictions).numpy(), search_seconds / share, train_seconds / share, next(train_accuracies))
        for outcome in outcomes
    ]


def _fitted_or_failure(fit, *args) -> Fitted | TrainingFailed:
    try:
        return fit(*args)
    except TrainingFailed as failed:
        return failed


def with_flipped_images(data: TrainingData, rows, labels: torch.Tensor) -> tuple:
    """(rows, labels) for a full-batch solver: raw pixels asked to flip get every image's mirror appended,
    the deterministic counterpart of SGD's random flips (other feature sets already hold their mirrored rows)."""
    parts = data.augment_name.split("+")
    if not data.raw_pixels or "flip" not in parts:
        return rows, labels
    return AppendedRows([rows, MirroredImageRows(rows, data.image_shape)]), torch.cat([labels, labels])


def fit_and_score_lbfgs(data: TrainingData, configs: list, device: torch.device, refit_chosen: bool) -> Fitted:
    """fit_and_score for solver: lbfgs: a warm-started path over reg_strengths on val, then a refit on
    train + val warm-started from the chosen trial's weights (models.solvers); runs in this process."""
    if "shift" in data.augment_name.split("+"):
        print(f"solver lbfgs: augment {data.augment_name} trains on fixed rows, so without random shifts (flips are mirrored rows)")
    start = time.perf_counter()
    train_rows, train_labels = with_flipped_images(data, data.train, data.train_labels)
    best, trials = lbfgs_path([config for config, _ in configs], configs[0][1], train_rows, train_labels, data.val, data.val_labels, device)
    search_seconds = time.perf_counter() - start
    model = best.model
    if refit_chosen:
        model, _ = refit_lbfgs(best, *with_flipped_images(data, data.refit, data.refit_labels), device)
    train_seconds = time.perf_counter() - start
    model = model.cpu()
    return Fitted(best, trials, model, predict(model, data.test).numpy(), search_seconds, train_seconds)


def score(fitted: Fitted, data: TrainingData, members: list[str], input_dim: int) -> dict:
    """The metrics dict: written to metrics.json and logged to MLflow, one source of truth."""
    test_labels = data.test_labels.numpy()
    return {
        "train_accuracy": round(fitted.train_accuracy if fitted.train_accuracy is not None else evaluate_many([fitted.model], data.train_only, data.train_only_labels)[0], 4),
        # the chosen trial's score on data it did not train on (the refit model has seen val)
        "val_accuracy": round(fitted.best.val_accuracy, 4),
        "test_accuracy": round(float((fitted.test_predictions == test_labels).mean()), 4),
        # the chosen trial's loss at the epoch (L-BFGS: iteration) whose weights it kept: its objective,
        # which seeds of a convex problem agree on (the convexity study)
        "train_loss": round(kept_record(fitted.best.history, fitted.best.config.keep).train_loss, 6),
        "train_seconds": round(fitted.train_seconds, 2),
        "search_seconds": round(fitted.search_seconds, 2),
        "n_trials": len(fitted.trials),
        "extract_seconds": extract_seconds(members),
        "feature_dim": int(input_dim),
        "n_parameters": fitted.model.n_parameters(),
        **per_class_accuracy(test_labels, fitted.test_predictions, data.class_names),
    }


def chosen_settings(fitted: Fitted, is_mlp: bool) -> dict:
    best = fitted.best
    if isinstance(best.config, LBFGSConfig):
        return {"solver": "lbfgs", "learning_rate": LEARNING_RATE_NOT_APPLICABLE, "reg_strength": best.config.reg_strength, "iterations": best.best_epoch}
    chosen = {"learning_rate": best.config.learning_rate, "reg_strength": best.config.reg_strength, "epochs": best.best_epoch}
    if is_mlp:
        chosen["hidden_sizes"] = best.model_config.hidden_sizes
    return chosen


def result_figures(fitted: Fitted, data: TrainingData, title: str) -> dict:
    """Confusion matrix, learning curve and, for raw pixels, the first layer's weights drawn as images."""
    matrix = confusion_matrix(data.test_labels.numpy(), fitted.test_predictions, len(data.class_names))
    figures = {"confusion_matrix.png": confusion_figure(matrix, data.class_names, title), "learning_curve.png": learning_curve_figure(fitted.best.history, title)}
    if data.raw_pixels:
        # weights act on standardized pixels; dividing by the scale gives each raw pixel's weight
        first_layer = fitted.model.weight_matrices()[0].detach().numpy() / data.scale
        if fitted.best.model_config.hidden_sizes:
            figures["first_layer_templates.png"] = templates_figure(first_layer[:40], data.image_shape, None, f"{title}: first 40 hidden units")
        else:
            figures["class_templates.png"] = templates_figure(first_layer, data.image_shape, data.class_names, f"{title}: one template per class")
    return figures


def write_results(out: Path, fitted: Fitted, data: TrainingData, chosen: dict, metrics: dict, run) -> None:
    """The DVC outputs of a training stage: curves, predictions, chosen settings, run ids, metrics (last)."""
    names = np.asarray(data.class_names)
    write_csv(
        out / "learning_curve.csv",
        LEARNING_CURVE_COLUMNS,
        [(r.epoch, round(r.train_loss, 5), round(r.train_accuracy, 4), round(r.val_accuracy, 4)) for r in fitted.best.history],
    )
    write_csv(
        out / "predictions.csv",
        PREDICTION_COLUMNS,
        zip(range(len(fitted.test_predictions)), names[data.test_labels.numpy()], names[fitted.test_predictions]),
    )
    write_json(out / "chosen.json", chosen)
    write_json(out / "run.json", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "dataset": data.meta["dataset"]})
    write_json(out / "metrics.json", metrics)


def write_placeholder(classifier: str, feature_set: str, metrics: dict, run_ids: dict) -> None:
    """A training stage's outputs for a model it did not train (empty curves and choice): the stage's
    outputs exist whatever happened, and metrics.json says why ({"status": ..., "reason": ...})."""
    out = train_dir(classifier, feature_set)
    write_csv(out / "learning_curve.csv", LEARNING_CURVE_COLUMNS, [])
    write_csv(out / "predictions.csv", PREDICTION_COLUMNS, [])
    write_json(out / "chosen.json", {})
    write_json(out / "run.json", run_ids)
    write_json(out / "metrics.json", metrics)


def record_failure(stage: str, classifier: str, feature_set: str, run, dataset: str, failure: TrainingFailed) -> None:
    """A model that could not train ends as failed, not as an error: the MLflow run FAILED with the reason,
    outputs that say so (metrics.json {"status": "failed", "reason": ...}, empty curves) and one line on
    stderr; the stage then exits with status 0, so `dvc repro` goes on with the other stages and the
    report lists this one."""
    metrics = {"status": "failed", "reason": str(failure)}
    tracking.log_failed(metrics)
    write_placeholder(classifier, feature_set, metrics, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "dataset": dataset})
    print(f"featurebench train: {classifier} on {feature_set} in {stage} failed (the other stages go on): {failure}", file=sys.stderr)


class FailureRecorded(Exception):
    """Raised inside a training run whose failure record_failure wrote, so that the run's group fails too."""


@dataclass
class Plan:
    """One classifier's part of a training stage: what it searches and what its MLflow run records."""

    classifier: str
    configs: list
    base_model: MLPConfig
    run_params: dict

    @property
    def is_mlp(self) -> bool:
        return self.classifier == "mlp"


def plan_classifier(classifier: str, params, section, data: TrainingData, device: torch.device, refit_chosen: bool) -> Plan:
    """The candidates a classifier searches on this feature set (its section's settings) and its run's params."""
    class_names = data.class_names
    is_mlp = classifier == "mlp"
    base_model = MLPConfig(
        input_dim=data.train.dim,
        n_classes=len(class_names),
        activation=section.activation if is_mlp else params.mlp.activation,
        dropout=section.dropout if is_mlp else 0.0,
        batchnorm=section.batchnorm if is_mlp else False,
    )
    base = TrainConfig(
        loss=section.loss if is_mlp else linear_loss(classifier, section.svm_loss),
        optimizer=section.optimizer,
        regularization=section.regularization,
        batch_size=section.batch_size,
        momentum=section.momentum,
        lr_schedule=section.lr_schedule,
        patience=section.patience,
        keep=section.keep,
        precision="fp32",  # resolved below, once the device is known
        seed=section.training_seed(params.seed),
    )
    space = SearchSpace(
        learning_rates=list(section.learning_rates),
        reg_strengths=list(section.reg_strengths),
        hidden_sizes=section.hidden_size_options if is_mlp else [[]],
        epochs=section.epoch_options,
    )
    first_layer_width = (section.hidden_size_options[0][:1] if is_mlp else []) or [len(class_names)]
    base.precision = resolve_precision(section.precision, device, section.batch_size, base_model.input_dim, first_layer_width[0])
    run_params = {
        "classifier": classifier,
        "feature_set": data.feature_set,
        "model": {k: v for k, v in asdict(base_model).items() if k not in ("input_dim", "n_classes", "hidden_sizes")},
        "search": {**asdict(space), "method": section.search, "budget": section.budget, "refit": refit_chosen, "refit_setting": section.refit},
        "train": {k: v for k, v in asdict(base).items() if k not in ("learning_rate", "reg_strength", "epochs")},
        "augment": data.augment_name,
        "device": str(device),
    }
    if not is_mlp and section.solver == "lbfgs":
        lbfgs = LBFGSConfig(loss=base.loss, regularization=section.regularization, max_iterations=section.max_iterations, keep=section.keep, seed=section.training_seed(params.seed))
        run_params["search"].update(learning_rates=LEARNING_RATE_NOT_APPLICABLE, epochs="not applicable (lbfgs: max_iterations)")
        run_params["train"] = {k: v for k, v in asdict(lbfgs).items() if k != "reg_strength"}
        configs = [(replace(lbfgs, reg_strength=strength), base_model) for strength in section.reg_strengths]
    else:
        configs = candidates(space, base, base_model, section.search, section.budget, section.training_seed(params.seed))
    return Plan(classifier, configs, base_model, run_params)


def log_and_write(planned: Plan, fitted: Fitted, data: TrainingData, run) -> dict:
    """Everything a trained model leaves: its MLflow run's trials, curves, choice, metrics, figures and
    deployable model, then the DVC outputs (metrics.json last). Returns the metrics."""
    feature_set, members = data.feature_set, data.members
    tracking.log_trials(fitted.trials)
    tracking.log_history(fitted.best.history)
    chosen = chosen_settings(fitted, planned.is_mlp)
    tracking.log_chosen(chosen)
    metrics = score(fitted, data, members, planned.base_model.input_dim)
    dataset = data.meta["dataset"]
    figures = result_figures(fitted, data, f"{planned.classifier} on {feature_set} ({dataset})")
    deployable = StandardizedClassifier(torch.from_numpy(data.mean), torch.from_numpy(data.scale), fitted.model).eval()
    with tempfile.TemporaryDirectory() as scratch:
        featurizer = save_featurizer(Path(scratch), feature_set, members, data.meta)
        tracking.log_final(metrics, figures, deployable, input_example=data.raw_train.rows([0, 1]), featurizer_dir=featurizer, pictures=feature_previews(members))
    write_results(train_dir(planned.classifier, feature_set), fitted, data, chosen, metrics, run)
    print(f"{planned.classifier} on {feature_set}: test accuracy {metrics['test_accuracy']:.4f} ({chosen})")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument(
        "classifier",
        choices=(*CLASSIFIERS, "linear"),
        help="linear: every classifier of linear.classifiers, trained together (each minibatch read once for all)",
    )
    parser.add_argument("feature_set", help="an extractor name or a '+'-joined combination, e.g. hog+color_hist")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stage", default=None, help="DVC stage name, recorded as a tag")
    args = parser.parse_args()
    params = load_params(args.params)
    is_mlp = args.classifier == "mlp"
    section = params.mlp if is_mlp else params.linear
    if args.feature_set not in section.feature_sets:
        raise ParamsError(f"feature set {args.feature_set!r} is not listed in {'mlp' if is_mlp else 'linear'}.feature_sets")
    classifiers = list(params.linear.classifiers) if args.classifier == "linear" else [args.classifier]
    members = params.feature_set_members(args.feature_set)
    section = section.for_feature_set(args.feature_set)
    stage = args.stage or (f"train_mlp@{args.feature_set}" if is_mlp else f"train@{args.feature_set}")

    data = load_training_data(members, args.feature_set, section.augment)
    device = choose_device(params.device)
    refit_chosen = section.refits(len(data.train_only))
    plans = [plan_classifier(classifier, params, section, data, device, refit_chosen) for classifier in classifiers]
    dataset = data.meta["dataset"]
    data_input = tracking.DataInput(dataset, prepared_digest(), str(PREPARED_DIR.resolve()), open_images("train"), read_labels("train"))
    outcomes, failed = None, False
    for each in plans:
        run_tags = {"classifier": each.classifier, "feature_set": args.feature_set, "dvc_stage": stage}
        try:
            with tracking.training_run(dataset=dataset, run_name=f"{each.classifier}-{args.feature_set}", tags=run_tags, params=each.run_params, data=data_input) as run:
                if outcomes is None:  # in the first run: it is RUNNING (and a Ctrl-C marks it FAILED) while they all train
                    outcomes = dict(zip(classifiers, fit_and_score_many(data, [planned.configs for planned in plans], device, refit_chosen, params.engine)))
                outcome = outcomes[each.classifier]
                if isinstance(outcome, TrainingFailed):
                    record_failure(stage, each.classifier, args.feature_set, run, dataset, outcome)
                    raise FailureRecorded  # the run group's parent is marked FAILED too
                log_and_write(each, outcome, data, run)
        except FailureRecorded:
            failed = True
    if args.classifier == "linear":
        for classifier in LINEAR_CLASSIFIERS:
            if classifier not in classifiers:  # dvc.yaml names both classifiers' outputs
                reason = f"{classifier} is not listed in linear.classifiers"
                write_placeholder(classifier, args.feature_set, {"status": "not trained", "reason": reason}, {})
    if failed:
        raise SystemExit(0)


if __name__ == "__main__":
    run_stage(main, "train")
