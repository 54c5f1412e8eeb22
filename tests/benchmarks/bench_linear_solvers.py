"""SGD (the linear section's search) against L-BFGS (a warm-started path over reg_strengths) on real CIFAR-10.

A script, not a test: run from anywhere,
    python tests/benchmarks/bench_linear_solvers.py --per-class 1000 --val-per-class 200
It reads a class-balanced sample of the shared JPEG archive (the first --per-class train images of each
class to train on, the next --val-per-class to validate on), extracts the feature sets with params.yaml's
extractor settings (hog+color_hist with its mirrored rows, as extract.mirror does; raw pixels flipped as
the stage flips them), writes them as .npy files read through the stages' row sources, then runs, in the
same process, the search each solver does in a train stage (params.yaml's linear section, solver: sgd,
then solver: lbfgs) and prints validation accuracy, seconds and their ratio per classifier and feature set.
Features are cached in --cache, so a second run only trains.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from tests.cifar_sample import SHARED_CIFAR10_JPEG  # noqa: E402


def balanced_sample(archive: Path, per_class: int, val_per_class: int, folder: str = "train") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "val": ...} from the archive's `folder` folders, class-balanced, disjoint."""
    taken: Counter = Counter()
    images: dict[str, list] = {"train": [], "val": []}
    labels: dict[str, list] = {"train": [], "val": []}
    classes: list[str] = []
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")  # cifar10/<split>/<class>/<image>
            if not (member.isfile() and len(parts) == 4 and parts[1] == folder):
                continue
            name = parts[2]
            if taken[name] >= per_class + val_per_class:
                continue
            if name not in classes:
                classes.append(name)
            split = "train" if taken[name] < per_class else "val"
            taken[name] += 1
            images[split].append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
            labels[split].append(name)
    classes = sorted(classes)
    return {split: (np.stack(images[split]), np.array([classes.index(c) for c in labels[split]], np.int64)) for split in images if images[split]}


def prepare(cache: Path, per_class: int, val_per_class: int) -> Path:
    """cache/<sample>/{pixels,hog,color_hist}/{train,val,train_mirrored,val_mirrored}.npy and labels."""
    from features.registry import get_extractor
    from pipeline.params import load_params

    folder = cache / f"cifar10-{per_class}x10-val{val_per_class}x10"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sample = balanced_sample(SHARED_CIFAR10_JPEG, per_class, val_per_class)
    sample["test"] = balanced_sample(SHARED_CIFAR10_JPEG, val_per_class, 0, folder="test")["train"]
    params = load_params(REPOSITORY / "params.yaml")
    for split, (images, labels) in sample.items():
        np.save(folder / f"{split}_labels.npy", labels)
        for name in ("pixels", "hog", "color_hist"):
            extractor = get_extractor(name, **(params.extractors.get(name) or {})).fit(sample["train"][0])
            (folder / name).mkdir(exist_ok=True)
            np.save(folder / name / f"{split}.npy", extractor.transform(images).astype(np.float32))
            if split != "test":
                np.save(folder / name / f"{split}_mirrored.npy", extractor.transform(np.ascontiguousarray(images[:, :, ::-1])).astype(np.float32))
        print(f"extracted {split}: {len(images)} images", flush=True)
    (folder / "done").touch()
    return folder


def project_layout(folder: Path, work: Path) -> Path:
    """`work` laid out as a project after `prepare` and `extract` (data/prepared, data/features, links to the cache)."""
    prepared, features = work / "data/prepared", work / "data/features"
    prepared.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        labels = np.load(folder / f"{split}_labels.npy")
        np.save(prepared / f"{split}_labels.npy", labels)
        np.save(prepared / f"{split}_images.npy", np.zeros((len(labels), 1, 1, 3), np.uint8))  # read by no training code
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (prepared / "meta.json").write_text(json.dumps({"dataset": folder.name, "class_names": classes, "image_shape": [32, 32, 3]}))
    for extractor in ("pixels", "hog", "color_hist"):
        (features / extractor).mkdir(parents=True, exist_ok=True)
        for file in (folder / extractor).glob("*.npy"):
            target = features / extractor / file.name
            if not target.exists():
                target.symlink_to(file)
    return work


def solver_configs(section, classifier: str, data, solver: str, seed: int) -> list:
    """The configurations pipeline/train.py's main() searches for this classifier and solver."""
    from dataclasses import replace

    from models.mlp import MLPConfig
    from models.precision import resolve_precision
    from models.search import SearchSpace, candidates
    from models.solvers import LBFGSConfig
    from models.training import TrainConfig
    from pipeline.train import linear_loss

    model = MLPConfig(input_dim=data.train.dim, n_classes=len(data.class_names))
    loss = linear_loss(classifier, section.svm_loss)
    if solver == "lbfgs":
        base = LBFGSConfig(loss=loss, regularization=section.regularization, max_iterations=section.max_iterations, seed=seed)
        return [(replace(base, reg_strength=strength), model) for strength in section.reg_strengths]
    base = TrainConfig(
        loss=loss, optimizer=section.optimizer, regularization=section.regularization, batch_size=section.batch_size, momentum=section.momentum,
        lr_schedule=section.lr_schedule, patience=section.patience, seed=seed,
        precision=resolve_precision(section.precision, torch.device("cpu"), section.batch_size, model.input_dim, model.n_classes),
    )
    space = SearchSpace(list(section.learning_rates), list(section.reg_strengths), [[]], section.epoch_options)
    return candidates(space, base, model, section.search, section.budget, seed)


