"""Stage `extract@NAME`: fit one extractor on the train split and transform every split, a batch at a time.

Each batch of `extract.batch_size` images is one task of `pipeline.engine.map_in_order` (this process,
or a Ray worker with `engine: ray`); results come back in order and go straight to
data/features/NAME/{split}.npy, so no split's features are ever held whole. With `extract.mirror`,
a train or val task returns its batch's features and its mirrored images' features together
(`transform_with_mirror`: bag of visual words derives the second from the first), written to
{split}.npy and {split}_mirrored.npy in the same pass.
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

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


def transform_batch_with_mirror(extractor, batch: ImageBatch) -> tuple[np.ndarray, np.ndarray]:
    """One task of a split extracted with its mirror: (features, mirrored images' features) of a batch."""
    return extractor.transform_with_mirror(batch.read())


def extract_split(extractor, name: str, key: str, batches: list[ImageBatch], writer: NpyWriter, engine: str, mirrored_writer: NpyWriter | None = None) -> None:
    """Map the extractor over one split's batches (in this process or on Ray) and write them in order.

    mirrored_writer : where the features of the batches' mirrored images go, computed in the same
        tasks (`transform_with_mirror`); the batches themselves must then be unmirrored.
    """
    if mirrored_writer is None:
        outputs = [(key.replace("_", " "), writer)]  # "train mirrored" when the batches are mirrored ones
        results = ((features,) for features in map_in_order(transform_batch, batches, shared=extractor, engine=engine))
    else:
        outputs = [(key, writer), (f"{key} mirrored", mirrored_writer)]
        results = map_in_order(transform_batch_with_mirror, batches, shared=extractor, engine=engine)
    description = f"{name} {' + '.join(split for split, _ in outputs)}"
    for arrays in tqdm(results, total=len(batches), desc=description, unit="batch", leave=False):
        for features, (split, split_writer) in zip(arrays, outputs):
            if not np.isfinite(features).all():
                raise ValueError(f"extractor {name!r} produced NaN or infinite values on the {split} split")
            with np.errstate(over="ignore"):  # an overflow is the error below, not a warning
                stored = features.astype(split_writer.dtype, copy=False)
            if not np.isfinite(stored).all():  # beyond float16's 65,504
                raise ValueError(f"extractor {name!r} produced values too large for its {split_writer.dtype} storage on the {split} split")
            split_writer.write(stored)


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
    # n_images counts the feature rows written, the mirrored images' included (derived or not), as it
    # did when the mirrors were extracted as splits of their own: images_per_second compares across both
    n_images, start = 0, time.perf_counter()
    state = {key: value for key, value in vars(extractor).items() if key.endswith("_") and isinstance(value, np.ndarray)}
    with atomic_directory(feature_dir(args.name)) as out:
        for split in SPLITS:
            # training's `augment: flip` adds the mirrored rows: a mirrored cat is still a cat
            with_mirror = params.extract_mirror and split in MIRRORED_SPLITS
            n = len(MappedRows(images_path(split)))
            batches = image_batches(images_path(split), n, params.extract_batch_size)
            stored_as = getattr(extractor, "stored_as", np.float32)
            mirrored_file = NpyWriter(out / f"{mirrored(split)}.npy", n, (dim,), stored_as) if with_mirror else nullcontext()
            with NpyWriter(out / f"{split}.npy", n, (dim,), stored_as) as writer, mirrored_file as mirrored_writer:
                extract_split(extractor, args.name, split, batches, writer, params.engine, mirrored_writer)
            n_images += n * (1 + with_mirror)
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
