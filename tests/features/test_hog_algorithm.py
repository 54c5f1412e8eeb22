from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.feature import hog

from features.hog import _dominant_gradient, hog_batch, hog_output_dim
from tests.conftest import step_edge_image

from tests.cifar_sample import first_images, needs_shared_cifar10
BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
# skimage works in float64 and we return float32, so the bound is float32 rounding of values <= 1.
FLOAT32_ROUNDING = 2e-7


def skimage_loop(images, *, orientations, pixels_per_cell, cells_per_block, block_norm, channel_axis=None):
    return np.stack([
        hog(
            image,
            orientations=orientations,
            pixels_per_cell=(pixels_per_cell, pixels_per_cell),
            cells_per_block=(cells_per_block, cells_per_block),
            block_norm=block_norm,
            feature_vector=True,
            channel_axis=channel_axis,
        )
        for image in images
    ])


def assert_matches_skimage(images, atol=FLOAT32_ROUNDING, **params):
    expected = skimage_loop(images, **params)
    out = hog_batch(images, **params)
    assert out.dtype == np.float32
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("block_norm", BLOCK_NORMS)
@pytest.mark.parametrize("pixels_per_cell,cells_per_block", [(4, 1), (4, 2), (4, 3), (8, 1), (8, 2), (8, 3)])
@pytest.mark.parametrize("shape", [(32, 32), (32, 40), (33, 35)])
def test_grayscale_matches_skimage(rng, shape, pixels_per_cell, cells_per_block, block_norm):
    params = dict(orientations=9, pixels_per_cell=pixels_per_cell, cells_per_block=cells_per_block, block_norm=block_norm)
    assert_matches_skimage(rng.random((4, *shape)), **params)


def test_odd_and_rectangular_cells_and_blocks_match_skimage(rng):
    images = rng.random((3, 33, 35))
    params = dict(orientations=9, pixels_per_cell=(3, 5), cells_per_block=(2, 3), block_norm="L2-Hys")
    expected = np.stack([hog(image, **params) for image in images])
    np.testing.assert_allclose(hog_batch(images, **params), expected, rtol=0, atol=FLOAT32_ROUNDING)
    assert hog_output_dim(images.shape[1:], **{k: v for k, v in params.items() if k != "block_norm"}) == expected.shape[1]


@pytest.mark.parametrize("orientations", [1, 4, 6, 7, 8, 12])
def test_other_orientation_counts_match_skimage(rng, orientations):
    params = dict(orientations=orientations, pixels_per_cell=4, cells_per_block=2, block_norm="L2-Hys")
    assert_matches_skimage(rng.random((4, 24, 28)), **params)


@pytest.mark.parametrize("orientations", [4, 6, 8, 9, 12])
def test_gradients_on_bin_edges_are_binned_as_skimage_bins_them(rng, orientations):
    # Three grey levels give gradients at exactly 0, 45, 90, 135 and 180 degrees and flat areas:
    # pixels on bin edges, where the fast binning hands over to skimage's own formula.
    images = rng.integers(0, 3, (6, 33, 35)).astype(np.float64)
    assert_matches_skimage(images, orientations=orientations, pixels_per_cell=4, cells_per_block=2, block_norm="L1")


def ramps(row_offset_above: float) -> np.ndarray:
    """16x16: left half a ramp along columns, shifted by row_offset_above in its top 8 rows (else by
    0.3); right half a ramp along rows."""
    image = np.zeros((16, 16))
    image[:, :8] = np.arange(8) * 0.125
    image[:, 8:] = np.arange(16)[:, None] * 0.125
    image[:8, :8] += row_offset_above
    image[8:, :8] += 0.3
    return image


def test_an_angle_that_rounds_to_180_degrees_votes_nowhere_as_in_skimage():
    # 0.30000000000000004 - 0.3 leaves rows 7 and 8 of the left ramp a row gradient of -5.6e-17:
    # an angle of -3e-15 degrees, which `% 180` rounds to 180.0, outside every bin.
    assert np.rad2deg(np.arctan2(0.3 - 0.30000000000000004, 0.25)) % 180 == 180.0
    params = dict(orientations=9, pixels_per_cell=16, cells_per_block=1, block_norm="L1")
    dropped, kept = ramps(0.30000000000000004), ramps(0.3)
    assert_matches_skimage(np.stack([dropped, kept]), **params)
    assert hog_batch(dropped[None], **params)[0, 0] < hog_batch(kept[None], **params)[0, 0] - 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_float32_and_integer_images_are_taken_as_skimage_takes_them(rng, dtype):
    images = rng.integers(0, 4, (4, 32, 32)).astype(dtype)
    assert_matches_skimage(images, orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm="L2")


@pytest.mark.parametrize("block_norm", BLOCK_NORMS)
@pytest.mark.parametrize("shape", [(32, 32), (33, 35)])
def test_colour_uses_the_dominant_channel_as_skimage_does(rng, shape, block_norm):
    # Quantised channels make ties between channels common; argmax must break them alike.
    images = np.concatenate([rng.random((3, *shape, 3)), rng.integers(0, 3, (3, *shape, 3)) / 2])
    params = dict(orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm=block_norm, channel_axis=-1)
    assert_matches_skimage(images, **params)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_near_ties_between_channels_break_as_argmax_of_hypot(rng, dtype):
    # Channel 1 is channel 0 turned 90 degrees (an exact tie, a different vector); channel 2 is
    # channel 0 scaled by 1 + k ulp, where x*x + y*y alone can rank it otherwise than hypot.
    a, b = rng.normal(size=(2, 4, 50, 50)).astype(dtype)
    scale = (1 + rng.integers(-3, 4, size=a.shape) * np.finfo(dtype).eps).astype(dtype)
    g_row, g_col = np.stack([a, -b, a * scale]), np.stack([b, a, b * scale])
    row, col = _dominant_gradient(g_row, g_col)
    dominant = np.hypot(g_row, g_col).argmax(axis=0)[None]
    np.testing.assert_array_equal(row, np.take_along_axis(g_row, dominant, axis=0)[0])
    np.testing.assert_array_equal(col, np.take_along_axis(g_col, dominant, axis=0)[0])


