"""Stage `prepare`: load the data set named in params.yaml and write train/val/test arrays, a batch at a time."""
from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from pipeline.datasets.load import SplitPlan, dataset_label, load_raw, plan_splits, planned_batches
from pipeline.io import atomic_directory, write_json
from pipeline.params import check_extractors, load_params
from pipeline.artifacts import PREPARED_DIR, SPLITS, NpyWriter, images_path, labels_path
from pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=PREPARED_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    params = load_params(args.params)
    check_extractors(params)  # impossible extractor settings stop the pipeline here, not after the data is read
    plan = plan_splits(load_raw(params.data, params.seed), params.data.val_fraction, params.data.test_fraction, params.seed, params.data.train_fraction)
    counts = write_splits(plan, args.out, dataset_label(params.data))
    print(f"prepared {dataset_label(params.data)}: {counts['train']} train, {counts['val']} val, {counts['test']} test, {len(plan.class_names)} classes")
    if plan.skipped:
        print(skipped_summary(plan.skipped, params.data.path, args.out / "meta.json"))


def write_splits(plan: SplitPlan, out_dir: Path, dataset: str) -> dict[str, int]:
    """Every split's images, read once from their source and written batch by batch, then labels and meta.json.

    All or nothing: the files go into a temporary folder that replaces `out_dir` only when complete.
    """
    labels = {split: plan.labels(split) for split in SPLITS}
    n_classes = len(plan.class_names)
    with atomic_directory(out_dir) as out:
        writers = {split: NpyWriter(images_path(split, out), len(labels[split]), plan.image_shape, np.uint8) for split in SPLITS}
        with ExitStack() as stack:
            for writer in writers.values():
                stack.enter_context(writer)
            for images, where in plan.parts:
                for split, batch in planned_batches(images, where):
                    writers[split].write(batch)
        for split in SPLITS:
            np.save(labels_path(split, out), labels[split])
        write_json(
            out / "meta.json",
            {
                "dataset": dataset,
                "source": plan.source,
                "checksum": plan.checksum,
                "class_names": plan.class_names,
                "image_shape": list(plan.image_shape),
                "skipped_images": plan.skipped,
                "counts": {split: np.bincount(labels[split], minlength=n_classes).tolist() for split in SPLITS},
            },
        )
    return {split: len(labels[split]) for split in SPLITS}


def skipped_summary(skipped: list[dict], source: str, meta_path: Path, shown: int = 20) -> str:
    """The line that tells a user `data.on_bad_image: skip` left files out, so none is lost unnoticed."""
    names = ", ".join(item["path"] for item in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} unreadable image(s) in {source} (data.on_bad_image: skip): {names}{more}; reasons in {meta_path}"


if __name__ == "__main__":
    run_stage(main, "prepare")
