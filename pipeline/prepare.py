"""Stage `prepare`: load the data set named in params.yaml and write train/val/test arrays."""
from __future__ import annotations

import argparse

import numpy as np

from pipeline.datasets.load import dataset_label, load_raw, prepare_splits
from pipeline.io import atomic_directory, save_arrays, write_json
from pipeline.params import load_params
from pipeline.artifacts import PREPARED_DIR
from pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=PREPARED_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    params = load_params(args.params)
    data = prepare_splits(load_raw(params.data, params.seed), params.data.val_fraction, params.data.test_fraction, params.seed)
    n_classes = len(data.class_names)
    with atomic_directory(args.out) as out:
        for split in ("train", "val", "test"):
            images = getattr(data, split)
            save_arrays(out / f"{split}.npz", images=images.images, labels=images.labels)
        write_json(
            out / "meta.json",
            {
                "dataset": dataset_label(params.data),
                "source": data.source,
                "checksum": data.checksum,
                "class_names": data.class_names,
                "image_shape": list(data.train.images.shape[1:]),
                "counts": {
                    split: np.bincount(getattr(data, split).labels, minlength=n_classes).tolist()
                    for split in ("train", "val", "test")
                },
            },
        )
    print(f"prepared {dataset_label(params.data)}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test, {n_classes} classes")


if __name__ == "__main__":
    run_stage(main, "prepare")
