"""k-means as Coates, Lee & Ng (2011) ran it for their codebooks (their `run_kmeans.m`).

The centroids start as small Gaussian noise (0.1 * N(0, 1)), not as sampled patches: in the first
assignment each patch joins the random direction it is most aligned with, so the codebook grows from
directions (oriented edges, colour opponents) rather than from copies of the many flat patches. On
CIFAR-10 this scored 1.4 points above k-means from random patches (validation, 10,000 training
images, linear SVM). A centroid left without patches becomes zero, as in their code, rather than NaN.

With `mirror` (a permutation of the coordinates: a patch's left-right mirror image), the centroids
come in mirror pairs, so that an image's mirror is encoded from the image's own distances
(`features/bovw.py`): the first half start as noise, the second half as their mirrors, and an odd
last one as the mirror-symmetric part of noise. Each Lloyd step is then the step k-means would take
on the points together with their mirrors, without assigning the mirrors: a mirrored point would go
to the mirror of its original's centroid, so centroid i's new sum is its own points' sum plus the
mirror of its partner's. The pair stays exactly closed in float32: c_partner and mirror(c_i) are
the same two sums added in the other order.

`run_on_torch_threads` spreads the assignment's chunks over torch's threads; the bag-of-visual-words
encoder, the only user of this k-means, spreads its images the same way.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

ASSIGN_CHUNK = 1024  # points per assignment product: 1024 x 1600 scores x 4 bytes = 6.5 MB, cache-sized


def nearest_centroid(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of each point's nearest centroid: argmax of x.c - |c|^2 / 2, which ranks as -|x - c|^2."""
    return assign(with_ones(points), centroids)


def with_ones(points: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, d + 1) with a column of ones, for `assign`'s single product."""
    return torch.cat([points, torch.ones(len(points), 1, dtype=points.dtype)], 1)


def assign(points_with_ones: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """`nearest_centroid` of (n, d + 1) points from `with_ones`: [x, 1] @ [c, -|c|^2 / 2]^T scores every
    centroid in one product, with no bias pass after it, a chunk of points per torch thread."""
    scored = torch.cat([centroids, -0.5 * (centroids * centroids).sum(1, keepdim=True)], 1).T.contiguous()
    labels = torch.empty(len(points_with_ones), dtype=torch.long)

    def score(start: int, buffers: dict) -> None:
        chunk = points_with_ones[start : start + ASSIGN_CHUNK]
        if "scores" not in buffers:
            buffers["scores"] = torch.empty(ASSIGN_CHUNK, len(centroids))
        scores = torch.mm(chunk, scored, out=buffers["scores"][: len(chunk)])
        labels[start : start + len(chunk)] = scores.argmax(1)

    run_on_torch_threads(range(0, len(points_with_ones), ASSIGN_CHUNK), score)
    return labels


def run_on_torch_threads(chunk_starts: range, work) -> None:
    """Call work(start, buffers) for every start on as many Python threads as torch has threads.

    Torch runs single-threaded inside each (torch's thread count is set back when done), so whole
    chunks run in parallel instead of every small operation being split across the cores, which on
    a busy machine waits on whichever core is descheduled: measured on 2 shared cores, a bovw image
    went 4x faster this way. Threads take the next start as they free up; `buffers` is a dict that
    stays with its thread, for arrays reused from chunk to chunk. An exception in work is raised here.
    """
    threads, starts, lock = torch.get_num_threads(), iter(chunk_starts), threading.Lock()

    def worker():
        torch.set_num_threads(1)  # in every thread: MKL keeps a count per thread, and a new one would use all cores
        buffers = {}
        while True:
            with lock:
                start = next(starts, None)
            if start is None:
                return
            work(start, buffers)

    try:
        if threads == 1:
            return worker()
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
    finally:
        torch.set_num_threads(threads)


def mirror_partners(n_clusters: int) -> torch.Tensor:
    """partner[j]: the index of centroid j's mirror image among `kmeans(..., mirror=...)`'s centroids."""
    half = n_clusters // 2
    return torch.cat([torch.arange(half, 2 * half), torch.arange(half), torch.arange(2 * half, n_clusters)])


def kmeans(points: torch.Tensor, n_clusters: int, iterations: int, seed: int, mirror: torch.Tensor | None = None) -> torch.Tensor:
    """(n_clusters, d) float32 centroids after `iterations` Lloyd steps from 0.1 * N(0, 1) centroids.

    mirror : (d,) optional coordinate permutation of order 2 (x[mirror] is x's mirror image); then
        centroids[mirror_partners(n_clusters)][:, mirror] equals centroids exactly (see the module's docstring).
    """
    points = points.float()
    centroids = initial_centroids(n_clusters, points.shape[1], seed, mirror)
    points_with_ones = with_ones(points)
    for _ in range(iterations):
        centroids = lloyd_step(points, points_with_ones, centroids, mirror)
    return centroids


def initial_centroids(n_clusters: int, dim: int, seed: int, mirror: torch.Tensor | None = None) -> torch.Tensor:
    """0.1 * N(0, 1) noise; with `mirror`, noise for the first half, their mirrors, and an odd last one made symmetric."""
    generator = torch.Generator().manual_seed(seed)
    if mirror is None:
        return 0.1 * torch.randn(n_clusters, dim, generator=generator)
    noise = 0.1 * torch.randn((n_clusters + 1) // 2, dim, generator=generator)
    half, rest = noise[: n_clusters // 2], noise[n_clusters // 2 :]
    return torch.cat([half, half[:, mirror], (rest + rest[:, mirror]) / 2])  # `rest` is empty when n_clusters is even


def lloyd_step(points: torch.Tensor, points_with_ones: torch.Tensor, centroids: torch.Tensor, mirror: torch.Tensor | None = None) -> torch.Tensor:
    """Each centroid moved to the mean of the points nearest to it (zero when none are); with `mirror`,
    of those points and the mirrors of its partner's points."""
    n_clusters = len(centroids)
    labels = assign(points_with_ones, centroids)
    sums = torch.zeros_like(centroids).index_add_(0, labels, points)
    counts = torch.bincount(labels, minlength=n_clusters).to(points.dtype)[:, None]
    if mirror is not None:
        partner = mirror_partners(n_clusters)
        sums, counts = sums + sums[partner][:, mirror], counts + counts[partner]
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(centroids))
