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
