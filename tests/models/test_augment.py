import pytest
import torch

from models.augment import augmentation, flip_then_shift, horizontal_flip, random_shift


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


def test_shift_moves_each_image_within_the_range_and_fills_with_zero():
    images = torch.arange(1, 1 + 40 * 6 * 7 * 3, dtype=torch.float32).reshape(40, 6, 7, 3)
    out = random_shift((6, 7, 3), pixels=2)(images.reshape(40, -1), torch.Generator().manual_seed(1)).reshape(40, 6, 7, 3)
    moves = set()
    for original, moved in zip(images, out):
        # find the (dy, dx) that explains the output: moved[y, x] = original[y + dy, x + dx] where inside
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(moved, torch.nn.functional.pad(original, (0, 0, 2, 2, 2, 2))[2 + dy : 8 + dy, 2 + dx : 9 + dx])
        ]
        assert len(matches) == 1
        moves.add(matches[0])
    assert len(moves) > 10  # the offsets vary from image to image


def test_flip_and_shift_compose_and_are_seeded():
    rows = torch.randn(16, 5 * 5 * 3)
    both = augmentation("flip+shift", (5, 5, 3))
    first = both(rows, torch.Generator().manual_seed(2))
    torch.testing.assert_close(first, both(rows, torch.Generator().manual_seed(2)))
    assert first.shape == rows.shape and not torch.equal(first, rows)


@pytest.mark.parametrize("image_shape", [(5, 5, 3), (32, 32, 3), (6, 9, 1)])
def test_flip_then_shift_in_one_gather_equals_the_flip_then_the_shift(image_shape):
    rows = torch.randn(64, image_shape[0] * image_shape[1] * image_shape[2])
    flip, shift, both = horizontal_flip(image_shape), random_shift(image_shape), flip_then_shift(image_shape)
    one, two = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(3):  # the same draws in the same order: the generators stay in step batch after batch
        torch.testing.assert_close(both(rows, one), shift(flip(rows, two), two), rtol=0, atol=0)
    assert augmentation("flip+shift", image_shape).__qualname__.startswith("flip_then_shift")
