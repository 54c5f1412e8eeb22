"""The training stage's handling of mirrored feature rows (extract.mirror with augment: flip)."""
import torch

from pipeline.train import adds_mirrored_rows, with_mirrored_rows


def test_mirrored_rows_are_added_only_when_flips_are_asked_for_and_extracted(capsys):
    extracted = {"train": 0, "val": 0, "test": 0, "train_mirrored": 0, "val_mirrored": 0}
    assert adds_mirrored_rows("flip", "bovw", extracted)
    assert adds_mirrored_rows("flip+shift", "bovw", extracted)
    assert not adds_mirrored_rows("shift", "bovw", extracted)
    assert not adds_mirrored_rows("none", "bovw", extracted)
    assert not adds_mirrored_rows("flip", "bovw", {"train": 0, "val": 0, "test": 0})
    assert "bovw has no mirrored rows (extract.mirror is false)" in capsys.readouterr().out


def test_mirrored_rows_follow_the_split_with_the_same_labels():
    tensors = {"train": torch.zeros(3, 2), "train_mirrored": torch.ones(3, 2)}
    rows, labels = with_mirrored_rows(tensors, {"train": torch.tensor([0, 1, 2])}, "train")
    assert rows.tolist() == [[0, 0]] * 3 + [[1, 1]] * 3
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
