"""Stage `extract@NAME`: fit one extractor on the train split and transform every split, a batch at a time.

Each batch of `extract.batch_size` images is one task of `pipeline.engine.map_in_order` (this process,
or a Ray worker with `engine: ray`); results come back in order and go straight to
data/features/NAME/{split}.npy, so no split's features are ever held whole.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from features import get_extractor
from pipeline.artifacts import (
    EXTRACT_METRICS_DIR,
    MIRRORED_SPLITS,
    PREVIEW_NAME,
    SPLITS,
    ImageBatch,
    MappedRows,
    NpyWriter,
    feature_dir,
    image_batches,
    images_path,
    mirrored,
    open_images,
    read_labels,
    read_meta,
)
from pipeline.engine import map_in_order
from pipeline.io import atomic_directory, save_arrays, write_json
from pipeline.params import check_extractors, load_params
from pipeline.stage import run_stage


def transform_batch(extractor, batch: ImageBatch) -> np.ndarray:
    """One extraction task: read a batch of images by path, transform it. Top-level, so Ray can ship it."""
    return extractor.transform(batch.read())


def extract_split(extractor, name: str, key: str, batches: list[ImageBatch], writer: NpyWriter, engine: str) -> None:
    """Map the extractor over one split's batches (in this process or on Ray) and write them in order."""
    split = key.replace("_", " ")  # "train mirrored"
    results = map_in_order(transform_batch, batches, shared=extractor, engine=engine)
    for features in tqdm(results, total=len(batches), desc=f"{name} {split}", unit="batch", leave=False):
        if not np.isfinite(features).all():
            raise ValueError(f"extractor {name!r} produced NaN or infinite values on the {split} split")
        writer.write(features.astype(np.float32, copy=False))


def sample_images(images: np.ndarray, labels: np.ndarray, count: int = 8) -> np.ndarray:
    """The first image of each class, up to `count` of them: the samples an extractor's picture shows."""
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)[:count]]
    return np.array(images[firsts])  # a copy of those few rows, not a mapping


def save_figure(figure, path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.extract", description=__doc__)
    parser.add_argument("name", help="extractor name, a key under `extractors` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    check_extractors(params, [args.name])  # before a single image is read
    extractor = get_extractor(args.name, **params.extractors[args.name])
    meta = read_meta()
    image_shape = tuple(meta["image_shape"])
    dim = extractor.output_dim(image_shape)  # refuses impossible sizes before any work

    start = time.perf_counter()
    # a fitted extractor (bovw) reads a bounded sample (its n_patches patches) through the mapping;
    # the mapping goes with `fit`, and the pages it touched with it
    extractor.fit(open_images("train"))
    fit_seconds = time.perf_counter() - start
    work = [(split, split, False) for split in SPLITS]
    if params.extract_mirror:  # training's `augment: flip` adds these rows: a mirrored cat is still a cat
        work += [(mirrored(split), split, True) for split in MIRRORED_SPLITS]
    n_images, start = 0, time.perf_counter()
    state = {key: value for key, value in vars(extractor).items() if key.endswith("_") and isinstance(value, np.ndarray)}
    with atomic_directory(feature_dir(args.name)) as out:
        for key, split, mirror in work:
            n = len(MappedRows(images_path(split)))
            batches = image_batches(images_path(split), n, params.extract_batch_size, mirror)
            with NpyWriter(out / f"{key}.npy", n, (dim,), np.float32) as writer:
                extract_split(extractor, args.name, key, batches, writer, params.engine)
            n_images += n
        transform_seconds = time.perf_counter() - start
        if state:
            save_arrays(out / "state.npz", **state)
        write_json(out / "extractor.json", {"name": args.name, "params": extractor.get_params()})
        figure = extractor.figure(sample_images(open_images("train"), read_labels("train")))
        if figure is not None:
            save_figure(figure, out / PREVIEW_NAME)
    metrics = {
        "feature_dim": dim,
        "fit_seconds": round(fit_seconds, 3),
        "extract_seconds": round(fit_seconds + transform_seconds, 3),
        "images_per_second": round(n_images / max(transform_seconds, 1e-9), 1),
    }
    write_json(EXTRACT_METRICS_DIR / f"{args.name}.json", metrics)
    print(f"extracted {args.name}: d={dim}, {metrics['images_per_second']:.0f} images/s")


if __name__ == "__main__":
    run_stage(main, "extract")
