"""Image folders built to hurt: members that inflate to gigabytes, decompression bombs, named pipes,
symlinks out of the folder. Each must end in one error naming the file and the fix, and never hang."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.datasets import DataError
from pipeline.datasets.imagefolder import MAX_IMAGE_FILE_BYTES, Unreadable, load_imagefolder, read_at_most
from tests.pipeline.datasets.test_imagefolder import make_flat_folder, save, tar_folder, zip_folder

ROOT = Path(__file__).resolve().parents[3]
OVER_THE_LIMIT = MAX_IMAGE_FILE_BYTES + (1 << 20)
LIMIT_NAMED = f"over the {MAX_IMAGE_FILE_BYTES >> 20} MiB limit for one image file"


def zip_with_a_huge_member(archive_path: Path, folder: Path) -> Path:
    """The folder's images plus cat/huge.png: 65 MiB of zeros, deflated to a few hundred KB."""
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("cat/huge.png", "w") as out:
            for _ in range(OVER_THE_LIMIT >> 20):
                out.write(bytes(1 << 20))
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, path.relative_to(folder).as_posix())
    return archive_path


def peak_memory_of(function):
    """(what function raised or returned, the peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            outcome = function()
        except DataError as error:
            outcome = error
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zip_member_over_the_size_limit_is_named_and_never_inflated(tmp_path):
    archive = zip_with_a_huge_member(tmp_path / "data.zip", make_flat_folder(tmp_path / "data"))
    assert archive.stat().st_size < 1 << 20

    error, peak = peak_memory_of(lambda: load_imagefolder(archive, progress=False))

    assert isinstance(error, DataError)
    assert f"data.zip:cat/huge.png (65 MiB, {LIMIT_NAMED}; shrink it or remove it)" in str(error)
    assert "data.on_bad_image: skip" in str(error) and "\n" not in str(error)
    assert peak < 16 << 20  # the member is refused by its declared size, before a byte is inflated
    skipped = load_imagefolder(archive, progress=False, on_bad_image="skip")
    assert [item["path"] for item in skipped.skipped] == ["cat/huge.png"] and len(skipped.train) == 6


def understate_sizes(archive_path: Path, member: str, claimed: int) -> None:
    """Rewrite a zip's local and central headers so `member` claims `claimed` bytes uncompressed."""
    data = bytearray(archive_path.read_bytes())
    name = member.encode()
    assert data.startswith(b"PK\x03\x04") and data[30 : 30 + len(name)] == name  # the first member
    data[22:26] = claimed.to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    assert data[central + 46 : central + 46 + len(name)] == name
    data[central + 24 : central + 28] = claimed.to_bytes(4, "little")
    archive_path.write_bytes(bytes(data))


def test_a_zip_header_that_understates_a_member_cannot_make_it_inflate_whole(tmp_path):
    archive = zip_with_a_huge_member(tmp_path / "data.zip", make_flat_folder(tmp_path / "data"))
    understate_sizes(archive, "cat/huge.png", 1000)

    outcome, peak = peak_memory_of(lambda: load_imagefolder(archive, progress=False, on_bad_image="skip"))

    [skipped] = outcome.skipped
    assert skipped["path"] == "cat/huge.png" and skipped["reason"].startswith("damaged in the archive (BadZipFile: ")
    assert len(outcome.train) == 6
    assert peak < 16 << 20