NON_CONTIGUOUS_VIEWS = {
    "rot90": lambda images: np.rot90(images, axes=(1, 2)),
    "transposed": lambda images: np.swapaxes(images, 1, 2),
    "fortran_order": np.asfortranarray,
    "flipped": lambda images: images[:, ::-1],
    "every_other_image": lambda images: images[::2],
}


@pytest.mark.parametrize("view", NON_CONTIGUOUS_VIEWS)
@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_views_that_are_not_c_contiguous_match_skimage(rng, view, colour):
    """Rotated, transposed and Fortran-order arrays once lost the binning's writes through ravel()."""
    images = NON_CONTIGUOUS_VIEWS[view](rng.random((6, 24, 24, 3) if colour else (6, 24, 24)))
    assert not images.flags.c_contiguous
    params = dict(orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm="L2-Hys")
    assert_matches_skimage(images, **params, channel_axis=-1 if colour else None)
    np.testing.assert_array_equal(
        hog_batch(images, **params, channel_axis=-1 if colour else None),
        hog_batch(np.ascontiguousarray(images), **params, channel_axis=-1 if colour else None),
    )


def test_grayscale_of_a_batch_is_rgb2gray_of_each_image(rng):
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    batch = rgb2gray(images)
    for image, gray in zip(images, batch):
        np.testing.assert_array_equal(gray, rgb2gray(image))


@pytest.mark.parametrize("pixels_per_cell,cells_per_block", [(4, 2), (8, 2), (8, 1), (16, 2), (5, 3)])
@pytest.mark.parametrize("shape", [(32, 32), (33, 35)])
def test_output_size_formula(shape, pixels_per_cell, cells_per_block):
    params = dict(orientations=9, pixels_per_cell=pixels_per_cell, cells_per_block=cells_per_block)
    blocks_row = shape[0] // pixels_per_cell - cells_per_block + 1
    blocks_col = shape[1] // pixels_per_cell - cells_per_block + 1
    dim = blocks_row * blocks_col * cells_per_block**2 * 9
    assert hog_output_dim(shape, **params) == dim
    assert hog_batch(np.zeros((2, *shape)), block_norm="L1", **params).shape == (2, dim)
    assert hog_batch(np.zeros((0, *shape)), block_norm="L1", **params).shape == (0, dim)


def orientation_energy(image: np.ndarray) -> np.ndarray:
    """Sum over all cells of each orientation bin, for one uint8 RGB image."""
    out = hog_batch(rgb2gray(image)[None], orientations=9, pixels_per_cell=4, cells_per_block=1, block_norm="L1")
    return out.reshape(-1, 9).sum(0)


def test_step_edge_lights_one_orientation_bin_and_rotation_moves_it():
    vertical_edge = orientation_energy(step_edge_image(vertical=True))
    horizontal_edge = orientation_energy(step_edge_image(vertical=False))
    for energy in (vertical_edge, horizontal_edge):
        assert energy.max() > 0.99 * energy.sum()
    # A vertical edge has a horizontal gradient (0 degrees, bin 0); turned 90 degrees it has a
    # vertical one (90 degrees, the bin of 80 to 100).
    assert vertical_edge.argmax() == 0
    assert horizontal_edge.argmax() == 4
    rotated = orientation_energy(np.rot90(step_edge_image(vertical=True)).copy())
    assert rotated.argmax() == horizontal_edge.argmax()


def test_too_small_an_image_is_refused_with_the_parameters_named():
    with pytest.raises(ValueError, match="pixels_per_cell"):
        hog_batch(np.zeros((1, 32, 32)), orientations=9, pixels_per_cell=32, cells_per_block=2, block_norm="L1")


def test_colour_without_channel_axis_says_how_to_fix_it():
    with pytest.raises(ValueError, match="channel_axis=-1"):
        hog_batch(np.zeros((1, 32, 32, 3)), orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm="L1")


def test_unknown_block_norm_is_refused():
    with pytest.raises(ValueError, match="block_norm"):
        hog_batch(np.zeros((1, 32, 32)), orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm="L3")


@lru_cache(maxsize=1)
def cifar10_images(n: int) -> np.ndarray:
    """The first n images of the shared CIFAR-10 archive, uint8 (n, 32, 32, 3), read by streaming the tar."""
    return first_images(n)


@needs_shared_cifar10
@pytest.mark.parametrize("block_norm", BLOCK_NORMS)
@pytest.mark.parametrize("colour", [False, True], ids=["grayscale", "colour"])
def test_real_cifar10_images_match_skimage_within_1e_5(colour, block_norm):
    images = cifar10_images(200)
    images = images / 255.0 if colour else rgb2gray(images)
    params = dict(orientations=9, pixels_per_cell=4, cells_per_block=2, block_norm=block_norm, channel_axis=-1 if colour else None)
    assert_matches_skimage(images, atol=1e-5, **params)
