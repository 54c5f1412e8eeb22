"""Coates et al.'s k-means: finds separated clusters, repeats for a seed, zeroes centroids left empty,
keeps centroids in exact mirror pairs when asked."""
from __future__ import annotations

import torch

from features.kmeans import initial_centroids, kmeans, lloyd_step, mirror_partners, nearest_centroid, with_ones


def blobs(centers, per_cluster=200, spread=0.05, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor(centers, dtype=torch.float32)
    points = centers.repeat_interleave(per_cluster, 0)
    return points + spread * torch.randn(points.shape, generator=generator), centers


def test_separated_clusters_are_found():
    points, centers = blobs([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    centroids = kmeans(points, 4, iterations=20, seed=0)
    # every true centre has a centroid within the noise, whatever their order
    assert torch.cdist(centers, centroids).min(1).values.max() < 0.05


def test_nearest_centroid_is_the_smallest_distance_across_chunks():
    generator = torch.Generator().manual_seed(1)
    points, centroids = torch.randn(20000, 6, generator=generator), torch.randn(30, 6, generator=generator)
    assert torch.equal(nearest_centroid(points, centroids), torch.cdist(points, centroids).argmin(1))


def test_same_seed_same_centroids_other_seed_other_start():
    points, _ = blobs([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], spread=0.5)
    assert torch.equal(kmeans(points, 5, 10, seed=3), kmeans(points, 5, 10, seed=3))
    assert not torch.equal(kmeans(points, 5, 1, seed=3), kmeans(points, 5, 1, seed=4))


def test_a_centroid_without_points_is_zero_not_nan():
    points, _ = blobs([[5.0, 5.0]], spread=0.01)
    centroids = kmeans(points, 8, iterations=3, seed=0)
    assert torch.isfinite(centroids).all()
    empty = (centroids == 0).all(1)
    assert 0 < empty.sum() < 8  # all points near (5, 5) go to the few start directions that point there


def test_centroids_are_the_same_on_one_thread_or_several():
    points, _ = blobs([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]], per_cluster=1500, spread=0.7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = kmeans(points, 6, iterations=5, seed=0)
        torch.set_num_threads(3)
        assert torch.equal(kmeans(points, 6, iterations=5, seed=0), alone)
        assert torch.get_num_threads() == 3  # the assignment's worker threads leave torch's count as it was
    finally:
        torch.set_num_threads(threads)


MIRROR = torch.tensor([1, 0, 3, 2, 4])  # swaps coordinates 0<->1 and 2<->3, keeps 4: a permutation of order 2


def test_centroids_come_in_exact_mirror_pairs_and_an_odd_last_one_is_its_own_mirror():
    points, _ = blobs([[2.0, 0.0, 1.0, 0.0, 0.5], [0.0, -2.0, 0.0, 1.0, 0.0], [1.0, 1.0, -1.0, 0.0, 0.0]], spread=0.5)
    for n_clusters in (6, 7):
        centroids = kmeans(points, n_clusters, iterations=10, seed=0, mirror=MIRROR)
        partner = mirror_partners(n_clusters)
        assert torch.equal(partner[partner], torch.arange(n_clusters))
        assert torch.equal(centroids[partner][:, MIRROR], centroids)  # exact, not within rounding
        assert (centroids.abs().sum(1) > 0).all()
        assert partner[-1] == (n_clusters - 1 if n_clusters % 2 else n_clusters // 2 - 1)  # odd: the last is its own partner


def test_a_mirror_paired_step_is_the_step_on_the_points_and_their_mirrors():
    """Lloyd on the points plus their mirrors, from mirror-paired centroids, without assigning the mirrors."""
    generator = torch.Generator().manual_seed(2)
    points = torch.randn(3000, 5, generator=generator) + torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0])
    both = torch.cat([points, points[:, MIRROR]])
    centroids = initial_centroids(7, 5, seed=1, mirror=MIRROR) * 10
    paired = lloyd_step(points, with_ones(points), centroids, MIRROR)
    plain = lloyd_step(both, with_ones(both), centroids)
    torch.testing.assert_close(paired, plain, rtol=1e-5, atol=1e-6)


def test_without_mirror_the_start_is_the_plain_noise():
    expected = 0.1 * torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(initial_centroids(5, 3, seed=4), expected)
