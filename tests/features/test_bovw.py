import numpy as np
import pytest
import torch

from numpy.lib.stride_tricks import sliding_window_view

from features import get_extractor
from features.bovw import dense_patches, normalize_patches, pixel_major_order, random_patches, region_bounds, strided_patches, zca_whitening


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


def reference_encode(extractor, images: np.ndarray) -> np.ndarray:
    """Coates et al.'s encoding written straight from its definition, in float64, one image at a time."""
    p, s, g, k = extractor.patch_size, extractor.stride, extractor.pooling_grid, extractor.n_clusters
    codebook = extractor.codebook_.astype(np.float64)
    features = []
    for image in images.astype(np.float64):
        windows = sliding_window_view(image, (p, p), axis=(0, 1))[::s, ::s]  # (rows, cols, 3, p, p)
        rows, cols = windows.shape[:2]
        patches = windows.reshape(rows * cols, 3 * p * p)  # channel-major, as the codebook
        patches = (patches - patches.mean(1, keepdims=True)) / np.sqrt(patches.var(1, ddof=1, keepdims=True) + 10)
        patches = (patches - extractor.patch_mean_) @ extractor.whitening_.astype(np.float64)
        distances = np.linalg.norm(patches[:, None, :] - codebook[None], axis=2)
        if extractor.encoding == "triangle":
            codes = np.maximum(distances.mean(1, keepdims=True) - distances, 0)
        else:
            codes = np.eye(k)[distances.argmin(1)]
        codes = codes.reshape(rows, cols, k)
        features.append(np.concatenate([
            codes[top:bottom, left:right].mean((0, 1))
            for top, bottom in region_bounds(rows, g)
            for left, right in region_bounds(cols, g)
        ]))
    return np.stack(features)


@pytest.mark.parametrize("settings", [dict(), dict(stride=1, pooling_grid=3), dict(patch_size=5, whitening=False)])
def test_triangle_features_match_the_definition_within_float32_rounding(rng, settings):
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    extractor = get_extractor("bovw", **{"n_clusters": 40, "n_patches": 2000, "stride": 2, **settings}).fit(images)
    expected = reference_encode(extractor, images)
    np.testing.assert_allclose(extractor.transform(images), expected, rtol=1e-5, atol=1e-5 * expected.max())


def test_triangle_features_of_flat_patches_stay_within_the_rounding_of_the_expanded_distance(images):
    """Constant and step-edge images hold patches that sit on a codeword: there |y|^2 + |c|^2 - 2 y.c
    cancels to its float32 rounding (1e-7 of |y|^2) and the square root lifts that to ~3e-4 of |y|.
    The previous encoder had the same error; noise images (above) stay within 1e-5."""
    extractor = get_extractor("bovw", n_clusters=40, n_patches=2000, stride=2).fit(images)
    expected = reference_encode(extractor, images)
    np.testing.assert_allclose(extractor.transform(images), expected, rtol=1e-5, atol=2e-3 * expected.max())


def test_hard_features_are_the_histograms_of_the_definition(images):
    extractor = get_extractor("bovw", n_clusters=40, n_patches=2000, stride=2, encoding="hard").fit(images)
    # exact here; codes could differ only where two words are equally near, within float32 rounding
    np.testing.assert_allclose(extractor.transform(images), reference_encode(extractor, images), atol=1e-6)


def test_transform_is_the_same_on_one_thread_or_several(images):
    extractor = small(stride=1).fit(images)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = extractor.transform(images)
        torch.set_num_threads(3)
        np.testing.assert_array_equal(extractor.transform(images), alone)
        assert torch.get_num_threads() == 3  # transform leaves torch's threads as it found them
    finally:
        torch.set_num_threads(threads)


def test_transform_reads_non_contiguous_images(images):
    extractor = small().fit(images)
    flipped = images[:, :, ::-1]
    np.testing.assert_array_equal(extractor.transform(flipped), extractor.transform(flipped.copy()))


def test_strided_patches_are_dense_patches_in_pixel_major_order(rng):
    images = rng.integers(0, 256, (2, 11, 9, 3), dtype=np.uint8)
    dense = dense_patches(images, patch_size=4, stride=3).reshape(-1, 48)
    np.testing.assert_array_equal(strided_patches(images, patch_size=4, stride=3).numpy(), dense[:, pixel_major_order(4)].numpy())


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
