import hashlib
import io
import os
import tarfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.cifar_sample import needs_shared_cifar10, write_sample_archive
from pipeline.datasets import DataError
from pipeline.datasets.imagefolder import StagedImages, load_imagefolder

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def save(path, image, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)


def palette_image(size, rgb):
    image = Image.new("P", size, 1)
    image.putpalette([0, 0, 0, *rgb] + [0] * 762)
    return image


# name -> (image, format, the RGB value every pixel must read back as, tolerance for lossy formats)
MIXED_IMAGES = {
    "a_rgb.png": (Image.new("RGB", (8, 8), (250, 5, 120)), "PNG", (250, 5, 120), 0),
    "b_gray.png": (Image.new("L", (9, 9), 100), "PNG", (100, 100, 100), 0),
    "c_rgba.png": (Image.new("RGBA", (10, 6), (10, 20, 30, 128)), "PNG", (10, 20, 30), 0),
    "d_palette.png": (palette_image((7, 7), (200, 50, 25)), "PNG", (200, 50, 25), 0),
    "e_16bit.png": (Image.fromarray(np.full((6, 6), 40_000, np.uint16)), "PNG", (156, 156, 156), 0),
    "f_cmyk.jpg": (Image.new("CMYK", (12, 12), (0, 255, 0, 0)), "JPEG", (255, 0, 255), 3),
    "g_large.jpg": (Image.new("RGB", (300, 200), (20, 200, 90)), "JPEG", (20, 200, 90), 3),
    "h_tiny.png": (Image.new("RGB", (5, 7), (1, 2, 3)), "PNG", (1, 2, 3), 0),
    "i_bilevel.bmp": (Image.new("1", (4, 4), 1), "BMP", (255, 255, 255), 0),
    "j_float_unit.tif": (Image.fromarray(np.full((6, 6), 0.5, np.float32)), "TIFF", (128, 128, 128), 0),
    "k_float_bytes.tif": (Image.fromarray(np.full((6, 6), 77.0, np.float32)), "TIFF", (77, 77, 77), 0),
}


def make_flat_folder(root, classes=("cat", "dog"), per_class=3):
    """root/<class>/<n>.png, each image a constant colour encoding (class, n)."""
    for label, name in enumerate(classes):
        for index in range(per_class):
            save(root / name / f"{index}.png", Image.new("RGB", (8 + index, 6), (label * 100, index * 10, 7)))
    return root


def make_split_folder(root, train_classes=("cat", "dog"), test_classes=("cat", "dog")):
    make_flat_folder(root / "train", train_classes, per_class=3)
    make_flat_folder(root / "test", test_classes, per_class=2)
    return root


def tar_folder(folder, archive_path, mode="w:gz", reverse=False):
    """Archive the folder's contents (with folder entries), optionally adding members in reverse order."""
    paths = sorted(folder.rglob("*"), reverse=reverse)
    with tarfile.open(archive_path, mode) as tar:
        for path in paths:
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return archive_path


def zip_folder(folder, archive_path):
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
    return archive_path


def test_flat_directory_gives_sorted_classes_and_no_test_split(tmp_path):
    make_flat_folder(tmp_path / "data", classes=("dog", "cat", "bird"), per_class=2)

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    assert dataset.class_names == ["bird", "cat", "dog"]
    assert dataset.test is None
    assert dataset.train.materialize().images.shape == (6, 32, 32, 3)
    assert dataset.train.materialize().images.dtype == np.uint8
    assert dataset.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert dataset.source == f"imagefolder:{tmp_path / 'data'}"


def test_split_directory_gives_train_and_test(tmp_path):
    make_split_folder(tmp_path / "data")

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    assert dataset.class_names == ["cat", "dog"]
    assert dataset.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset.test.labels.tolist() == [0, 0, 1, 1]
    assert dataset.test.materialize().images.shape == (4, 32, 32, 3)


def test_train_folder_alone_gives_no_test_split(tmp_path):
    make_flat_folder(tmp_path / "data" / "train")

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    assert dataset.test is None
    assert len(dataset.train) == 6