def test_a_tar_member_over_the_size_limit_is_named_and_skipped_unread(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    archive = tar_folder(folder, tmp_path / "data.tar.gz")
    with tarfile.open(archive, "r:gz") as source, tarfile.open(tmp_path / "big.tar.gz", "w:gz", compresslevel=1) as out:
        for member in source:
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        huge = tarfile.TarInfo("dog/huge.jpg")
        huge.size = OVER_THE_LIMIT
        out.addfile(huge, io.BytesIO(bytes(OVER_THE_LIMIT)))

    error, peak = peak_memory_of(lambda: load_imagefolder(tmp_path / "big.tar.gz", progress=False))

    assert f"big.tar.gz:dog/huge.jpg (65 MiB, {LIMIT_NAMED}" in str(error)
    assert peak < 16 << 20
    assert len(load_imagefolder(tmp_path / "big.tar.gz", progress=False, on_bad_image="skip").train) == 6


def test_a_file_over_the_size_limit_in_a_directory_is_named_unread(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    with open(folder / "dog" / "huge.png", "wb") as sparse:  # takes no disk: a hole of 65 MiB
        sparse.truncate(OVER_THE_LIMIT)

    error, peak = peak_memory_of(lambda: load_imagefolder(folder, progress=False))

    assert f"dog/huge.png (65 MiB, {LIMIT_NAMED}" in str(error)
    assert peak < 16 << 20


def test_a_bounded_read_stops_one_byte_past_the_limit(tmp_path):
    path = tmp_path / "grown.bin"
    path.write_bytes(bytes(5000))
    with open(path, "rb") as file:
        result = read_at_most(file, 1000)
        assert isinstance(result, Unreadable) and "more bytes than its size claimed" in result.reason
        assert file.tell() == 1001
    with open(path, "rb") as file:
        assert read_at_most(file, 5000) == bytes(5000)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real little JPEG whose frame header (SOF0) is rewritten to claim width x height pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 7] = height.to_bytes(2, "big")
    data[frame + 7 : frame + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_a_phone_sized_jpeg_reads_and_a_50000_pixel_square_one_is_refused_by_name(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    save(folder / "cat" / "phone.jpg", Image.new("RGB", (3024, 3024), (20, 160, 220)), "JPEG")
    dataset = load_imagefolder(folder, progress=False)
    phone = dataset.train.materialize().images[dataset.train.labels == 0][-1]  # cat/phone.jpg sorts after cat/2.png
    np.testing.assert_allclose(phone.reshape(-1, 3).mean(0), (20, 160, 220), atol=3)

    (folder / "dog" / "bomb.jpg").write_bytes(jpeg_claiming(50000, 50000))
    with pytest.raises(DataError) as raised:
        load_imagefolder(folder, progress=False)
    message = str(raised.value)
    assert message.startswith(f"cannot read image {folder / 'dog' / 'bomb.jpg'} (DecompressionBombError: ")
    assert "2500000000 pixels" in message and "data.on_bad_image: skip" in message


def run_prepare(project: Path, data_path: Path, on_bad_image: str = "error", env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m pipeline.prepare` as DVC runs it (with `env` added to a bare environment); the timeout
    fails a hang instead of waiting forever."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(name="imagefolder", path=str(data_path), on_bad_image=on_bad_image, val_fraction=0.25, test_fraction=0.25)
    project.mkdir(exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PYTHONPATH": str(ROOT), "PATH": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.prepare"], cwd=project, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_in_a_class_folder_is_named_not_opened_and_prepare_finishes(tmp_path):
    folder = make_flat_folder(tmp_path / "data", per_class=4)
    os.mkfifo(folder / "cat" / "pipe.png")  # opening it to read would wait for a writer forever

    refused = run_prepare(tmp_path / "project", folder)

    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (  # after the progress bar
        f"featurebench prepare: error: cannot read image {folder / 'cat' / 'pipe.png'} "
        "(a named pipe, not an image file); set data.on_bad_image: skip to leave them out"
    )
    assert not (tmp_path / "project" / "data").exists()
    skipped = run_prepare(tmp_path / "project", folder, on_bad_image="skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 unreadable image(s)" in skipped.stdout and "cat/pipe.png" in skipped.stdout


def test_a_class_folder_linked_from_outside_the_data_folder_is_refused(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    outside = make_flat_folder(tmp_path / "elsewhere", classes=("emu",))
    os.symlink(outside / "emu", folder / "emu", target_is_directory=True)

    with pytest.raises(DataError) as raised:
        load_imagefolder(folder, progress=False)

    assert str(raised.value) == (
        f"{folder / 'emu'} is a symlink to {(outside / 'emu').resolve()}, outside {folder}; an image folder is read "
        "only from inside data.path: replace the link with a copy of what it points to, or remove it"
    )


def test_an_image_linked_from_outside_the_data_folder_is_refused(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    save(tmp_path / "private.png", Image.new("RGB", (8, 8)))
    os.symlink(tmp_path / "private.png", folder / "dog" / "private.png")

    with pytest.raises(DataError, match=r"dog/private\.png is a symlink to .*private\.png, outside "):
        load_imagefolder(folder, progress=False)


def test_links_that_stay_inside_the_data_folder_are_followed_and_broken_ones_named(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    os.symlink(folder / "cat" / "0.png", folder / "dog" / "copy_of_cat.png")
    assert len(load_imagefolder(folder, progress=False).train) == 7

    os.symlink(folder / "cat" / "gone.png", folder / "dog" / "dangling.png")
    os.symlink(folder / "dog" / "loop.png", folder / "dog" / "loop.png")
    with pytest.raises(DataError) as raised:
        load_imagefolder(folder, progress=False)
    assert "dog/dangling.png (FileNotFoundError: No such file or directory)" in str(raised.value)
    assert "dog/loop.png (OSError: Too many levels of symbolic links)" in str(raised.value)


def test_zip_and_tar_of_the_same_folder_still_read_alike(tmp_path):
    """The bounded reads change nothing for ordinary archives."""
    folder = make_flat_folder(tmp_path / "data")
    from_zip = load_imagefolder(zip_folder(folder, tmp_path / "data.zip"), progress=False)
    from_tar = load_imagefolder(tar_folder(folder, tmp_path / "data.tar"), progress=False)
    np.testing.assert_array_equal(from_zip.train.materialize().images, from_tar.train.materialize().images)


def patch_zip_headers(archive_path: Path, local_offset: int, central_offset: int, value: bytes) -> None:
    """Overwrite one field of every member's local header and central-directory entry."""
    data = bytearray(archive_path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = data.find(signature)
        while start != -1:
            data[start + offset : start + offset + len(value)] = value
            start = data.find(signature, start + 4)
    archive_path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,reason", [
    # the general-purpose flag's bit 0: what `zip -P` writes; zipfile raises RuntimeError for it
    ((6, 8, (1).to_bytes(2, "little")), "encrypted (a password-protected zip); zip the folder again without a password"),
    # compression method 9, Deflate64 (Windows Explorer's for large folders): zipfile raises NotImplementedError
    ((8, 10, (9).to_bytes(2, "little")), "compressed with a method Python's zipfile cannot read (That compression method is not supported); zip the folder again with standard Deflate"),
])
def test_zip_members_zipfile_cannot_read_are_named_with_the_fix(tmp_path, damage, reason):
    archive = zip_folder(make_flat_folder(tmp_path / "data"), tmp_path / "data.zip")
    patch_zip_headers(archive, *damage)

    with pytest.raises(DataError) as raised:
        load_imagefolder(archive, progress=False)

    assert str(raised.value).startswith(f"cannot read 6 images: {archive}:cat/0.png ({reason}); {archive}:cat/1.png")
    assert str(raised.value).endswith("set data.on_bad_image: skip to leave them out")


def test_a_damaged_zip_member_is_a_bad_image_the_others_still_read(tmp_path):
    archive = zip_folder(make_flat_folder(tmp_path / "data", per_class=4), tmp_path / "data.zip")
    data = bytearray(archive.read_bytes())
    name = b"cat/0.png"
    start = data.index(name) - 30  # its local header: the name's first appearance, before the central directory
    assert data[start : start + 4] == b"PK\x03\x04" and data[start + 8] == 0  # stored, not deflated
    data[start + 30 + len(name) + 20] ^= 0xFF  # a byte of its stored PNG: the CRC no longer matches
    archive.write_bytes(bytes(data))

    with pytest.raises(DataError, match=r"data\.zip:cat/0\.png \(damaged in the archive \(BadZipFile: Bad CRC-32"):
        load_imagefolder(archive, progress=False)
    skipped = load_imagefolder(archive, progress=False, on_bad_image="skip")
    assert [item["path"] for item in skipped.skipped] == ["cat/0.png"] and len(skipped.train) == 7


def test_a_hard_link_in_a_tar_is_a_bad_file_that_skip_leaves_out_and_a_symlink_is_refused(tmp_path):
    folder = make_flat_folder(tmp_path / "data")
    os.link(folder / "cat" / "0.png", folder / "cat" / "hard.png")
    archive = tar_folder(folder, tmp_path / "data.tar")

    with pytest.raises(DataError) as raised:
        load_imagefolder(archive, progress=False)
    assert str(raised.value) == (
        f"cannot read image {archive}:cat/hard.png (a hard link to 'cat/0.png', which a tar stream cannot read back; "
        "archive the folder with tar --hard-dereference); set data.on_bad_image: skip to leave them out"
    )
    skipped = load_imagefolder(archive, progress=False, on_bad_image="skip")
    assert [item["path"] for item in skipped.skipped] == ["cat/hard.png"] and len(skipped.train) == 6

    os.symlink("0.png", folder / "dog" / "soft.png")
    with pytest.raises(DataError, match=r"linked\.tar:dog/soft\.png is a symlink to '0\.png'; an image folder archive may hold only regular files"):
        load_imagefolder(tar_folder(folder, tmp_path / "linked.tar"), progress=False, on_bad_image="skip")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_a_skipped_file_whose_name_is_not_utf8_is_named_readably_and_prepare_succeeds(tmp_path):
    folder = make_flat_folder(tmp_path / "data", per_class=4)
    (folder / "cat").joinpath(os.fsdecode(b"caf\xe9_broken.jpg")).write_bytes(b"")

    # a UTF-8 terminal (en_US.UTF-8): Python's stdout then refuses a name's undecodable bytes
    skipped = run_prepare(tmp_path / "project", folder, on_bad_image="skip", env={"PYTHONIOENCODING": "utf-8"})

    assert skipped.returncode == 0, skipped.stderr
    assert "cat/café_broken.jpg" in skipped.stdout
    meta = (tmp_path / "project" / "data" / "prepared" / "meta.json").read_text(encoding="utf-8")
    assert '"cat/café_broken.jpg"' in meta or '"cat/caf\\u00e9_broken.jpg"' in meta
