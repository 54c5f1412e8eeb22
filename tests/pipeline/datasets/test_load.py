import numpy as np

from pipeline.datasets import ImageSet, RawDataset
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