@pytest.mark.parametrize("make", [make_flat_folder, make_split_folder])
def test_one_wrapping_folder_is_looked_through(tmp_path, make):
    make(tmp_path / "plain")
    make(tmp_path / "wrapped" / "cifar10")

    plain = load_imagefolder(tmp_path / "plain", progress=False)
    wrapped = load_imagefolder(tmp_path / "wrapped", progress=False)

    assert wrapped.class_names == plain.class_names
    np.testing.assert_array_equal(wrapped.train.materialize().images, plain.train.materialize().images)
    assert (wrapped.test is None) == (plain.test is None)


def test_every_image_mode_and_size_reads_as_its_rgb_colour(tmp_path):
    for name, (image, fmt, _, _) in MIXED_IMAGES.items():
        save(tmp_path / "data" / "mixed" / name, image, fmt)
    save(tmp_path / "data" / "other" / "x.png", Image.new("RGB", (3, 3)))

    dataset = load_imagefolder(tmp_path / "data", image_size=16, progress=False)

    assert dataset.train.materialize().images.shape == (len(MIXED_IMAGES) + 1, 16, 16, 3)
    for image, (name, (_, _, rgb, tolerance)) in zip(dataset.train.materialize().images, MIXED_IMAGES.items()):
        difference = np.abs(image.astype(int) - np.array(rgb)).max()
        assert difference <= tolerance, name


