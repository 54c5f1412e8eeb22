import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.feature import hog

from features import get_extractor
from tests.conftest import step_edge_image


@pytest.mark.parametrize("pixels_per_cell,cells_per_block", [(4, 2), (8, 2), (8, 1), (16, 2)])
def test_output_size_formula(pixels_per_cell, cells_per_block):
    extractor = get_extractor("hog", orientations=9, pixels_per_cell=pixels_per_cell, cells_per_block=cells_per_block)
    blocks = 32 // pixels_per_cell - cells_per_block + 1
    assert extractor.output_dim((32, 32, 3)) == blocks * blocks * cells_per_block**2 * 9
    assert extractor.transform(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, extractor.output_dim((32, 32, 3)))


def test_matches_skimage_on_grayscale(images):
    out = get_extractor("hog").transform(images)
    expected = hog(rgb2gray(images[3]), orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(out[3], expected, atol=1e-6)


def orientation_energy(image: np.ndarray) -> np.ndarray:
    """Sum over all blocks and cells of each orientation bin."""
    out = get_extractor("hog", orientations=9, pixels_per_cell=4, cells_per_block=1).transform(image[None])[0]
    return out.reshape(-1, 9).sum(0)


def test_step_edge_lights_one_orientation_bin_and_rotation_moves_it():
    vertical_edge = orientation_energy(step_edge_image(vertical=True))
    horizontal_edge = orientation_energy(step_edge_image(vertical=False))
    assert vertical_edge.argmax() != horizontal_edge.argmax()
    for energy in (vertical_edge, horizontal_edge):
        assert energy.max() > 0.99 * energy.sum()
    rotated = orientation_energy(np.rot90(step_edge_image(vertical=True)).copy())
    assert rotated.argmax() == horizontal_edge.argmax()


def test_cells_larger_than_the_image_are_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="pixels_per_cell"):
        get_extractor("hog", pixels_per_cell=32, cells_per_block=2).output_dim((32, 32, 3))


def test_color_variant_matches_skimage_on_rgb(images):
    out = get_extractor("hog", color=True).transform(images)
    expected = hog(images[4] / 255.0, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys", channel_axis=-1)
    np.testing.assert_allclose(out[4], expected, atol=1e-6)
    assert not np.allclose(out[4], get_extractor("hog").transform(images[4:5])[0])  # noise: channels disagree
