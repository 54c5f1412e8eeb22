"""Stage `train@CLASSIFIER-FEATURE_SET`: search on val, refit the chosen settings, report test once, log to MLflow."""
from __future__ import annotations

import argparse
import csv
import functools
import tempfile
import time
from pathlib import Path
from dataclasses import asdict

import numpy as np
import torch

from models.augment import augmentation
from models.figures import confusion_figure, confusion_matrix, learning_curve_figure, templates_figure
from models.mlp import MLPConfig, StandardizedClassifier
from models.precision import resolve_precision
from models.search import SearchSpace, candidates, refit, search
from models.training import TrainConfig, channel_standardization, choose_device, evaluate, predict, standardization
from pipeline import tracking
from pipeline.artifacts import PREPARED_DIR, SPLITS, extract_seconds, feature_previews, load_feature_set, load_prepared, mirrored, prepared_digest, train_dir
from pipeline.engine import map_in_order
from pipeline.featurizer import save_featurizer
from pipeline.io import atomic_path, write_json
from pipeline.params import CLASSIFIERS, ParamsError, load_params
from pipeline.scores import per_class_accuracy
from pipeline.stage import run_stage


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


def adds_mirrored_rows(requested: str, feature_set: str, features: dict) -> bool:
    """Whether a feature set's flips are its mirrored rows: asked for (augment) and extracted (extract.mirror)."""
    if "flip" not in requested.split("+"):
        return False
    if mirrored("train") not in features:
        print(f"augment {requested}: {feature_set} has no mirrored rows (extract.mirror is false), so none are added")
        return False
    return True


