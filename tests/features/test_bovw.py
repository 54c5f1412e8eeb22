import numpy as np
import pytest
import torch

from numpy.lib.stride_tricks import sliding_window_view

from features import get_extractor
from features.bovw import (
    dense_patches,
    mirror_symmetric_zca,
    mirrored_patch_order,
    normalize_patches,
    pixel_major_order,
    random_patches,
    region_bounds,
    strided_patches,
    zca_whitening,
)
from features.triangle_codes import TrianglePooling
from tests.cifar_sample import first_images, needs_shared_cifar10


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
    features, expected = extractor.transform(images), reference_encode(extractor, images)
    # exact on the noise images; codes could differ only where two words are equally near, within float32 rounding
    np.testing.assert_allclose(features[4:], expected[4:], atol=1e-6)
    # the other four hold flat patches, mirror-symmetric: exactly as near a word as its mirror, so which
    # of the pair they count for is rounding's choice; the pair's count is not
    def per_pair(codes):
        codes = codes.reshape(len(codes), -1, 40)
        return codes + codes[:, :, extractor.mirrored_codeword_]

    np.testing.assert_allclose(per_pair(features), per_pair(expected), atol=1e-6)


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


@pytest.mark.parametrize("size, grid", [(7, 2), (9, 3), (5, 1)])
def test_triangle_pooling_is_the_mean_code_of_each_region_of_the_image_and_of_its_mirror(rng, size, grid):
    squared = rng.random((size * size, 6)).astype(np.float32) * 4
    squared[3, 2] = -1e-6  # rounding below zero reads as a distance of 0
    distances = np.sqrt(np.maximum(squared, 0))
    codes = np.maximum(distances.mean(1, keepdims=True) - distances, 0).reshape(size, size, 6)
    bounds = region_bounds(size, grid)
    out, mirrored_out = np.full(grid * grid * 6, np.nan, np.float32), np.full(grid * grid * 6, np.nan, np.float32)
    TrianglePooling(size, size, bounds, bounds, mirror=True)(squared.copy(), out, mirrored_out)
    mirrored_codes = codes[:, ::-1]  # the mirror's patch at column c is the image's at column size - 1 - c
    for which, expected_codes in ((out, codes), (mirrored_out, mirrored_codes)):
        expected = [expected_codes[top:bottom, left:right].mean((0, 1)) for top, bottom in bounds for left, right in bounds]
        np.testing.assert_allclose(which.reshape(-1, 6), np.array(expected), rtol=1e-5, atol=1e-6)
    alone = np.empty_like(out)
    TrianglePooling(size, size, bounds, bounds, mirror=False)(squared.copy(), alone)
    np.testing.assert_allclose(alone, out, rtol=1e-6, atol=0)


def test_the_codebook_picture_shows_its_words(images):
    figure = small().fit(images).figure(images[:4])
    assert "4 of 4 visual words" in figure.axes[0].get_title()


def test_more_clusters_than_patches_is_refused():
    with pytest.raises(ValueError, match="n_patches"):
        get_extractor("bovw", n_clusters=100, n_patches=50)


