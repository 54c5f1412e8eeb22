"""Stage `prepare`: load the data set named in params.yaml and write train/val/test arrays."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.datasets.load import dataset_label, load_raw, prepare_splits, stratified_split
from pipeline.io import atomic_directory, save_arrays, write_json
from pipeline.params import check_extractors, load_params
from pipeline.artifacts import PREPARED_DIR
from pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=PREPARED_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    params = load_params(args.params)
    check_extractors(params)  # impossible extractor settings stop the pipeline here, not after the data is read
    data = prepare_splits(load_raw(params.data, params.seed), params.data.val_fraction, params.data.test_fraction, params.seed)
    if params.data.train_fraction < 1:  # after val and test are carved, so they stay the same at every size
        data = replace(data, train=stratified_split(data.train, 1 - params.data.train_fraction, params.seed, "train subset")[0])
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
                "skipped_images": data.skipped,
                "counts": {
                    split: np.bincount(getattr(data, split).labels, minlength=n_classes).tolist()
                    for split in ("train", "val", "test")
                },
            },
        )
    print(f"prepared {dataset_label(params.data)}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test, {n_classes} classes")
    if data.skipped:
        print(skipped_summary(data.skipped, params.data.path, args.out / "meta.json"))


def skipped_summary(skipped: list[dict], source: str, meta_path: Path, shown: int = 20) -> str:
    """The line that tells a user `data.on_bad_image: skip` left files out, so none is lost unnoticed."""
    names = ", ".join(item["path"] for item in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} unreadable image(s) in {source} (data.on_bad_image: skip): {names}{more}; reasons in {meta_path}"


if __name__ == "__main__":
    run_stage(main, "prepare")
