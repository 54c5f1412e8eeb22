"""Training-time augmentation of raw-pixel rows: a mirrored or slightly moved cat is still a cat."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

AUGMENTATIONS = ("none", "flip", "shift", "flip+shift")
SHIFT_PIXELS = 2  # up to 2 of 32 pixels in each direction: the object stays in the frame

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def horizontal_flip(image_shape: tuple[int, int, int]) -> Augment:
    """augment(batch, generator): each (H * W * C) row mirrored left-right with probability 1/2.

    Exact only for pixel rows standardized with per-channel statistics (`channel_standardization`):
    per-pixel statistics are not mirror-symmetric.
    """
    height, width, channels = image_shape

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(len(batch), generator=generator) < 0.5
        images = batch.view(len(batch), height, width, channels)
        mirrored = torch.where(flip.to(batch.device)[:, None, None, None], images.flip(2), images)
        return mirrored.reshape(len(batch), -1)

    return augment


def random_shift(image_shape: tuple[int, int, int], pixels: int = SHIFT_PIXELS) -> Augment:
    """augment(batch, generator): each row's image moved by a random (dy, dx) in [-pixels, pixels]^2.

    The uncovered border is zero, the channel mean of standardized pixels; one gather for the batch.
    """
    height, width, channels = image_shape

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(batch)
        padded = torch.nn.functional.pad(batch.view(n, height, width, channels), (0, 0, pixels, pixels, pixels, pixels))
        dy, dx = (torch.randint(0, 2 * pixels + 1, (2, n), generator=generator)).to(batch.device)
        rows = dy[:, None] + torch.arange(height, device=batch.device)
        cols = dx[:, None] + torch.arange(width, device=batch.device)
        moved = padded[torch.arange(n, device=batch.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return moved.reshape(n, -1)

    return augment


def flip_then_shift(image_shape: tuple[int, int, int], pixels: int = SHIFT_PIXELS) -> Augment:
    """horizontal_flip then random_shift, the same random draws in the same order, as one gather.

    Each output pixel is copied from its source pixel of the original row (a zero past the edge), the
    sources of every (flip, dy, dx) tabled once: one pass over the batch instead of a flip, a padded copy
    and a gather with three index tensors (on CIFAR-10's 128-row minibatches, a ninth of an MLP epoch).
    """
    height, width, channels = image_shape
    offsets = torch.arange(-pixels, pixels + 1)
    flip, dy, dx = (grid.reshape(-1) for grid in torch.meshgrid(torch.tensor([0, 1]), offsets, offsets, indexing="ij"))
    source_rows = torch.arange(height) + dy[:, None]  # output row r reads row r + dy of the flipped image,
    shifted_cols = torch.arange(width) + dx[:, None]  # column c + dx of the flipped image, which is
    source_cols = torch.where(flip[:, None] == 1, width - 1 - shifted_cols, shifted_cols)  # this column of the original
    inside = ((source_rows >= 0) & (source_rows < height))[:, :, None] & ((shifted_cols >= 0) & (shifted_cols < width))[:, None, :]
    zero = -1  # past the edge: the zero pixel appended after the batch's pixels
    sources = torch.where(inside, source_rows[:, :, None] * width + source_cols[:, None, :], zero).view(len(flip), -1)  # (2 * 25, H * W)
    moves = 2 * pixels + 1

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(batch)
        flipped = torch.rand(n, generator=generator) < 0.5  # horizontal_flip's draw, then random_shift's
        shift_y, shift_x = torch.randint(0, moves, (2, n), generator=generator)
        index = sources[(flipped.long() * moves + shift_y) * moves + shift_x]  # (n, H * W)
        index = torch.where(index == zero, n * height * width, index + (torch.arange(n) * height * width)[:, None])
        pixels_and_zero = torch.cat([batch.reshape(n * height * width, channels), batch.new_zeros(1, channels)])
        return pixels_and_zero.index_select(0, index.view(-1).to(batch.device)).view(n, -1)

    return augment


def augmentation(name: str, image_shape: tuple[int, int, int]) -> Augment | None:
    """The augment function for a params name ("flip+shift": flip, then shift), or None for "none"."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {name!r}")
    if name == "none":
        return None
    if name == "flip+shift":
        return flip_then_shift(image_shape)
    steps = [{"flip": horizontal_flip, "shift": random_shift}[part](image_shape) for part in name.split("+")]

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in steps:
            batch = step(batch, generator)
        return batch

    return augment if len(steps) > 1 else steps[0]


class MirroredImageRows:
    """A row source of pixel rows, each image mirrored left-right as it is read: the deterministic flips a
    full-batch solver (models.solvers) trains on, appended to the rows themselves, where SGD draws them per batch.

    Exact for rows standardized per channel, like `horizontal_flip`.
    """

    def __init__(self, source, image_shape: tuple[int, int, int]):
        self.source, self.image_shape = source, tuple(image_shape)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def dim(self) -> int:
        return self.source.dim

    def rows(self, indices) -> np.ndarray:
        batch = np.asarray(self.source.rows(indices))
        return np.ascontiguousarray(batch.reshape(len(batch), *self.image_shape)[:, :, ::-1]).reshape(len(batch), -1)