@pytest.mark.parametrize("bad", [dict(whitening="yes"), dict(whitening_epsilon=0), dict(whitening_epsilon=float("inf")), dict(kmeans_iterations=0), dict(encoding="soft"), dict(seed=1.7)])
def test_impossible_settings_are_refused_naming_the_parameter(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        get_extractor("bovw", **bad)


# --- mirrors: an image's mirror encoded from the image's own distances ----------------------------

def test_the_mirrored_patch_order_mirrors_dense_patches(rng):
    images = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    patches = dense_patches(images, patch_size=4, stride=1)  # (2, 6, 8, 48)
    mirrored = dense_patches(np.ascontiguousarray(images[:, :, ::-1]), patch_size=4, stride=1)
    # the mirror's patch at column c is the image's patch at column 7 - c, mirrored
    np.testing.assert_array_equal(mirrored.numpy(), patches.flip(2)[..., mirrored_patch_order(4)].numpy())


@pytest.mark.parametrize("n_clusters", [40, 41])
@pytest.mark.parametrize("whitening", [True, False])
def test_codebook_and_whitening_are_closed_under_mirroring(images, n_clusters, whitening):
    extractor = get_extractor("bovw", n_clusters=n_clusters, n_patches=2000, whitening=whitening).fit(images)
    mirror = mirrored_patch_order(6).numpy()
    codebook, partner = extractor.codebook_, extractor.mirrored_codeword_
    # every mirrored codeword is a codeword, found by distance (not by trusting `partner`) ...
    nearest = np.linalg.norm(codebook[:, mirror][:, None] - codebook[None], axis=2).min(1)
    assert nearest.max() <= 1e-5 * np.abs(codebook).max()
    # ... and `partner` names it: an involution, exactly
    np.testing.assert_array_equal(partner[partner], np.arange(n_clusters))
    np.testing.assert_array_equal(codebook[partner][:, mirror], codebook)
    np.testing.assert_array_equal(extractor.whitening_[mirror][:, mirror], extractor.whitening_)  # W P = P W
    np.testing.assert_array_equal(extractor.patch_mean_[mirror], extractor.patch_mean_)
    assert len(np.unique(codebook, axis=0)) > n_clusters // 2  # pairs, not every word its own mirror


def test_mirror_symmetric_zca_is_the_zca_of_the_patches_and_their_mirrors(rng):
    patches = normalize_patches(random_patches(rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8), 3000, 4, rng))
    mirror = mirrored_patch_order(4)
    mean, whitening = mirror_symmetric_zca(patches, 0.1, mirror)
    expected_mean, expected_whitening = zca_whitening(torch.cat([patches, patches[:, mirror]]), 0.1)
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(whitening, expected_whitening, rtol=0, atol=1e-5 * expected_whitening.abs().max().item())


def cifar_crops(height: int, width: int, n: int = 40) -> np.ndarray:
    """Real CIFAR-10 images cropped to an odd size: the pooling regions and patch grid are then uneven."""
    return np.ascontiguousarray(first_images(n)[:, 5 : 5 + height, 3 : 3 + width])


MIRROR_SETTINGS = [
    dict(size=(19, 23), stride=1, pooling_grid=2),
    dict(size=(19, 23), stride=1, pooling_grid=3),
    dict(size=(19, 24), stride=2, pooling_grid=2),  # (24 - 6) % 2 == 0: the mirror's patches are the image's
    dict(size=(19, 24), stride=2, pooling_grid=3),
    dict(size=(19, 23), stride=2, pooling_grid=2),  # (23 - 6) % 2 == 1: they are not, the mirror is encoded itself
]


@needs_shared_cifar10
@pytest.mark.parametrize("encoding", ["triangle", "hard"])
@pytest.mark.parametrize("settings", MIRROR_SETTINGS, ids=lambda s: f"{s['size'][0]}x{s['size'][1]}-stride{s['stride']}-grid{s['pooling_grid']}")
def test_mirrored_codes_are_the_codes_of_the_mirrored_images(settings, encoding):
    images = cifar_crops(*settings["size"])
    extractor = get_extractor("bovw", n_clusters=41, n_patches=3000, stride=settings["stride"], pooling_grid=settings["pooling_grid"], encoding=encoding)
    extractor.fit(images)
    codes, mirrored_codes = extractor.transform_with_mirror(images)
    np.testing.assert_array_equal(codes, extractor.transform(images))
    expected = extractor.transform(np.ascontiguousarray(images[:, :, ::-1]))
    assert mirrored_codes.dtype == np.float32 and mirrored_codes.shape == expected.shape
    # triangle: float32 rounding (the mirror's patch values are summed in another order); hard: encoded
    # as images, the same bytes
    np.testing.assert_allclose(mirrored_codes, expected, rtol=1e-5, atol=1e-5 * expected.max())


def test_a_codebook_fit_before_mirror_pairs_has_its_mirrors_encoded_as_images(images):
    """A state.npz saved before `mirrored_codeword_` existed: the mirrors cannot be derived, so they are encoded."""
    extractor = small(stride=1).fit(images)
    del extractor.mirrored_codeword_
    codes, mirrored_codes = extractor.transform_with_mirror(images)
    np.testing.assert_array_equal(codes, extractor.transform(images))
    np.testing.assert_array_equal(mirrored_codes, extractor.transform(np.ascontiguousarray(images[:, :, ::-1])))
