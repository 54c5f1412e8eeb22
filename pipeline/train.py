"""Stage `train@CLASSIFIER-FEATURE_SET`: search on val, refit the chosen settings, report test once, log to MLflow.

Three parts, each testable alone: `load_training_data` (memory-mapped features, streaming standardization),
`fit_and_score` (search, refit, test predictions), `write_results` (the DVC outputs). Minibatches are read
from disk as the loop asks for them, so memory is bounded by batch size, feature dimension and model.
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
from contextlib import contextmanager
from pathlib import Path
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from models.augment import MirroredImageRows, augmentation
from models.figures import confusion_figure, confusion_matrix, learning_curve_figure, templates_figure
from models.mlp import MLPConfig, StandardizedClassifier
from models.precision import resolve_precision
from models.search import SearchSpace, candidates, refit, search, search_and_refit
from models.solvers import LBFGSConfig, lbfgs_path, refit_lbfgs
from models.training import TrainConfig, TrainingFailed, choose_device, evaluate, fit_channel_standardization, fit_standardization, kept_record, predict
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
from pipeline.params import CLASSIFIERS, ParamsError, load_params
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
    """What the search and the refit leave: the chosen trial, every trial, the final model, its test predictions."""

    best: object
    trials: list
    model: torch.nn.Module
    test_predictions: np.ndarray
    search_seconds: float
    train_seconds: float


def fit_and_score(data: TrainingData, configs: list, device: torch.device, refit_chosen: bool, engine: str = "local") -> Fitted:
    """Search the configurations on val, refit the chosen one on train + val (when asked), predict test once.

    engine : where the trials run (pipeline.engine): one Ray task each with `ray` (a GPU each when
    training on one); with `local`, in this process, together where they can (models.search). The
    trials' results, and so the choice, are the same either way. A linear model's lone candidate trains
    beside its refit in one pass, in this process (models.search.search_and_refit: a lone trial gains
    nothing from a Ray task, and the pass reads each row once for both).
    """
    if isinstance(configs[0][0], LBFGSConfig):
        return fit_and_score_lbfgs(data, configs, device, refit_chosen)
    start = time.perf_counter()
    if refit_chosen and len(configs) == 1 and not configs[0][1].hidden_sizes:
        # a linear model with nothing to choose between: its refit trains in the search's pass over the rows
        # (each row read once for both; an MLP's epoch is compute, which a refit stopped at the best epoch saves)
        best, trials, model = search_and_refit(
            configs[0], data.train, data.train_labels, data.refit, data.refit_labels, data.val, data.val_labels, device, data.augment, class_names=data.class_names
        )
        search_seconds = time.perf_counter() - start
    else:
        map_trials = None  # local: in this process, trials that can train together in one pass over the rows
        if engine == "ray":
            map_trials = functools.partial(map_in_order, engine=engine, description="search", unit="trial", gpus_per_task=1 if device.type == "cuda" else 0)
        best, trials = search(
            configs, data.train, data.train_labels, data.val, data.val_labels, device, augment=data.augment, class_names=data.class_names, map_trials=map_trials
        )
        search_seconds = time.perf_counter() - start
        model = best.model
        if refit_chosen:
            model, _ = refit(best, data.refit, data.refit_labels, device, augment=data.augment)
    train_seconds = time.perf_counter() - start
    model = model.cpu()
    return Fitted(best, trials, model, predict(model, data.test).numpy(), search_seconds, train_seconds)


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
        "train_accuracy": round(evaluate(fitted.model, data.train_only, data.train_only_labels), 4),
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


@contextmanager
def failure_recorded(stage: str, classifier: str, feature_set: str, run, dataset: str):
    """A TrainingFailed inside ends the stage as failed, not as an error: the MLflow run FAILED with the
    reason, outputs that say so (metrics.json {"status": "failed", "reason": ...}, empty curves), one line
    on stderr, and exit status 0, so `dvc repro` goes on with the other stages and the report lists this one.
    """
    try:
        yield
    except TrainingFailed as failure:
        metrics = {"status": "failed", "reason": str(failure)}
        tracking.log_failed(metrics)
        out = train_dir(classifier, feature_set)
        write_csv(out / "learning_curve.csv", LEARNING_CURVE_COLUMNS, [])
        write_csv(out / "predictions.csv", PREDICTION_COLUMNS, [])
        write_json(out / "chosen.json", {})
        write_json(out / "run.json", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "dataset": dataset})
        write_json(out / "metrics.json", metrics)
        print(f"featurebench train: {stage} failed (the other stages go on): {failure}", file=sys.stderr)
        raise SystemExit(0) from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument("classifier", choices=CLASSIFIERS)
    parser.add_argument("feature_set", help="an extractor name or a '+'-joined combination, e.g. hog+color_hist")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stage", default=None, help="DVC stage name, recorded as a tag")
    args = parser.parse_args()
    params = load_params(args.params)
    section = params.mlp if args.classifier == "mlp" else params.linear
    if args.feature_set not in section.feature_sets:
        raise ParamsError(f"feature set {args.feature_set!r} is not listed in {'mlp' if args.classifier == 'mlp' else 'linear'}.feature_sets")
    members = params.feature_set_members(args.feature_set)
    section = section.for_feature_set(args.feature_set)

    data = load_training_data(members, args.feature_set, section.augment)
    class_names = data.class_names
    is_mlp = args.classifier == "mlp"
    base_model = MLPConfig(
        input_dim=data.train.dim,
        n_classes=len(class_names),
        activation=section.activation if is_mlp else params.mlp.activation,
        dropout=section.dropout if is_mlp else 0.0,
        batchnorm=section.batchnorm if is_mlp else False,
    )
    base = TrainConfig(
        loss=section.loss if is_mlp else linear_loss(args.classifier, section.svm_loss),
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
    device = choose_device(params.device)
    first_layer_width = (section.hidden_size_options[0][:1] if is_mlp else []) or [len(class_names)]
    base.precision = resolve_precision(section.precision, device, section.batch_size, base_model.input_dim, first_layer_width[0])
    stage = args.stage or f"train@{args.classifier}-{args.feature_set}"
    run_tags = {"classifier": args.classifier, "feature_set": args.feature_set, "dvc_stage": stage}
    refit_chosen = section.refits(len(data.train_only))
    run_params = {
        "classifier": args.classifier,
        "feature_set": args.feature_set,
        "model": {k: v for k, v in asdict(base_model).items() if k not in ("input_dim", "n_classes", "hidden_sizes")},
        "search": {**asdict(space), "method": section.search, "budget": section.budget, "refit": refit_chosen, "refit_setting": section.refit},
        "train": {k: v for k, v in asdict(base).items() if k not in ("learning_rate", "reg_strength", "epochs")},
        "augment": data.augment_name,
        "device": str(device),
    }
    solver = "sgd" if is_mlp else section.solver
    if solver == "lbfgs":
        lbfgs = LBFGSConfig(loss=base.loss, regularization=section.regularization, max_iterations=section.max_iterations, keep=section.keep, seed=section.training_seed(params.seed))
        run_params["search"].update(learning_rates=LEARNING_RATE_NOT_APPLICABLE, epochs="not applicable (lbfgs: max_iterations)")
        run_params["train"] = {k: v for k, v in asdict(lbfgs).items() if k != "reg_strength"}
    dataset = data.meta["dataset"]
    data_input = tracking.DataInput(dataset, prepared_digest(), str(PREPARED_DIR.resolve()), open_images("train"), read_labels("train"))
    with (
        tracking.training_run(dataset=dataset, run_name=f"{args.classifier}-{args.feature_set}", tags=run_tags, params=run_params, data=data_input) as run,
        failure_recorded(stage, args.classifier, args.feature_set, run, dataset),
    ):
        if solver == "lbfgs":
            configs = [(replace(lbfgs, reg_strength=strength), base_model) for strength in section.reg_strengths]
        else:
            configs = candidates(space, base, base_model, section.search, section.budget, section.training_seed(params.seed))
        fitted = fit_and_score(data, configs, device, refit_chosen, params.engine)
        tracking.log_trials(fitted.trials)
        tracking.log_history(fitted.best.history)
        chosen = chosen_settings(fitted, is_mlp)
        tracking.log_chosen(chosen)
        metrics = score(fitted, data, members, base_model.input_dim)
        figures = result_figures(fitted, data, f"{args.classifier} on {args.feature_set} ({dataset})")
        deployable = StandardizedClassifier(torch.from_numpy(data.mean), torch.from_numpy(data.scale), fitted.model).eval()
        with tempfile.TemporaryDirectory() as scratch:
            featurizer = save_featurizer(Path(scratch), args.feature_set, members, data.meta)
            tracking.log_final(
                metrics, figures, deployable, input_example=data.raw_train.rows([0, 1]), featurizer_dir=featurizer, pictures=feature_previews(members)
            )
        write_results(train_dir(args.classifier, args.feature_set), fitted, data, chosen, metrics, run)
    print(f"{args.classifier} on {args.feature_set}: test accuracy {metrics['test_accuracy']:.4f} ({chosen})")


if __name__ == "__main__":
    run_stage(main, "train")
