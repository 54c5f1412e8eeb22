import numpy as np
import pytest

from pipeline.datasets import DataError, ImageSet, RawDataset
from pipeline.datasets.load import prepare_splits, resized


def raw_dataset(n_per_class=10, size=32, with_test=True):
    labels = np.repeat(np.arange(3), n_per_class)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), size, size, 3), dtype=np.uint8)
    test = ImageSet(images[:9], labels[:9]) if with_test else None
    return RawDataset(["a", "b", "c"], ImageSet(images, labels), test, "synthetic", "0")


def test_resized_changes_only_what_differs():
    raw = raw_dataset()
    assert resized(raw, 32).train.images is raw.train.images
    small = resized(raw, 16)
    assert small.train.images.shape == (30, 16, 16, 3) and small.test.images.shape == (9, 16, 16, 3)
    np.testing.assert_array_equal(small.train.labels, raw.train.labels)


def test_without_a_test_split_one_is_carved_stratified():
    data = prepare_splits(raw_dataset(n_per_class=20, with_test=False), val_fraction=0.25, test_fraction=0.25, seed=0)
    assert np.bincount(data.test.labels).tolist() == [5, 5, 5]
    assert np.bincount(data.val.labels).tolist() == [4, 4, 4]  # ceil(0.25 * 45) = 12, stratified
    assert len(data.train) + len(data.val) + len(data.test) == 60


def uneven_dataset(counts: list[int], with_test=False):
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.random.default_rng(1).integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    names = [f"class{index}" for index in range(len(counts))]
    test = ImageSet(images[: len(counts)], np.arange(len(counts))) if with_test else None
    return RawDataset(names, ImageSet(images, labels), test, "synthetic", "0")


def test_classes_of_three_images_still_get_one_validation_and_one_test_image():
    data = prepare_splits(uneven_dataset([100, 3, 4, 50]), val_fraction=0.1, test_fraction=0.2, seed=0)
    assert np.bincount(data.test.labels).tolist() == [20, 1, 1, 10]
    assert np.bincount(data.val.labels).tolist() == [8, 1, 1, 4]
    assert np.bincount(data.train.labels).tolist() == [72, 1, 2, 36]


def test_the_split_is_the_same_for_the_same_seed_and_covers_every_image_once():
    first, second = (prepare_splits(uneven_dataset([30, 3, 7]), 0.2, 0.2, seed=5) for _ in range(2))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, split).images, getattr(second, split).images)
    rows = np.concatenate([getattr(first, split).images.reshape(-1, 8 * 8 * 3) for split in ("train", "val", "test")])
    assert len(np.unique(rows, axis=0)) == 40


def test_classes_with_fewer_than_three_images_are_refused_by_name_with_the_fix():
    with pytest.raises(DataError) as error:
        prepare_splits(uneven_dataset([10, 2, 1, 5]), 0.1, 0.2, seed=0)
    message = str(error.value)
    assert "'class1' (2 images), 'class2' (1 image)" in message
    assert "fewer than 3 images" in message and "add images to them or remove the folder(s)" in message
    assert "class0" not in message and "class3" not in message


def test_with_a_given_test_split_two_train_images_are_enough_and_one_is_refused():
    data = prepare_splits(uneven_dataset([2, 5], with_test=True), 0.1, 0.2, seed=0)
    assert np.bincount(data.val.labels).tolist() == [1, 1] and np.bincount(data.train.labels).tolist() == [1, 4]
    with pytest.raises(DataError, match=r"'class0' \(1 image\) in train/ hold fewer than 2 images"):
        prepare_splits(uneven_dataset([1, 5], with_test=True), 0.1, 0.2, seed=0)
