import numpy as np
import pytest
from skimage.color import rgb2hsv

from pipeline.datasets import DataError, ImageSet
from pipeline.datasets.shapes import (
    HUE_OF_COLOUR_CLASS,
    SHAPE_DEFINED_CLASSES,
    SHAPES_CLASSES,
    make_shapes,
)

N_CLASSES = len(SHAPES_CLASSES)


def test_splits_have_the_requested_sizes_and_dtypes():
    dataset = make_shapes(n_train=120, n_test=30, image_size=24, seed=0)
    for split, n_images in [(dataset.train, 120), (dataset.test, 30)]:
        assert isinstance(split, ImageSet)
        assert split.images.shape == (n_images, 24, 24, 3)
        assert split.images.dtype == np.uint8
        assert split.labels.shape == (n_images,)
        assert split.labels.dtype == np.int64
        assert set(split.labels.tolist()) == set(range(N_CLASSES))


def test_classes_are_balanced_to_within_one_image():
    dataset = make_shapes(n_train=207, n_test=23, image_size=16, seed=3)
    for split in (dataset.train, dataset.test):
        counts = np.bincount(split.labels, minlength=N_CLASSES)
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == len(split)


def test_there_are_ten_distinct_class_names_split_into_shape_and_colour_classes():
    dataset = make_shapes(n_train=100, n_test=10, image_size=16)
    assert dataset.class_names == SHAPES_CLASSES
    assert len(set(SHAPES_CLASSES)) == N_CLASSES == 10
    assert SHAPES_CLASSES == SHAPE_DEFINED_CLASSES + list(HUE_OF_COLOUR_CLASS)


def test_same_seed_gives_byte_identical_arrays():
    first = make_shapes(n_train=100, n_test=20, image_size=16, seed=7)
    second = make_shapes(n_train=100, n_test=20, image_size=16, seed=7)
    for a, b in [(first.train, second.train), (first.test, second.test)]:
        assert a.images.tobytes() == b.images.tobytes()
        assert np.array_equal(a.labels, b.labels)
    assert first.checksum == second.checksum
    assert first.source == second.source


def test_different_seeds_give_different_images():
    first = make_shapes(n_train=100, n_test=20, image_size=16, seed=0)
    second = make_shapes(n_train=100, n_test=20, image_size=16, seed=1)
    assert not np.array_equal(first.train.images, second.train.images)
    assert not np.array_equal(first.test.images, second.test.images)
    assert first.checksum != second.checksum


def test_test_split_does_not_depend_on_the_train_size():
    small = make_shapes(n_train=100, n_test=20, image_size=16, seed=0)
    large = make_shapes(n_train=300, n_test=20, image_size=16, seed=0)
    assert np.array_equal(small.test.images, large.test.images)
    assert np.array_equal(small.test.labels, large.test.labels)
    assert not np.array_equal(small.train.images[:20], small.test.images)


def test_checksum_is_a_sha256_that_changes_with_every_parameter():
    base = dict(n_train=100, n_test=20, image_size=16, seed=0)
    checksums = {make_shapes(**base).checksum}
    for name, other_value in [("n_train", 110), ("n_test", 30), ("image_size", 20), ("seed", 1)]:
        checksums.add(make_shapes(**{**base, name: other_value}).checksum)
    assert len(checksums) == 5
    assert all(len(checksum) == 64 and int(checksum, 16) >= 0 for checksum in checksums)


def test_numpy_integers_are_accepted_and_give_the_same_data_set():
    plain = make_shapes(n_train=100, n_test=10, image_size=16, seed=2)
    from_numpy = make_shapes(n_train=np.int64(100), n_test=np.int32(10), image_size=np.int64(16), seed=np.int64(2))
    assert from_numpy.checksum == plain.checksum
    assert from_numpy.source == plain.source
    assert np.array_equal(from_numpy.train.images, plain.train.images)


def test_source_names_the_generator_and_its_parameters():
    source = make_shapes(n_train=100, n_test=20, image_size=16, seed=5).source
    assert source == "shapes(seed=5, n_train=100, n_test=20, image_size=16)"


@pytest.mark.parametrize(
    "arguments, parameter",
    [
        (dict(n_train=99), "n_train"),
        (dict(n_test=9), "n_test"),
        (dict(image_size=15), "image_size"),
        (dict(image_size=257), "image_size"),
        (dict(seed=-1), "seed"),
        (dict(n_train=500.0), "n_train"),
        (dict(seed=True), "seed"),
    ],
)
def test_bad_arguments_raise_a_data_error_naming_the_parameter(arguments, parameter):
    with pytest.raises(DataError, match=parameter):
        make_shapes(**{"n_train": 100, "n_test": 10, "image_size": 16, **arguments})


def test_error_message_gives_the_allowed_range():
    with pytest.raises(DataError, match=r">= 100"):
        make_shapes(n_train=50)
    with pytest.raises(DataError, match=r"\[16, 256\]"):
        make_shapes(image_size=8)


def _mean_hue_vector_per_class(split: ImageSet) -> np.ndarray:
    """(n_classes, 2) circular mean of the hue of the saturated pixels: hue is an angle, so average unit vectors."""
    hsv = rgb2hsv(split.images)
    saturated = (hsv[..., 1] > 0.4) & (hsv[..., 2] > 0.25)
    angle = 2 * np.pi * hsv[..., 0]
    vectors = []
    for label in range(N_CLASSES):
        in_class = split.labels == label
        hues = angle[in_class][saturated[in_class]]
        vectors.append([np.cos(hues).mean(), np.sin(hues).mean()])
    return np.array(vectors)


def test_colour_classes_differ_in_mean_hue_and_shape_classes_do_not():
    dataset = make_shapes(n_train=1000, n_test=10, image_size=16, seed=0)
    vectors = _mean_hue_vector_per_class(dataset.train)
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    n_shapes = len(SHAPE_DEFINED_CLASSES)

    shape_pairs = distance[:n_shapes, :n_shapes]
    colour_pairs = distance[n_shapes:, n_shapes:][~np.eye(len(HUE_OF_COLOUR_CLASS), dtype=bool)]
    assert shape_pairs.max() < 0.5
    assert colour_pairs.min() > 1.0

    mean_hue = (np.arctan2(vectors[n_shapes:, 1], vectors[n_shapes:, 0]) / (2 * np.pi)) % 1.0
    hue_error = (mean_hue - np.array(list(HUE_OF_COLOUR_CLASS.values())) + 0.5) % 1.0 - 0.5
    assert np.all(np.abs(hue_error) < 0.03)
