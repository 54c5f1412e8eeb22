"""Class names as users' folders and archives spell them, and layouts where a class is called train."""
from __future__ import annotations

import os
import unicodedata
import zipfile

import pytest
from PIL import Image

from pipeline.datasets import DataError
from pipeline.datasets.imagefolder import load_imagefolder
from pipeline.datasets.load import check_class_sizes
from tests.pipeline.datasets.test_imagefolder import make_flat_folder, save, tar_folder


def test_a_class_folder_named_train_in_a_flat_layout_is_a_class(tmp_path):
    make_flat_folder(tmp_path / "vehicles", classes=("bus", "car", "train"), per_class=3)

    dataset = load_imagefolder(tmp_path / "vehicles", progress=False)

    assert dataset.class_names == ["bus", "car", "train"]
    assert dataset.test is None and dataset.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_train_and_test_folders_above_class_folders_still_make_a_split_layout(tmp_path):
    make_flat_folder(tmp_path / "data" / "train", classes=("cat", "dog"), per_class=3)
    make_flat_folder(tmp_path / "data" / "test", classes=("cat", "dog"), per_class=2)

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    assert dataset.class_names == ["cat", "dog"] and len(dataset.test.labels) == 4


@pytest.mark.skipif(os.name != "posix" or os.uname().sysname == "Darwin", reason="needs a file system that stores raw name bytes")
def test_a_class_folder_named_in_latin_1_reads_as_its_characters(tmp_path):
    root = tmp_path / "data"
    make_flat_folder(root, classes=("dog",), per_class=3)
    latin_1 = os.path.join(os.fsencode(root), "caf\xe9".encode("latin-1"))  # what an old Windows archive unpacks to
    os.makedirs(latin_1)
    for index in range(3):
        Image.new("RGB", (8, 8), (9, index, 9)).save(os.fsdecode(os.path.join(latin_1, f"{index}.png".encode())))

    for source in (root, tar_folder(root, tmp_path / "data.tar")):
        dataset = load_imagefolder(source, progress=False)
        assert dataset.class_names == ["café", "dog"]
        assert dataset.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
        "".join(dataset.class_names).encode("utf-8")  # no lone surrogates: figures, JSON and MLflow take it


def test_utf8_names_in_a_zip_without_the_utf8_flag_read_as_written(tmp_path):
    folder = make_flat_folder(tmp_path / "data", classes=("café", "日本"), per_class=3)
    archive = tmp_path / "data.zip"
    # Linux's `zip -r` stores UTF-8 names without setting the flag; zipfile then decodes them as cp437
    dataset = load_imagefolder(_zip_without_utf8_flag(folder, archive), progress=False)

    assert dataset.class_names == ["café", "日本"]


def _zip_without_utf8_flag(folder, archive):
    """The folder zipped with UTF-8 names and no UTF-8 flag: zipfile flags any name it writes that is not
    ASCII, so each class is written under an ASCII stand-in of the same byte length, then the stand-ins'
    bytes (in the local headers and the central directory) are replaced by the UTF-8 names'."""
    stand_ins = {}
    with zipfile.ZipFile(archive, "w") as writer:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.parent.name.encode("utf-8")
                stand_in = stand_ins.setdefault(name, f"Z{len(stand_ins)}".ljust(len(name), "z").encode())
                writer.writestr(f"{stand_in.decode()}/{path.name}", path.read_bytes())
    data = archive.read_bytes()
    for name, stand_in in stand_ins.items():
        data = data.replace(stand_in + b"/", name + b"/")
    archive.write_bytes(data)
    with zipfile.ZipFile(archive) as reader:
        assert not any(member.flag_bits & 0x800 for member in reader.infolist())
        assert any("\u251c" in member.filename for member in reader.infolist())  # zipfile alone: "caf\u251c\u2310"
    return archive


def test_a_class_spelled_decomposed_in_test_matches_train(tmp_path):
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    make_flat_folder(tmp_path / "data" / "train", classes=(composed, "dog"), per_class=3)
    make_flat_folder(tmp_path / "data" / "test", classes=(decomposed, "dog"), per_class=2)

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    assert dataset.class_names == [composed, "dog"]
    assert dataset.test.labels.tolist() == [0, 0, 1, 1]


def test_a_path_starting_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    make_flat_folder(tmp_path / "photos", classes=("cat", "dog"), per_class=3)
    monkeypatch.setenv("HOME", str(tmp_path))

    dataset = load_imagefolder("~/photos", progress=False)

    assert dataset.class_names == ["cat", "dog"]


def test_a_class_emptied_by_skipping_says_its_files_were_unreadable(tmp_path):
    root = make_flat_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3)
    for index in range(2):
        save(root / "fish" / f"{index}.png", Image.new("RGB", (4, 4)))
        (root / "fish" / f"{index}.png").write_bytes(b"not a png")

    with pytest.raises(DataError, match=r"fish holds no readable images: its 2 files could not be read and were skipped"):
        load_imagefolder(root, progress=False, on_bad_image="skip")


def test_a_class_shrunk_by_skipping_below_the_minimum_says_files_were_left_out(tmp_path):
    root = make_flat_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3)
    (root / "dog" / "0.png").write_bytes(b"broken")
    raw = load_imagefolder(root, progress=False, on_bad_image="skip")

    with pytest.raises(DataError, match=r"'dog' \(2 images\).*1 unreadable file left out"):
        check_class_sizes(raw)