def with_mirrored_rows(tensors: dict, labels: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, labels) of a split followed by its mirrored rows, which have the same labels."""
    return torch.cat([tensors[split], tensors[mirrored(split)]]), labels[split].repeat(2)


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

    meta, prepared = load_prepared()
    raw_pixels = members == ["pixels"]
    # pixel rows are flipped and shifted batch by batch; other features flip by adding their mirrored rows
    features = load_feature_set(members, mirrored_rows=not raw_pixels and "flip" in section.augment.split("+"))
    image_shape = tuple(meta["image_shape"])
    # raw pixels share one mean and std per colour channel, so mirrored rows stay exactly standardized
    mean, std = channel_standardization(features["train"], image_shape) if raw_pixels else standardization(features["train"])
    mirror_rows = not raw_pixels and adds_mirrored_rows(section.augment, args.feature_set, features)
    augment_name = section.augment if raw_pixels else "flip" if mirror_rows else "none"
    augment = augmentation(augment_name, image_shape) if raw_pixels else None
    tensors = {key: torch.from_numpy((features[key] - mean) / std) for key in features}
    labels = {split: torch.from_numpy(prepared[split]["labels"]) for split in prepared}
    rows = {split: with_mirrored_rows(tensors, labels, split) if mirror_rows else (tensors[split], labels[split]) for split in ("train", "val")}
    for key in [key for key in features if key not in SPLITS]:  # now in `rows`: gigabytes for bovw on CIFAR-10
        del features[key]
        del tensors[key]
    class_names = meta["class_names"]
    is_mlp = args.classifier == "mlp"
    base_model = MLPConfig(
        input_dim=tensors["train"].shape[1],
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
        precision="fp32",  # resolved below, once the device is known
        seed=params.seed,
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
    run_params = {
        "classifier": args.classifier,
        "feature_set": args.feature_set,
        "model": {k: v for k, v in asdict(base_model).items() if k not in ("input_dim", "n_classes", "hidden_sizes")},
        "search": {**asdict(space), "method": section.search, "budget": section.budget, "refit": section.refit},
        "train": {k: v for k, v in asdict(base).items() if k not in ("learning_rate", "reg_strength", "epochs")},
        "augment": augment_name,
        "device": str(device),
    }
    data = tracking.DataInput(
        meta["dataset"], prepared_digest(), str(PREPARED_DIR.resolve()), prepared["train"]["images"], prepared["train"]["labels"]
    )
    with tracking.training_run(dataset=meta["dataset"], run_name=f"{args.classifier}-{args.feature_set}", tags=run_tags, params=run_params, data=data) as run:
        start = time.perf_counter()
        configs = candidates(space, base, base_model, section.search, section.budget, params.seed)
        # one trial per task on Ray (a GPU each when training on one); in order, so the choice is the same
        map_trials = functools.partial(
            map_in_order, engine=params.engine, description="search", unit="trial", gpus_per_task=1 if device.type == "cuda" else 0
        )
        best, trials = search(configs, *rows["train"], tensors["val"], labels["val"], device, augment=augment, map_trials=map_trials)
        search_seconds = time.perf_counter() - start
        tracking.log_trials(trials)
        for record in best.history:
            tracking.log_epoch(record)
        model = best.model
        if section.refit:
            model, _ = refit(best, torch.cat([rows["train"][0], rows["val"][0]]), torch.cat([rows["train"][1], rows["val"][1]]), device, augment=augment)
        train_seconds = time.perf_counter() - start
        model = model.cpu()
        test_predictions = predict(model, tensors["test"]).numpy()
        metrics = {
            "train_accuracy": round(evaluate(model, tensors["train"], labels["train"]), 4),
            # the chosen trial's score on data it did not train on (the refit model has seen val)
            "val_accuracy": round(best.val_accuracy, 4),
            "test_accuracy": round(float((test_predictions == labels["test"].numpy()).mean()), 4),
            "train_seconds": round(train_seconds, 2),
            "search_seconds": round(search_seconds, 2),
            "n_trials": len(trials),
            "extract_seconds": extract_seconds(members),
            "feature_dim": int(base_model.input_dim),
            "n_parameters": model.n_parameters(),
            **per_class_accuracy(labels["test"].numpy(), test_predictions, class_names),
        }
        chosen = {"learning_rate": best.config.learning_rate, "reg_strength": best.config.reg_strength, "epochs": best.best_epoch}
        if is_mlp:
            chosen["hidden_sizes"] = best.model_config.hidden_sizes
        tracking.log_chosen(chosen)
        title = f"{args.classifier} on {args.feature_set} ({meta['dataset']})"
        matrix = confusion_matrix(labels["test"].numpy(), test_predictions, len(class_names))
        deployable = StandardizedClassifier(torch.from_numpy(mean), torch.from_numpy(std), model).eval()

        out = train_dir(args.classifier, args.feature_set)
        write_csv(
            out / "learning_curve.csv",
            ["epoch", "train_loss", "train_accuracy", "val_accuracy"],
            [(r.epoch, round(r.train_loss, 5), round(r.train_accuracy, 4), round(r.val_accuracy, 4)) for r in best.history],
        )
        write_csv(
            out / "predictions.csv",
            ["index", "actual", "predicted"],  # index: the image's row in data/prepared/test.npz
            zip(range(len(test_predictions)), np.asarray(class_names)[labels["test"].numpy()], np.asarray(class_names)[test_predictions]),
        )
        figures = {"confusion_matrix.png": confusion_figure(matrix, class_names, title), "learning_curve.png": learning_curve_figure(best.history, title)}
        if raw_pixels:
            # weights act on standardized pixels; dividing by std gives each raw pixel's weight
            first_layer = model.weight_matrices()[0].detach().numpy() / std
            if best.model_config.hidden_sizes:
                figures["first_layer_templates.png"] = templates_figure(first_layer[:40], image_shape, None, f"{title}: first 40 hidden units")
            else:
                figures["class_templates.png"] = templates_figure(first_layer, image_shape, class_names, f"{title}: one template per class")
        with tempfile.TemporaryDirectory() as scratch:
            featurizer = save_featurizer(Path(scratch), args.feature_set, members, meta)
            tracking.log_final(
                metrics, figures, deployable, input_example=features["train"][:2], featurizer_dir=featurizer, pictures=feature_previews(members)
            )
        write_json(out / "chosen.json", chosen)
        write_json(out / "run.json", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "dataset": meta["dataset"]})
        write_json(out / "metrics.json", metrics)
    print(f"{args.classifier} on {args.feature_set}: test accuracy {metrics['test_accuracy']:.4f} ({chosen})")


if __name__ == "__main__":
    run_stage(main, "train")
