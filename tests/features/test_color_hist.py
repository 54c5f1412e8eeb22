import numpy as np
import pytest
from skimage.color import rgb2hsv

from features import get_extractor
from tests.conftest import constant_image


def test_histogram_sums_to_one(images):
    out = get_extractor("color_hist", bins=12).transform(images)
    assert out.shape == (len(images), 12)
    np.testing.assert_allclose(out.sum(1), 1, rtol=1e-6)


def test_ignores_pixel_order(images, rng):
    image = images[4:5]
    shuffled = rng.permutation(image.reshape(-1, 3)).reshape(image.shape)
    extractor = get_extractor("color_hist")
    np.testing.assert_array_equal(extractor.transform(image), extractor.transform(shuffled))


def test_constant_image_fills_the_bin_of_its_hue():
    image = constant_image((255, 128, 0))[None]
    hue = rgb2hsv(image[0])[0, 0, 0]
    out = get_extractor("color_hist", bins=10).transform(image)[0]
    assert out[int(hue * 10)] == pytest.approx(1.0)


@pytest.mark.parametrize("bins", [0, -3, 2.5])
def test_refuses_impossible_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        get_extractor("color_hist", bins=bins)


@pytest.mark.parametrize(
    "mode,color_space,grid,expected",
    [("hue", "hsv", 1, 8), ("per_channel", "rgb", 1, 24), ("per_channel", "lab", 2, 96), ("joint", "hsv", 1, 512), ("joint", "rgb", 2, 2048)],
)
def test_output_size_formula(images, mode, color_space, grid, expected):
    extractor = get_extractor("color_hist", bins=8, mode=mode, color_space=color_space, grid=grid)
    assert extractor.output_dim((32, 32, 3)) == expected
    assert extractor.transform(images).shape == (len(images), expected)


@pytest.mark.parametrize("mode,per_region", [("per_channel", 3), ("joint", 1)])
@pytest.mark.parametrize("color_space", ["rgb", "hsv", "lab"])
def test_every_histogram_sums_to_one(images, mode, per_region, color_space):
    out = get_extractor("color_hist", bins=4, mode=mode, color_space=color_space, grid=2).transform(images)
    np.testing.assert_allclose(out.reshape(len(images), 4 * per_region, -1).sum(-1), 1, rtol=1e-6)


def test_joint_rgb_histogram_of_a_constant_image_has_one_full_bin():
    out = get_extractor("color_hist", bins=4, mode="joint", color_space="rgb").transform(constant_image((255, 0, 130))[None])[0]
    assert out[(3 * 4 + 0) * 4 + 2] == pytest.approx(1.0)


def test_grid_sees_where_the_colour_is():
    left_red = np.zeros((1, 32, 32, 3), np.uint8)
    left_red[0, :, :16, 0] = 255
    right_red = left_red[:, :, ::-1].copy()
    extractor = get_extractor("color_hist", bins=4, mode="per_channel", color_space="rgb", grid=2)
    assert not np.array_equal(extractor.transform(left_red), extractor.transform(right_red))
    whole = get_extractor("color_hist", bins=4, mode="per_channel", color_space="rgb")
    np.testing.assert_array_equal(whole.transform(left_red), whole.transform(right_red))


@pytest.mark.parametrize("bad", [dict(mode="cubic"), dict(color_space="cmyk"), dict(grid=0)])
def test_refuses_unknown_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        get_extractor("color_hist", **bad)


@pytest.mark.parametrize("mode", ["hue", "per_channel", "joint"])
@pytest.mark.parametrize("width, grid", [(32, 2), (21, 3), (19, 2), (7, 3)])  # columns split 16+16, 7+7+7, 10+9, 3+2+2
def test_the_mirrors_histograms_are_the_images_with_the_regions_swapped_or_computed(rng, mode, width, grid):
    images = rng.integers(0, 256, (6, 9, width, 3), dtype=np.uint8)
    extractor = get_extractor("color_hist", bins=5, mode=mode, grid=grid).fit(images)
    features, mirrored = extractor.transform_with_mirror(images)
    np.testing.assert_array_equal(features, extractor.transform(images))
    np.testing.assert_array_equal(mirrored, extractor.transform(np.ascontiguousarray(images[:, :, ::-1])))


@pytest.mark.parametrize("bins", [10, 7])
def test_the_compiled_hsv_bins_are_skimage_s_for_every_rgb_colour(bins):
    """The kernel repeats rgb2hsv's float64 arithmetic instead of calling it: each of the 16.7 million
    colours must land in the bins the definition gives, min(int(channel * bins), bins - 1)."""
    from skimage.color import rgb2hsv

    from features.color_hist import _HSV_COUNTS

    kernel = _HSV_COUNTS.compiled()
    levels = np.arange(256, dtype=np.uint8)
    green, blue = (grid.ravel() for grid in np.meshgrid(levels, levels, indexing="ij"))
    each_pixel_its_region = np.arange(256 * 256).reshape(256, 256)
    for red in range(256):
        image = np.stack([np.full(256 * 256, red, np.uint8), green, blue], axis=-1).reshape(1, 256, 256, 3)
        counts = np.zeros((1, 256 * 256, 3 * bins), np.int64)
        kernel(image, each_pixel_its_region, bins, 1, counts)  # mode 1: a count in each channel's bins
        got = counts[0].reshape(-1, 3, bins).argmax(-1)
        assert (counts[0].reshape(-1, 3, bins).sum(-1) == 1).all()
        expected = np.minimum((rgb2hsv(image[0]) * bins).astype(np.int64), bins - 1).reshape(-1, 3)
        np.testing.assert_array_equal(got, expected, err_msg=f"red {red}")


@pytest.mark.parametrize("mode", ["hue", "per_channel", "joint"])
def test_hsv_histograms_of_a_strided_batch_are_its_contiguous_copy_s(images, mode):
    extractor = get_extractor("color_hist", mode=mode, color_space="hsv", grid=2, bins=6)
    strided = images[:, ::2, 1::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(extractor.transform(strided), extractor.transform(np.ascontiguousarray(strided)))
