import numpy as np
import pytest

from pipeline.io import atomic_directory, atomic_path, load_arrays, read_json, save_arrays, write_json


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_keeps_the_old_result_when_the_writer_fails(tmp_path):
    target = tmp_path / "features"
    with atomic_directory(target) as out:
        (out / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as out:
            (out / "a.txt").write_text("new")
            raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]


def test_round_trips(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "m.json") == {"a": [1, 2], "b": 1}
    save_arrays(tmp_path / "x.npz", images=np.zeros((2, 3), np.uint8))
    assert load_arrays(tmp_path / "x.npz")["images"].shape == (2, 3)


def test_arrays_holding_pickled_objects_are_refused(tmp_path):
    """A tampered .npz could hold pickled objects that run code when loaded; only plain arrays load."""
    import numpy as np
    import pytest

    from pipeline.io import load_arrays

    path = tmp_path / "tampered.npz"
    np.savez(path, images=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_arrays(path)


def test_arrays_named_to_skip_are_left_out(tmp_path):
    save_arrays(tmp_path / "x.npz", train=np.zeros((2, 3)), train_mirrored=np.ones((2, 3)))
    assert set(load_arrays(tmp_path / "x.npz", skip=("train_mirrored",))) == {"train"}
    assert set(load_arrays(tmp_path / "x.npz")) == {"train", "train_mirrored"}


def test_outputs_get_the_permissions_the_umask_gives_not_private_ones(tmp_path):
    """mkstemp and mkdtemp make 0600 files and 0700 folders: outputs others on a shared disk must read."""
    import os
    import stat

    import pytest

    from pipeline.io import UMASK, atomic_directory, atomic_path

    if UMASK & 0o044:
        pytest.skip(f"umask {UMASK:04o} keeps files from others anyway: mkstemp's 0600 is what it gives")
    with atomic_path(tmp_path / "a.json") as temporary:
        temporary.write_text("{}")
    with atomic_directory(tmp_path / "folder") as temporary:
        (temporary / "x").write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o666 & ~UMASK
    assert stat.S_IMODE(os.stat(tmp_path / "folder").st_mode) == 0o777 & ~UMASK