def test_image_already_at_size_is_kept_pixel_for_pixel(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    save(tmp_path / "data" / "noise" / "a.png", Image.fromarray(pixels))
    save(tmp_path / "data" / "other" / "b.png", Image.new("RGB", (4, 4)))

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    np.testing.assert_array_equal(dataset.train.materialize().images[0], pixels)


def test_whole_image_is_squashed_to_a_square_not_cropped(tmp_path):
    pixels = np.zeros((20, 300, 3), np.uint8)
    pixels[:, :60] = (255, 0, 0)  # a red band at the far left, which a centre crop would cut away
    pixels[:, 60:] = (0, 0, 255)
    save(tmp_path / "data" / "a_wide" / "a.png", Image.fromarray(pixels))
    save(tmp_path / "data" / "b_other" / "b.png", Image.new("RGB", (4, 4)))

    image = load_imagefolder(tmp_path / "data", image_size=8, progress=False).train.materialize().images[0]

    assert (image[:, 0] == (255, 0, 0)).all()
    assert (image[:, 3:] == (0, 0, 255)).all()


@pytest.mark.parametrize("suffix", ["tar.gz", "tgz", "tar", "zip"])
def test_archive_reads_the_same_as_the_directory(tmp_path, suffix):
    folder = make_split_folder(tmp_path / "data" / "wrapper")
    archive = tmp_path / f"data.{suffix}"
    if suffix == "zip":
        zip_folder(tmp_path / "data", archive)
    else:
        tar_folder(tmp_path / "data", archive, mode="w" if suffix == "tar" else "w:gz")

    from_folder = load_imagefolder(folder, progress=False)
    from_archive = load_imagefolder(archive, progress=False)

    assert from_archive.class_names == from_folder.class_names
    np.testing.assert_array_equal(from_archive.train.materialize().images, from_folder.train.materialize().images)
    np.testing.assert_array_equal(from_archive.test.labels, from_folder.test.labels)
    assert from_archive.checksum == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_archive_member_order_does_not_change_the_result(tmp_path):
    make_flat_folder(tmp_path / "data", per_class=4)
    forward = load_imagefolder(tar_folder(tmp_path / "data", tmp_path / "forward.tar"), progress=False)
    backward = load_imagefolder(tar_folder(tmp_path / "data", tmp_path / "backward.tar", reverse=True), progress=False)

    np.testing.assert_array_equal(forward.train.materialize().images, backward.train.materialize().images)
    np.testing.assert_array_equal(forward.train.labels, backward.train.labels)


def test_images_are_ordered_by_path(tmp_path):
    for name, value in [("b.png", 2), ("c.png", 3), ("a.png", 1)]:
        save(tmp_path / "data" / "cat" / name, Image.new("L", (4, 4), value))
    save(tmp_path / "data" / "dog" / "z.png", Image.new("L", (4, 4), 9))

    images = load_imagefolder(tmp_path / "data", progress=False).train.materialize().images

    assert images[:, 0, 0, 0].tolist() == [1, 2, 3, 9]


def test_two_loads_are_byte_identical(tmp_path):
    make_split_folder(tmp_path / "data")

    first = load_imagefolder(tmp_path / "data", progress=False)
    second = load_imagefolder(tmp_path / "data", progress=False)

    assert first.train.materialize().images.tobytes() == second.train.materialize().images.tobytes()
    assert first.test.labels.tobytes() == second.test.labels.tobytes()
    assert first.checksum == second.checksum


def test_directory_checksum_follows_content_and_names(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    original = load_imagefolder(folder, progress=False).checksum

    (folder / "cat" / "0.png").rename(folder / "cat" / "renamed.png")
    renamed = load_imagefolder(folder, progress=False).checksum
    save(folder / "cat" / "renamed.png", Image.new("RGB", (8, 6), (1, 1, 1)))
    edited = load_imagefolder(folder, progress=False).checksum

    assert len({original, renamed, edited}) == 3


def test_hidden_files_and_macos_and_windows_metadata_are_skipped(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    clean = load_imagefolder(folder, progress=False)
    (folder / ".DS_Store").write_bytes(b"\x00junk")
    (folder / "cat" / "._0.png").write_bytes(b"AppleDouble junk")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.png").write_bytes(b"junk")
    (folder / "__MACOSX" / "cat").mkdir(parents=True)
    (folder / "__MACOSX" / "cat" / "._0.png").write_bytes(b"junk")
    (folder / "cat" / "Thumbs.db").write_bytes(b"windows thumbnail cache")
    (folder / "dog" / "desktop.ini").write_bytes(b"[.ShellClassInfo]")

    from_folder = load_imagefolder(folder, progress=False)
    from_zip = load_imagefolder(zip_folder(folder, tmp_path / "data.zip"), progress=False)

    assert from_folder.class_names == from_zip.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(from_folder.train.materialize().images, clean.train.materialize().images)
    np.testing.assert_array_equal(from_zip.train.materialize().images, clean.train.materialize().images)
    assert from_folder.checksum == clean.checksum


@pytest.mark.parametrize("content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_corrupt_image_is_named(tmp_path, content):
    folder = make_flat_folder(tmp_path / "data")
    (folder / "dog" / "broken.png").write_bytes(content)

    with pytest.raises(DataError, match=r"cannot read image .*dog/broken\.png"):
        load_imagefolder(folder, progress=False)


def test_truncated_jpeg_in_archive_is_named(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buffer, "JPEG")
    (folder / "cat" / "cut.jpg").write_bytes(buffer.getvalue()[:300])

    with pytest.raises(DataError, match=r"data\.tar\.gz:cat/cut\.jpg"):
        load_imagefolder(tar_folder(folder, tmp_path / "data.tar.gz"), progress=False)


@pytest.mark.parametrize("as_archive", [False, True])
def test_empty_class_folder_is_named(tmp_path, as_archive):
    folder = make_flat_folder(tmp_path / "data")
    (folder / "emu").mkdir()
    (folder / "emu" / ".DS_Store").write_bytes(b"junk")
    path = tar_folder(folder, tmp_path / "data.tar.gz") if as_archive else folder

    with pytest.raises(DataError, match="class folder .*emu holds no images"):
        load_imagefolder(path, progress=False)


def test_single_class_is_refused(tmp_path):
    make_flat_folder(tmp_path / "data", classes=("cat",))

    with pytest.raises(DataError, match="single class .*'cat'"):
        load_imagefolder(tmp_path / "data", progress=False)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(tmp_path / "nowhere", progress=False)


def test_unsupported_archive_type_is_reported(tmp_path):
    (tmp_path / "data.rar").write_bytes(b"Rar!")

    with pytest.raises(DataError, match="unsupported archive type"):
        load_imagefolder(tmp_path / "data.rar", progress=False)


def test_folder_without_images_is_reported(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / ".DS_Store").write_bytes(b"junk")

    with pytest.raises(DataError, match="no images found"):
        load_imagefolder(tmp_path / "data", progress=False)


def test_train_and_test_with_different_classes_are_refused(tmp_path):
    make_split_folder(tmp_path / "data", train_classes=("cat", "dog"), test_classes=("cat", "emu"))

    with pytest.raises(DataError, match=r"only in train: \['dog'\], only in test: \['emu'\]"):
        load_imagefolder(tmp_path / "data", progress=False)


def test_test_folder_without_train_folder_is_refused(tmp_path):
    make_flat_folder(tmp_path / "data" / "test")

    with pytest.raises(DataError, match="no train/ folder"):
        load_imagefolder(tmp_path / "data", progress=False)


def test_image_outside_any_class_folder_is_named(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    save(folder / "stray.png", Image.new("RGB", (4, 4)))

    with pytest.raises(DataError, match=r"stray\.png does not fit an image-folder layout: it is not in a class folder, and an image without a label cannot be trained on or scored"):
        load_imagefolder(folder, progress=False)


def test_an_unlabelled_test_folder_is_named_with_the_fix(tmp_path):
    make_flat_folder(tmp_path / "data" / "train")
    save(tmp_path / "data" / "test" / "0.png", Image.new("RGB", (4, 4)))  # Kaggle's test/: images, no classes

    with pytest.raises(DataError, match=r"test/0\.png does not fit an image-folder layout: it is not in a class folder, .*move it into its class's folder or out of"):
        load_imagefolder(tmp_path / "data", progress=False)


def test_a_given_validation_folder_adds_to_train_and_split_names_may_be_capitalised(tmp_path):
    make_flat_folder(tmp_path / "data" / "Train", per_class=3)
    make_flat_folder(tmp_path / "data" / "val", per_class=2)
    make_flat_folder(tmp_path / "data" / "TEST", per_class=2)
    make_flat_folder(tmp_path / "plain" / "train", per_class=3)
    make_flat_folder(tmp_path / "plain" / "test", per_class=2)

    dataset = load_imagefolder(tmp_path / "data", progress=False)
    plain = load_imagefolder(tmp_path / "plain", progress=False)

    assert dataset.class_names == ["cat", "dog"] and len(dataset.train) == 10 and len(dataset.test) == 4
    assert list(dataset.train.labels) == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]  # Train/ then val/, each by path
    np.testing.assert_array_equal(dataset.test.materialize().images, plain.test.materialize().images)


def test_documents_beside_the_class_folders_are_left_out_and_inside_one_are_bad_images(tmp_path):
    folder = make_split_folder(tmp_path / "data" / "wrapper")
    clean = load_imagefolder(folder, progress=False)
    (folder / "README.txt").write_text("cats and dogs, 2024")
    (folder / "labels.CSV").write_text("file,label\n")
    (folder / "train" / "notes.md").write_text("# notes")

    for source in (folder, zip_folder(tmp_path / "data", tmp_path / "data.zip"), tar_folder(tmp_path / "data", tmp_path / "data.tar")):
        dataset = load_imagefolder(source, progress=False)
        assert dataset.class_names == ["cat", "dog"] and dataset.skipped == []
        np.testing.assert_array_equal(dataset.train.materialize().images, clean.train.materialize().images)

    (folder / "train" / "dog" / "analysis.ipynb").write_text("{}")  # among the images: maybe one mislabelled
    with pytest.raises(DataError, match=r"cannot read image .*train/dog/analysis\.ipynb \(UnidentifiedImageError"):
        load_imagefolder(folder, progress=False)
    skipped = load_imagefolder(folder, progress=False, on_bad_image="skip")
    assert [item["path"] for item in skipped.skipped] == ["train/dog/analysis.ipynb"]


def test_two_class_folders_linked_to_one_folder_are_two_classes(tmp_path):
    folder = make_flat_folder(tmp_path / "data", classes=("cat", "dog"))
    os.symlink(folder / "dog", folder / "puppy", target_is_directory=True)
    os.symlink(folder, folder / "cat" / "loop", target_is_directory=True)  # a cycle: not walked again

    dataset = load_imagefolder(folder, progress=False)

    assert dataset.class_names == ["cat", "dog", "puppy"]
    images = dataset.train.materialize().images
    np.testing.assert_array_equal(images[3:6], images[6:9])


@pytest.mark.parametrize("suffix,mode", [("tar.bz2", "w:bz2"), ("tbz2", "w:bz2"), ("tar.xz", "w:xz"), ("txz", "w:xz")])
def test_bzip2_and_xz_tars_read_as_the_folder(tmp_path, suffix, mode):
    folder = make_flat_folder(tmp_path / "data")

    dataset = load_imagefolder(tar_folder(folder, tmp_path / f"data.{suffix}", mode=mode), progress=False)

    np.testing.assert_array_equal(dataset.train.materialize().images, load_imagefolder(folder, progress=False).train.materialize().images)


def test_corrupt_archive_is_reported(tmp_path):
    (tmp_path / "data.tar.gz").write_bytes(b"not gzip at all" * 10)

    with pytest.raises(DataError, match="not a readable tar archive"):
        load_imagefolder(tmp_path / "data.tar.gz", progress=False)


@pytest.mark.parametrize("image_size", [0, -3, 2.5, True])
def test_image_size_must_be_a_positive_integer(tmp_path, image_size):
    make_flat_folder(tmp_path / "data")

    with pytest.raises(DataError, match="image_size"):
        load_imagefolder(tmp_path / "data", image_size=image_size, progress=False)


def test_progress_bar_goes_to_stderr_only_when_asked(tmp_path, capsys):
    make_flat_folder(tmp_path / "data")

    load_imagefolder(tmp_path / "data", progress=False)
    quiet = capsys.readouterr()
    load_imagefolder(tmp_path / "data", progress=True)
    loud = capsys.readouterr()

    assert quiet.err == "" and quiet.out == "" and loud.out == ""
    assert "reading data" in loud.err


@needs_shared_cifar10
def test_sample_of_real_cifar_jpeg_archive_loads_ten_classes(tmp_path):
    per_class = 20
    sample = tmp_path / "cifar10-sample.tar.gz"
    write_sample_archive(sample, per_class)

    dataset = load_imagefolder(sample, progress=False)

    assert dataset.class_names == CIFAR10_CLASSES
    for image_set in (dataset.train.materialize(), dataset.test.materialize()):
        assert image_set.images.shape == (10 * per_class, 32, 32, 3)
        assert image_set.images.dtype == np.uint8
        assert np.bincount(image_set.labels).tolist() == [per_class] * 10
        assert 30 < image_set.images.mean() < 225


def png_header_claiming(width: int, height: int) -> bytes:
    """A few bytes of PNG whose header claims width x height pixels: the shape of a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_every_unreadable_file_is_named_in_one_error(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "bomb.png").write_bytes(png_header_claiming(20_000, 20_000))

    with pytest.raises(DataError) as raised:
        load_imagefolder(folder, progress=False)

    message = str(raised.value)
    assert message.startswith("cannot read 2 images: ")
    assert "cat/notes.txt (UnidentifiedImageError" in message and "dog/bomb.png (DecompressionBombError" in message
    assert "data.on_bad_image: skip" in message and "\n" not in message


def test_skip_leaves_bad_files_out_and_lists_them(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    clean = load_imagefolder(folder, progress=False)
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)

    dataset = load_imagefolder(folder, progress=False, on_bad_image="skip")

    np.testing.assert_array_equal(dataset.train.materialize().images, clean.train.materialize().images)
    assert [item["path"] for item in dataset.skipped] == ["cat/notes.txt", "dog/broken.png"]
    assert all(item["reason"] for item in dataset.skipped)
    assert clean.skipped == []


def test_image_over_the_pixel_limit_is_refused_even_where_pillow_only_warns(tmp_path, monkeypatch):
    # Pillow raises above twice MAX_IMAGE_PIXELS and only warns between it and twice it; both are refused.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    folder = make_flat_folder(tmp_path / "data")
    save(folder / "cat" / "warned.png", Image.new("RGB", (80, 80)))  # 6,400 pixels: Pillow's warning range
    save(folder / "dog" / "raised.png", Image.new("RGB", (100, 100)))  # 10,000 pixels: Pillow's error range

    dataset = load_imagefolder(folder, progress=False, on_bad_image="skip")

    assert {item["path"]: item["reason"].split(":")[0] for item in dataset.skipped} == {
        "cat/warned.png": "DecompressionBombWarning",
        "dog/raised.png": "DecompressionBombError",
    }
    assert len(dataset.train) == 6


def test_unknown_on_bad_image_is_refused_naming_the_parameter(tmp_path):
    with pytest.raises(DataError, match="data.on_bad_image must be one of error, skip"):
        load_imagefolder(make_flat_folder(tmp_path / "data"), progress=False, on_bad_image="ignore")


def test_a_big_jpeg_decoded_at_reduced_scale_matches_a_full_decode_within_rounding(tmp_path):
    """Big photos are decoded at 1/2..1/8 scale (JPEG draft mode) since they are shrunk anyway."""
    rows, cols = np.mgrid[:1600, :1200]
    photo = np.stack([rows * 255 // 1600, cols * 255 // 1200, (rows + cols) * 255 // 2800], -1).astype(np.uint8)
    save(tmp_path / "data" / "cat" / "photo.jpg", Image.fromarray(photo), "JPEG")
    save(tmp_path / "data" / "dog" / "small.png", Image.new("RGB", (8, 8)))

    dataset = load_imagefolder(tmp_path / "data", progress=False)

    with Image.open(tmp_path / "data" / "cat" / "photo.jpg") as full:
        assert full.size == (1200, 1600)
        expected = np.asarray(full.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(dataset.train.materialize().images[0].astype(int) - expected).max() <= 2


def test_staged_images_come_back_by_row_number_in_any_order(tmp_path):
    staged = StagedImages((2, 3, 3), tmp_path)
    images = [np.full((2, 3, 3), value, np.uint8) for value in (10, 20, 30, 40)]
    assert [staged.append(image) for image in images] == [0, 1, 2, 3]
    np.testing.assert_array_equal(staged.rows([3, 0, 2]), np.stack([images[3], images[0], images[2]]))
    assert staged.rows([]).shape == (0, 2, 3, 3)
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing is left behind, even on a crash


def test_a_split_larger_than_one_read_keeps_path_order_across_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(StagedImages, "batch_rows", lambda self: 2)
    make_flat_folder(tmp_path / "data", classes=("b", "a", "c"), per_class=3)
    archive = tar_folder(tmp_path / "data", tmp_path / "backward.tar", reverse=True)  # stored in reverse path order
    dataset = load_imagefolder(archive, progress=False)
    batches = list(dataset.train.batches())
    assert [len(batch) for batch in batches] == [2, 2, 2, 2, 1]
    expected = load_imagefolder(tmp_path / "data", progress=False).train.materialize().images
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    # a (label, index) colour per image: class a first, images 0, 1, 2 within it
    assert [tuple(image[0, 0, :2]) for image in expected[:3]] == [(100, 0), (100, 10), (100, 20)]


def test_decoded_pixels_wait_on_disk_not_in_memory(tmp_path):
    """600 images decoded to 96x96 are 16.6 MB; loading them must hold file names, not pixels."""
    for label in ("cat", "dog"):
        for index in range(300):
            save(tmp_path / "data" / label / f"{index:03d}.png", Image.new("RGB", (4, 4), (index % 256, 0, 0)))
    tracemalloc.start()
    try:
        dataset = load_imagefolder(tmp_path / "data", image_size=96, progress=False, cache_dir=tmp_path / "cache")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(dataset.train) == 600
    assert peak < 4 << 20, f"{peak / 1e6:.1f} MB allocated while loading"
    first = next(dataset.train.batches())
    assert first.shape[1:] == (96, 96, 3) and first[5, 0, 0, 0] == 5
