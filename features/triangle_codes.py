"""The triangle code of Coates, Lee & Ng (2011), sum-pooled, in one read of an image's distances.

`bovw`'s encoder leaves each image's squared distances to the codewords, (patches, words): 729 x 1,600
floats, 4.7 MB, for a CIFAR-10 image. Torch's eager operations read and write that matrix once for each
step of the code (clamp, square root, the row's mean, subtraction, clamp, the pooling sums), six passes
that together took as long as the distance product itself. Compiled with numba, each patch's row
(1,600 floats, in the CPU's first-level cache) becomes its codes and is added to its pooling regions in
one read: tests/benchmarks/bench_bovw.py measures the encoder against torch.matmul.

Numba is imported on the first encoding, not with the package: the stages that never encode `bovw`
do not pay for it (features.compiled).
"""
from __future__ import annotations

import numpy as np

from features.compiled import LazyKernel


def _pool_triangle_codes(squared, columns, region_of_row, region_of_column, mirrored_region_of_column, pooled, mirrored):
    """The kernel (compiled by `compiled_kernel`): for each patch, in place, the distances as the
    square roots of `squared` (negative rounding read as 0), then its codes max(0, mean - distance)
    added to pooled[its row region, its column region] and, when `mirrored` has rows, to
    mirrored[its row region, its column region counted from the right]."""
    zero = np.float32(0.0)
    words = squared.shape[1]
    for patch in range(squared.shape[0]):
        row, column = patch // columns, patch % columns
        distances = squared[patch]
        total = np.float32(0.0)
        for word in range(words):
            distance = np.sqrt(max(distances[word], zero))
            distances[word] = distance
            total += distance
        mean = total / np.float32(words)
        out = pooled[region_of_row[row], region_of_column[column]]
        if mirrored.shape[0]:
            other = mirrored[region_of_row[row], mirrored_region_of_column[column]]
            for word in range(words):
                code = max(mean - distances[word], zero)
                out[word] += code
                other[word] += code
        else:
            for word in range(words):
                out[word] += max(mean - distances[word], zero)


_KERNEL = LazyKernel(_pool_triangle_codes, fastmath=True)


def compiled_kernel():
    """The compiled kernel, compiled (or read from numba's cache) once a process, whichever thread asks first."""
    return _KERNEL.compiled()


def region_of_positions(bounds: list[tuple[int, int]], positions: int) -> np.ndarray:
    """(positions,) the index of the [start, stop) range of `bounds` that holds each position."""
    region = np.empty(positions, np.int64)
    for index, (start, stop) in enumerate(bounds):
        region[start:stop] = index
    return region


def region_sizes(row_bounds: list, column_bounds: list) -> np.ndarray:
    """(len(row_bounds), len(column_bounds)) float32 patch counts of the pooling regions."""
    return np.array([[(bottom - top) * (right - left) for left, right in column_bounds] for top, bottom in row_bounds], np.float32)


class TrianglePooling:
    """Pools the triangle codes of one image's (rows * columns, words) squared distances over a grid
    of regions (row ranges x column ranges), into the image's row of pooled codes (region-major, then
    word), and with `mirror` also over the column ranges of the image's left-right mirror."""

    def __init__(self, rows: int, columns: int, row_bounds: list, column_bounds: list, mirror: bool):
        self.columns = columns
        self.region_of_row = region_of_positions(row_bounds, rows)
        self.region_of_column = region_of_positions(column_bounds, columns)
        # the mirror's column range [left, right) is the image's [columns - right, columns - left)
        mirrored_bounds = [(columns - right, columns - left) for left, right in column_bounds]
        self.mirrored_region_of_column = region_of_positions(mirrored_bounds, columns)
        self.grid = (len(row_bounds), len(column_bounds))
        self.mirror = mirror
        self.scales = [(1 / region_sizes(row_bounds, bounds))[:, :, None] for bounds in ([column_bounds, mirrored_bounds] if mirror else [column_bounds])]
        self.no_mirror = np.zeros((0, 0, 0), np.float32)  # the kernel's `mirrored` when there is none
        self.kernel = compiled_kernel()

    def __call__(self, squared: np.ndarray, out: np.ndarray, mirrored_out: np.ndarray | None = None) -> None:
        """squared (rows * columns, words) float32, overwritten with the distances; out and mirrored_out
        (grid rows * grid columns * words,) float32 rows of the caller's arrays, overwritten."""
        words = squared.shape[1]
        targets = [out] + ([mirrored_out] if self.mirror else [])
        regions = [target.reshape(*self.grid, words) for target in targets]
        for region in regions:
            region[...] = 0
        self.kernel(squared, self.columns, self.region_of_row, self.region_of_column, self.mirrored_region_of_column, regions[0], regions[1] if self.mirror else self.no_mirror)
        for region, scale in zip(regions, self.scales):
            region *= scale  # sums to means
