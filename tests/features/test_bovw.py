import numpy as np
import pytest

from features import get_extractor
from features.bovw import dense_patches, normalize_patches


def small(**overrides):
    return get_extractor("bovw", **{"n_clusters": 4, "n_patches": 300, **overrides})


def test_codebook_is_the_same_for_the_same_seed(images):
    first = small(seed=3).fit(images).codebook_
    np.testing.assert_array_equal(first, small(seed=3).fit(images).codebook_)
    assert not np.array_equal(first, small(seed=4).fit(images).codebook_)


def test_codebook_shape_is_clusters_by_patch_length(images):
    assert small(patch_size=5).fit(images).codebook_.shape == (4, 5 * 5 * 3)


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_hard_histograms_sum_to_one_per_region(images, grid):
    out = small(encoding="hard", pooling_grid=grid).fit(images).transform(images)
    assert out.shape == (len(images), grid * grid * 4)
    np.testing.assert_allclose(out.reshape(len(images), grid * grid, 4).sum(-1), 1, rtol=1e-5)


def test_triangle_codes_are_nonnegative_and_sparse(images):
    out = small(encoding="triangle").fit(images).transform(images)
    assert (out >= 0).all()
    assert (out == 0).any()


def test_dense_patch_count_follows_the_stride_formula():
    patches = dense_patches(np.zeros((2, 32, 32, 3), np.uint8), patch_size=6, stride=2)
    assert patches.shape == (2, (32 - 6) // 2 + 1, (32 - 6) // 2 + 1, 6 * 6 * 3)


def test_normalized_patches_have_zero_mean(rng):
    patches = normalize_patches(rng.uniform(0, 255, (10, 27)).astype(np.float32))
    np.testing.assert_allclose(patches.mean(1), 0, atol=1e-4)


def test_more_clusters_than_patches_is_refused():
    with pytest.raises(ValueError, match="n_patches"):
        get_extractor("bovw", n_clusters=100, n_patches=50)
