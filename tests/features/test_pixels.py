import numpy as np

from features import get_extractor


def test_pixels_is_the_flattened_image_scaled_to_unit_range(images):
    out = get_extractor("pixels").transform(images)
    assert out.shape == (len(images), 32 * 32 * 3)
    np.testing.assert_allclose(out[1].reshape(32, 32, 3), images[1] / 255, atol=1e-7)
    assert out.min() >= 0 and out.max() <= 1
