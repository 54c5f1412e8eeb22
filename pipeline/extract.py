"""Stage `extract@NAME`: fit one extractor on the train split and transform every split."""
from __future__ import annotations

import argparse
import time

import numpy as np

from features import get_extractor
from pipeline.artifacts import EXTRACT_METRICS_DIR, MIRRORED_SPLITS, PREVIEW_NAME, SPLITS, feature_dir, load_prepared, mirrored
from pipeline.engine import map_in_order
from pipeline.io import atomic_directory, save_arrays, write_json
from pipeline.params import check_extractors, load_params
from pipeline.stage import run_stage


def image_shards(counts: dict[str, int], batch_size: int) -> list[tuple[str, int, int]]:
    """(key, start, stop) per batch of every split in `counts` ({key: number of images}), in order."""
    return [(key, start, min(start + batch_size, count)) for key, count in counts.items() for start in range(0, count, batch_size)]


def transform_shard(shared: tuple, shard: tuple[str, int, int]) -> np.ndarray:
    """(stop - start, d) float32 features of one shard; shared = (fitted extractor, {split: images}).

    A mirrored key's images are its split's, mirrored left-right: a mirrored cat is still a cat.
    """
    extractor, images = shared
    key, start, stop = shard
    split = key.removesuffix(mirrored(""))
    batch = images[split][start:stop]
    return extractor.transform(batch[:, :, ::-1] if key != split else batch)


def sample_images(images: np.ndarray, labels: np.ndarray, count: int = 8) -> np.ndarray:
    """The first image of each class, up to `count` of them: the samples an extractor's picture shows."""
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)[:count]]
    return images[firsts]


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
    meta, splits = load_prepared()
    dim = extractor.output_dim(tuple(meta["image_shape"]))  # refuses impossible sizes before any work

    start = time.perf_counter()
    extractor.fit(splits["train"]["images"])
    fit_seconds = time.perf_counter() - start
    images = {split: splits[split]["images"] for split in SPLITS}
    counts = {split: len(images[split]) for split in SPLITS}
    if params.extract_mirror:  # training's `augment: flip` adds these rows
        counts.update({mirrored(split): counts[split] for split in MIRRORED_SPLITS})
    shards = image_shards(counts, params.extract_batch_size)
    parts = {key: [] for key in counts}
    start = time.perf_counter()
    results = map_in_order(transform_shard, shards, shared=(extractor, images), engine=params.engine, description=f"extract {args.name}", unit="batch")
    for (key, _, _), part in zip(shards, results):
        parts[key].append(part)
    features = {key: np.concatenate(part) if part else np.zeros((0, dim), np.float32) for key, part in parts.items()}
    for key, values in features.items():
        if not np.isfinite(values).all():
            split = key.replace("_", " ")  # "train mirrored"
            raise ValueError(f"extractor {args.name!r} produced NaN or infinite values on the {split} split")
    n_images = sum(counts.values())
    transform_seconds = time.perf_counter() - start

    state = {key: value for key, value in vars(extractor).items() if key.endswith("_") and isinstance(value, np.ndarray)}
    with atomic_directory(feature_dir(args.name)) as out:
        save_arrays(out / "features.npz", **features)
        if state:
            save_arrays(out / "state.npz", **state)
        write_json(out / "extractor.json", {"name": args.name, "params": extractor.get_params()})
        figure = extractor.figure(sample_images(splits["train"]["images"], splits["train"]["labels"]))
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
