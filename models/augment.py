"""Training-time augmentation of raw-pixel rows: a mirrored cat is still a cat, and the MLP sees twice the data."""
from __future__ import annotations

from typing import Callable

import torch

AUGMENTATIONS = ("none", "flip")


def horizontal_flip(image_shape: tuple[int, int, int]) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
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


def augmentation(name: str, image_shape: tuple[int, int, int]):
    """The augment function for a params name, or None for "none"."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {name!r}")
    return horizontal_flip(image_shape) if name == "flip" else None
