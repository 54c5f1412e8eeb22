"""Pick the data source named in params and split it into train / val / test, stratified by seed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.datasets import DataError, ImageSet, RawDataset


@dataclass
class PreparedDataset:
    class_names: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    source: str
    checksum: str
    skipped: list[dict]


def load_raw(data, seed: int) -> RawDataset:
    """`data` is the params' DataParams; the import is local so one source's needs never slow another."""
    if data.name == "shapes":
        from pipeline.datasets.shapes import stream_shapes

        return stream_shapes(image_size=data.image_size, seed=seed, **data.shapes)
    if data.name == "cifar10":
        from pipeline.datasets.cifar10 import load_cifar10

        return resized(load_cifar10(cache_dir=data.raw_dir, archive=data.path), data.image_size)
    if data.name == "imagefolder":
        from pipeline.datasets.imagefolder import load_imagefolder

        return load_imagefolder(data.path, image_size=data.image_size, seed=seed, cache_dir=data.raw_dir, on_bad_image=data.on_bad_image)
    raise DataError(f"data.name must be shapes, cifar10 or imagefolder; got {data.name!r}")


def resized(raw: RawDataset, image_size: int) -> RawDataset:
    """Bring a fixed-size source (CIFAR-10 is 32x32) to `data.image_size`, as imagefolder does on decode."""
    from PIL import Image

    def resize(images: ImageSet | None) -> ImageSet | None:
        if images is None or images.images.shape[1:3] == (image_size, image_size):
            return images
        pictures = [Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR) for image in images.images]
        return ImageSet(np.stack([np.asarray(p) for p in pictures]), images.labels)

    return RawDataset(raw.class_names, resize(raw.train), resize(raw.test), raw.source, raw.checksum, raw.skipped)


GENERIC_FOLDER_NAMES = {
    "data", "dataset", "datasets", "images", "image", "imgs", "img", "photos", "pictures", "pics",
    "train", "training", "all", "raw", "files", "samples", "classes",
}


def dataset_label(data) -> str:
    """The name runs are grouped under (the MLflow experiment featurebench/<label>): data.label if set,
    else shapes, cifar10, or the image folder's own name without an archive suffix. A generic name
    says nothing ("sign-digits/Dataset" would be "Dataset"), so the folders above it join until one is
    not generic: "sign-digits-dataset"; "photos/2024/train.zip" -> "2024-train".
    """
    if getattr(data, "label", None):
        return data.label
    if data.name != "imagefolder":
        return data.name
    parts = []
    for folder in [Path(data.path).expanduser(), *Path(data.path).expanduser().parents]:
        name = folder.name
        for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        if not name or name in (".", ".."):
            break
        parts.insert(0, name)
        if name.lower() not in GENERIC_FOLDER_NAMES:
            break
    if len(parts) > 1:
        return "-".join(part.lower() if part.lower() in GENERIC_FOLDER_NAMES else part for part in parts)
    return parts[0] if parts else Path(data.path).resolve().name


# Held-out images per class: one for validation, one for test, and at least one left to train on.
MIN_IMAGES_PER_CLASS = {"without a test split": 3, "with a test split": 2}
_SPLIT_SALT = {"test": 1, "validation": 2}  # the two carvings draw from different streams of one seed


def held_out_indices(labels: np.ndarray, fraction: float, seed: int, what: str, keep: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) positions, ascending, with round(fraction * count) of each class held out, but at
    least 1 and never more than leaves `keep` behind: a small class still gets a validation and a test
    image, where a proportional split of the whole set would give it none and score it on nothing.
    """
    if not 0 < fraction < 1:
        raise DataError(f"the {what} fraction must be between 0 and 1; got {fraction}")
    rng = np.random.default_rng([seed, _SPLIT_SALT.get(what, 0)])
    held = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(np.clip(np.floor(fraction * len(members) + 0.5), 1, len(members) - keep))
        held.append(members[:count])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def stratified_split(images: ImageSet, fraction: float, seed: int, what: str, keep: int = 1) -> tuple[ImageSet, ImageSet]:
    """(rest, held_out) ImageSets: `held_out_indices` applied to images in memory."""
    rest, held = held_out_indices(images.labels, fraction, seed, what, keep)
    return ImageSet(images.images[rest], images.labels[rest]), ImageSet(images.images[held], images.labels[held])


