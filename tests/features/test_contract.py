"""The contract every registered extractor keeps; a new extractor is tested the moment it is registered."""
from __future__ import annotations

import json

import numpy as np
import pytest

import features
from features import NotFittedError, extractor_class, extractor_names, get_extractor

# Small settings so fitted extractors fit in well under a second on 8 images.
SMALL_PARAMS = {"bovw": {"n_clusters": 4, "n_patches": 200}}


def build(name: str):
    return get_extractor(name, **SMALL_PARAMS.get(name, {}))


@pytest.mark.parametrize("name", extractor_names())
def test_output_shape_dtype_and_finite(name, images):
    extractor = build(name)
    assert extractor.fit(images) is extractor
    out = extractor.transform(images)
    assert out.dtype == np.float32
    assert out.shape == (len(images), extractor.output_dim(images.shape[1:]))
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", extractor_names())
def test_rows_do_not_depend_on_the_batch(name, images):
    extractor = build(name).fit(images)
    batch = extractor.transform(images)
    one_at_a_time = np.concatenate([extractor.transform(images[i : i + 1]) for i in range(len(images))])
    np.testing.assert_allclose(batch, one_at_a_time, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("view", ["transposed", "flipped", "fortran_order", "every_other_image", "reversed_batch"])
@pytest.mark.parametrize("name", extractor_names())
def test_a_view_that_is_not_c_contiguous_gives_the_rows_of_its_contiguous_copy(name, images, view):
    """Rotated or flipped batches, np.asfortranarray, slices: the strides must not change the features."""
    views = {
        "transposed": images.transpose(0, 2, 1, 3),
        "flipped": images[:, ::-1, ::-1],
        "fortran_order": np.asfortranarray(images),
        "every_other_image": images[::2],
        "reversed_batch": images[::-1],  # one image of it counts as contiguous to numpy, with negative strides
    }
    extractor = build(name).fit(images)
    np.testing.assert_array_equal(extractor.transform(views[view]), extractor.transform(np.ascontiguousarray(views[view])))


@pytest.mark.parametrize("name", extractor_names())
def test_transform_with_mirror_gives_the_features_of_the_images_and_of_their_mirrors(name, images):
    """The extract stage's pair for mirrored training rows; an extractor may derive the second (bovw)."""
    extractor = build(name).fit(images)
    features, mirrored = extractor.transform_with_mirror(images)
    expected = extractor.transform(np.ascontiguousarray(images[:, :, ::-1]))
    np.testing.assert_array_equal(features, extractor.transform(images))
    assert mirrored.dtype == np.float32 and mirrored.shape == expected.shape
    # float32 rounding where the mirror's features are derived (bovw: its patch values summed in another order)
    np.testing.assert_allclose(mirrored, expected, rtol=1e-5, atol=1e-5 * max(np.abs(expected).max(), 1e-6))


@pytest.mark.parametrize("name", extractor_names())
def test_an_empty_batch_gives_no_rows_of_the_right_width(name, images):
    extractor = build(name).fit(images)
    empty = images[:0]
    width = extractor.output_dim(images.shape[1:])
    assert extractor.transform(empty).shape == (0, width)
    assert [out.shape for out in extractor.transform_with_mirror(empty)] == [(0, width), (0, width)]


@pytest.mark.parametrize("name", extractor_names())
def test_same_input_same_output(name, images):
    first = build(name).fit(images).transform(images)
    second = build(name).fit(images).transform(images)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", extractor_names())
def test_params_round_trip_through_json(name):
    extractor = build(name)
    params = json.loads(json.dumps(extractor.get_params()))
    assert get_extractor(name, **params).get_params() == extractor.get_params()


@pytest.mark.parametrize("name", [n for n in extractor_names() if extractor_class(n).fitted])
def test_fitted_extractor_refuses_transform_before_fit(name, images):
    with pytest.raises(NotFittedError):
        build(name).transform(images)


@pytest.mark.parametrize("name", extractor_names())
def test_refuses_non_uint8_images(name, images):
    with pytest.raises(ValueError, match="uint8"):
        build(name).fit(images.astype(np.float32))


def test_unknown_extractor_names_the_registered_ones():
    with pytest.raises(ValueError, match="registered: .*hog"):
        get_extractor("no_such_extractor")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @features.register("hog")
        class Impostor(features.FeatureExtractor):
            pass


def test_built_ins_are_registered():
    assert {"pixels", "color_hist", "hog", "bovw"} <= set(extractor_names())


@pytest.mark.parametrize("name", extractor_names())
def test_every_point_of_the_shared_contract_passes(name, images):
    """The checks `featurebench extractor check` reports, over every registered extractor."""
    from features.contract import check_extractor

    checks = check_extractor(name, images, SMALL_PARAMS.get(name))
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.passed]
    assert not failed
    assert len(checks) == (8 if extractor_class(name).fitted else 7)