def compare(work: Path, feature_sets: list[str], classifiers: list[str], solvers: list[str], changes: dict) -> list[dict]:
    """One row per (feature set, classifier, solver): val and test accuracy, seconds (search + refit)."""
    import os

    from pipeline.params import load_params
    from pipeline.train import fit_and_score, load_training_data

    params = load_params(REPOSITORY / "params.yaml")
    os.chdir(work)
    results = []
    for feature_set in feature_sets:
        for solver in solvers:
            section = params.linear.for_feature_set(feature_set).model_copy(update={"solver": solver, **changes.get(solver, {})})
            data = load_training_data(params.feature_set_members(feature_set), feature_set, section.augment)
            for classifier in classifiers:
                configs = solver_configs(section, classifier, data, solver, params.seed)
                cpu_start = time.process_time()
                fitted = fit_and_score(data, configs, torch.device("cpu"), section.refit)
                cpu_seconds = time.process_time() - cpu_start
                test = float((fitted.test_predictions == data.test_labels.numpy()).mean())
                row = {"feature_set": feature_set, "classifier": classifier, "solver": solver, "val_accuracy": fitted.best.val_accuracy,
                       "test_accuracy": test, "seconds": fitted.train_seconds, "cpu_seconds": cpu_seconds, "trials": len(fitted.trials),
                       "passes": passes(fitted), "chosen": chosen(fitted)}
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


def passes(fitted) -> str:
    """How far each trial went: epochs (SGD) or L-BFGS iterations."""
    return ",".join(str(trial.history[-1].epoch) for trial in fitted.trials)


def chosen(fitted) -> str:
    config = fitted.best.config
    rate = getattr(config, "learning_rate", None)
    return f"reg {config.reg_strength:g}" + (f", lr {rate:g}" if rate else "") + f", at {fitted.best.best_epoch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000, help="train images per class")
    parser.add_argument("--val-per-class", type=int, default=200, help="validation (and test) images per class")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/featurebench-bench-linear-solvers"))
    parser.add_argument("--feature-sets", nargs="+", default=["pixels", "hog+color_hist"])
    parser.add_argument("--classifiers", nargs="+", default=["softmax", "svm"])
    parser.add_argument("--solvers", nargs="+", default=["sgd", "lbfgs"])
    parser.add_argument("--lbfgs-reg-strengths", type=float, nargs="+", default=None, help="the L-BFGS path's grid (default: linear.reg_strengths)")
    parser.add_argument("--max-iterations", type=int, default=None, help="linear.max_iterations for L-BFGS")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = prepare(args.cache, args.per_class, args.val_per_class)
    work = project_layout(folder, args.cache / "project")
    lbfgs = {}
    if args.lbfgs_reg_strengths:
        lbfgs["reg_strengths"] = args.lbfgs_reg_strengths
    if args.max_iterations:
        lbfgs["max_iterations"] = args.max_iterations
    rows = compare(work, args.feature_sets, args.classifiers, args.solvers, {"lbfgs": lbfgs})
    print(f"\nCIFAR-10 sample {folder.name} (torch threads {torch.get_num_threads()}); seconds = search + refit, wall and CPU (process) time")
    print(f"{'feature set':16} {'classifier':10} {'solver':6} {'val acc':>8} {'test acc':>8} {'seconds':>8} {'cpu s':>8}  chosen")
    for row in rows:
        print(f"{row['feature_set']:16} {row['classifier']:10} {row['solver']:6} {row['val_accuracy']:8.4f} {row['test_accuracy']:8.4f} {row['seconds']:8.1f} {row['cpu_seconds']:8.1f}  {row['chosen']}")
    for sgd in (r for r in rows if r["solver"] == "sgd"):
        lb = next((r for r in rows if r["solver"] == "lbfgs" and r["feature_set"] == sgd["feature_set"] and r["classifier"] == sgd["classifier"]), None)
        if lb is None:
            continue
        print(f"{sgd['feature_set']:16} {sgd['classifier']:10} lbfgs - sgd val {lb['val_accuracy'] - sgd['val_accuracy']:+.4f}, "
              f"test {lb['test_accuracy'] - sgd['test_accuracy']:+.4f}; speed-up {sgd['seconds'] / lb['seconds']:.2f}x wall, {sgd['cpu_seconds'] / lb['cpu_seconds']:.2f}x CPU")


if __name__ == "__main__":
    main()
