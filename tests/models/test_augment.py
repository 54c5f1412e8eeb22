import pytest
import torch

from models.augment import augmentation, horizontal_flip


def test_flip_mirrors_about_half_the_rows_and_keeps_the_others():
    images = torch.arange(64 * 2 * 3 * 3, dtype=torch.float32).reshape(64, 2, 3, 3)
    out = horizontal_flip((2, 3, 3))(images.reshape(64, -1), torch.Generator().manual_seed(0)).reshape(64, 2, 3, 3)
    mirrored = (out == images.flip(2)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert (mirrored ^ kept).all()
    assert 16 < mirrored.sum() < 48


def test_flip_is_seeded():
    rows = torch.randn(32, 4 * 4 * 3)
    flip = horizontal_flip((4, 4, 3))
    first = flip(rows, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, flip(rows, torch.Generator().manual_seed(5)))


def test_none_means_no_augmentation_and_unknown_names_are_refused():
    assert augmentation("none", (4, 4, 3)) is None
    with pytest.raises(ValueError, match="augment must be one of"):
        augmentation("rotate", (4, 4, 3))
