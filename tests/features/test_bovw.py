import numpy as np
import pytest
import torch

from features import get_extractor
from features.bovw import dense_patches, normalize_patches, random_patches, region_bounds, zca_whitening


def small(**overrides):
    return get_extractor("bovw", **{"n_clusters": 4, "n_patches": 300, "stride": 2, **overrides})


def test_defaults_are_coates_et_al():
    extractor = get_extractor("bovw")
    assert (extractor.n_clusters, extractor.patch_size, extractor.stride, extractor.encoding, extractor.pooling_grid) == (1600, 6, 1, "triangle", 2)
    assert extractor.whitening and extractor.output_dim((32, 32, 3)) == 4 * 1600


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


def test_triangle_code_is_mean_distance_minus_distance_for_one_patch():
    """A 6x6 image holds a single patch: the pooled code is that patch's triangle code, computed by hand."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    extractor = get_extractor("bovw", n_clusters=5, n_patches=200, pooling_grid=1).fit(images)
    patch = extractor._preprocess(dense_patches(images[:1], 6, 1).reshape(1, -1)).numpy()[0]
    distances = np.linalg.norm(extractor.codebook_ - patch, axis=1)
    np.testing.assert_allclose(extractor.transform(images[:1])[0], np.maximum(distances.mean() - distances, 0), rtol=1e-4, atol=1e-4)


def test_dense_patch_count_follows_the_stride_formula():
    patches = dense_patches(np.zeros((2, 32, 32, 3), np.uint8), patch_size=6, stride=2)
    assert patches.shape == (2, (32 - 6) // 2 + 1, (32 - 6) // 2 + 1, 6 * 6 * 3)


def test_random_patches_are_laid_out_like_dense_patches():
    images = np.random.default_rng(1).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    # on 6x6 images every 6x6 patch is the whole image, wherever it is drawn
    drawn = random_patches(images, 20, 6, np.random.default_rng(0))
    dense = dense_patches(images, 6, 1).reshape(3, -1)
    assert all(any(torch.equal(row, image) for image in dense) for row in drawn)


def test_transform_is_the_same_in_chunks_or_whole(images):
    extractor = small().fit(images)
    whole = extractor.transform(images)
    np.testing.assert_allclose(np.concatenate([extractor.transform(images[i : i + 5]) for i in range(0, len(images), 5)]), whole, rtol=1e-5, atol=1e-6)


def test_normalized_patches_have_zero_mean(rng):
    patches = normalize_patches(torch.from_numpy(rng.uniform(0, 255, (10, 27)).astype(np.float32)))
    np.testing.assert_allclose(patches.mean(1).numpy(), 0, atol=1e-4)


def test_zca_whitening_gives_identity_covariance_on_well_conditioned_data(rng):
    mixing = rng.normal(size=(6, 6))
    data = torch.from_numpy((rng.normal(size=(20000, 6)) @ mixing).astype(np.float32))
    mean, whitening = zca_whitening(data, epsilon=1e-6)
    white = ((data - mean) @ whitening).double()
    np.testing.assert_allclose(np.cov(white.numpy().T), np.eye(6), atol=0.02)
    np.testing.assert_allclose(whitening.numpy(), whitening.numpy().T, atol=1e-5)  # ZCA: the symmetric whitening


def test_region_bounds_split_positions_into_near_equal_ranges():
    assert region_bounds(27, 2) == [(0, 14), (14, 27)]
    assert region_bounds(9, 3) == [(0, 3), (3, 6), (6, 9)]


def test_the_codebook_picture_shows_its_words(images):
    figure = small().fit(images).figure(images[:4])
    assert "4 of 4 visual words" in figure.axes[0].get_title()


def test_more_clusters_than_patches_is_refused():
    with pytest.raises(ValueError, match="n_patches"):
        get_extractor("bovw", n_clusters=100, n_patches=50)


@pytest.mark.parametrize("bad", [dict(whitening="yes"), dict(whitening_epsilon=0), dict(kmeans_iterations=0), dict(encoding="soft")])
def test_impossible_settings_are_refused_naming_the_parameter(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        get_extractor("bovw", **bad)