@dataclass
class SplitPlan:
    """Which prepared split every source image goes to, decided from the labels alone, before any pixel is read.

    parts : (source images, {split: ascending positions in that source}); a source read in order fills
    each split in order, so `prepare` writes them batch by batch.
    """

    class_names: list[str]
    parts: list[tuple[object, dict[str, np.ndarray]]]
    source: str
    checksum: str
    skipped: list[dict]

    def labels(self, split: str) -> np.ndarray:
        return np.concatenate([images.labels[where[split]] for images, where in self.parts if split in where])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.parts[0][0].image_shape)


def plan_splits(raw: RawDataset, val_fraction: float, test_fraction: float, seed: int, train_fraction: float = 1.0) -> SplitPlan:
    """Validation carved from train, and test too when the source has none, stratified by seed.

    train_fraction < 1 keeps that stratified share of the train split, after validation and test are
    carved, so they stay the same at every training-set size (the data-size study).
    """
    if len(raw.class_names) < 2:
        raise DataError(f"a classification data set needs at least 2 classes; found {raw.class_names}")
    check_class_sizes(raw)
    positions = np.arange(len(raw.train))
    if raw.test is None:
        rest, test = held_out_indices(raw.train.labels, test_fraction, seed, "test", keep=2)  # 2: one for val, one to train
        positions = rest
    train, val = held_out_indices(raw.train.labels[positions], val_fraction, seed, "validation")
    if train_fraction < 1:
        kept, _ = held_out_indices(raw.train.labels[positions[train]], 1 - train_fraction, seed, "train subset")
        train = train[kept]
    from_train = {"train": positions[train], "val": positions[val]}
    if raw.test is None:
        parts = [(raw.train, {**from_train, "test": test})]
    else:
        parts = [(raw.train, from_train), (raw.test, {"test": np.arange(len(raw.test))})]
    return SplitPlan(raw.class_names, parts, raw.source, raw.checksum, raw.skipped)


def planned_batches(images, where: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """(split, images) pieces of a source read once in order, each split's pieces in its own order."""
    offset = 0
    for batch in images.batches():
        for split, positions in where.items():
            low, high = np.searchsorted(positions, [offset, offset + len(batch)])
            if high > low:
                yield split, batch[positions[low:high] - offset]
        offset += len(batch)


def prepare_splits(raw: RawDataset, val_fraction: float, test_fraction: float, seed: int) -> PreparedDataset:
    """The planned splits in memory (small data, tests); the `prepare` stage writes them batch by batch."""
    plan = plan_splits(raw, val_fraction, test_fraction, seed)
    pieces: dict[str, list[np.ndarray]] = {split: [] for split in ("train", "val", "test")}
    for images, where in plan.parts:
        for split, batch in planned_batches(images, where):
            pieces[split].append(batch)
    sets = {
        split: ImageSet(np.concatenate(parts) if parts else np.zeros((0, *plan.image_shape), np.uint8), plan.labels(split))
        for split, parts in pieces.items()
    }
    return PreparedDataset(raw.class_names, sets["train"], sets["val"], sets["test"], raw.source, raw.checksum, raw.skipped)


def check_class_sizes(raw: RawDataset) -> None:
    """Refuse classes too small to give train, validation and test one image each, naming them all."""
    given_test = raw.test is not None
    minimum = MIN_IMAGES_PER_CLASS["with a test split" if given_test else "without a test split"]
    counts = np.bincount(raw.train.labels, minlength=len(raw.class_names))
    small = [f"{raw.class_names[label]!r} ({count} image{'' if count == 1 else 's'})" for label, count in enumerate(counts) if count < minimum]
    if small:
        needs = "train and validation" if given_test else "train, validation and test"
        left_out = len(raw.skipped or ())
        skipped = f" ({left_out} unreadable file{'' if left_out == 1 else 's'} left out: data.on_bad_image: skip)" if left_out else ""
        raise DataError(
            f"class folder(s) {', '.join(small)} {'in train/ ' if given_test else ''}hold fewer than {minimum} images{skipped}, "
            f"one each for {needs}; add images to them or remove the folder(s)"
        )
    if given_test:
        absent = [repr(raw.class_names[label]) for label, count in enumerate(np.bincount(raw.test.labels, minlength=len(raw.class_names))) if count == 0]
        if absent:
            raise DataError(f"class(es) {', '.join(absent)} have no test images; add some to test/<class> or remove the class")


