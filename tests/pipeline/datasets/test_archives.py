import hashlib
import io
import re
import stat
import tarfile
import zipfile

import pytest

from pipeline.datasets import DataError
from pipeline.datasets.archives import archive_kind, md5_file, member_parts, safe_extract, sha256_file


def add_tar_file(tar, name, data=b"payload"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_tar_special(tar, name, member_type, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = member_type
    info.linkname = linkname
    tar.addfile(info)


def write_tar(path, build, mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        build(tar)
    return path


def write_zip(path, members):
    """members: [(ZipInfo or name, bytes)]."""
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def leftovers(folder):
    """Everything safe_extract may have left in the destination's parent, besides the archive."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("archive"))


def test_safe_extract_unpacks_tar_gz_into_dest(tmp_path):
    def build(tar):
        add_tar_special(tar, "top", tarfile.DIRTYPE)
        add_tar_file(tar, "top/a.txt", b"alpha")
        add_tar_file(tar, "./top/sub/b.txt", b"beta")
        add_tar_special(tar, "top/empty", tarfile.DIRTYPE)

    archive = write_tar(tmp_path / "archive.tar.gz", build)

    dest = safe_extract(archive, tmp_path / "out")

    assert dest == tmp_path / "out"
    assert (dest / "top/a.txt").read_bytes() == b"alpha"
    assert (dest / "top/sub/b.txt").read_bytes() == b"beta"
    assert (dest / "top/empty").is_dir()
    assert leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tgz", "w:gz")])
def test_safe_extract_reads_plain_tar_and_tgz(tmp_path, suffix, mode):
    archive = write_tar(tmp_path / f"archive{suffix}", lambda tar: add_tar_file(tar, "a.txt", b"alpha"), mode)

    assert (safe_extract(archive, tmp_path / "out") / "a.txt").read_bytes() == b"alpha"


def test_safe_extract_unpacks_zip_into_dest(tmp_path):
    archive = write_zip(tmp_path / "archive.zip", [("top/", b""), ("top/a.txt", b"alpha"), ("top/sub/b.txt", b"beta")])

    dest = safe_extract(archive, tmp_path / "out")

    assert (dest / "top/a.txt").read_bytes() == b"alpha"
    assert (dest / "top/sub/b.txt").read_bytes() == b"beta"
    assert leftovers(tmp_path) == ["out"]


def test_safe_extract_creates_missing_parent_folders(tmp_path):
    archive = write_zip(tmp_path / "archive.zip", [("a.txt", b"alpha")])

    assert (safe_extract(archive, tmp_path / "deep/er/out") / "a.txt").read_bytes() == b"alpha"


@pytest.mark.parametrize(
    "evil_name", ["../evil.txt", "top/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"]
)
def test_tar_member_escaping_dest_is_refused_and_nothing_is_left(tmp_path, evil_name):
    def build(tar):
        add_tar_file(tar, "good.txt")
        add_tar_file(tar, evil_name)

    archive = write_tar(tmp_path / "archive.tar.gz", build)

    with pytest.raises(DataError, match=re.escape(repr(evil_name))):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "member_type, linkname, kind",
    [
        (tarfile.SYMTYPE, "/etc/passwd", "symlink"),
        (tarfile.SYMTYPE, "inside.txt", "symlink"),
        (tarfile.LNKTYPE, "good.txt", "hard link"),
        (tarfile.CHRTYPE, "", "device"),
        (tarfile.BLKTYPE, "", "device"),
        (tarfile.FIFOTYPE, "", "named pipe"),
    ],
)
def test_tar_links_and_devices_are_refused(tmp_path, member_type, linkname, kind):
    def build(tar):
        add_tar_file(tar, "good.txt")
        add_tar_special(tar, "sneaky", member_type, linkname)

    archive = write_tar(tmp_path / "archive.tar.gz", build)

    with pytest.raises(DataError, match=f"'sneaky' is a {kind}"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("evil_name", ["../evil.txt", "/tmp/evil.txt", "top/../../evil.txt"])
def test_zip_member_escaping_dest_is_refused(tmp_path, evil_name):
    archive = write_zip(tmp_path / "archive.zip", [("good.txt", b"ok"), (zipfile.ZipInfo(evil_name), b"evil")])

    with pytest.raises(DataError, match="refusing"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("sneaky")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_zip(tmp_path / "archive.zip", [(link, b"/etc/passwd")])

    with pytest.raises(DataError, match="'sneaky' is a symlink"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_existing_dest_is_not_overwritten(tmp_path):
    archive = write_zip(tmp_path / "archive.zip", [("a.txt", b"new")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.txt").write_bytes(b"old")

    with pytest.raises(DataError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/a.txt").read_bytes() == b"old"


def test_unsupported_archive_type_is_refused(tmp_path):
    archive = tmp_path / "archive.rar"
    archive.write_bytes(b"Rar!")

    with pytest.raises(DataError, match="unsupported archive type"):
        safe_extract(archive, tmp_path / "out")


def test_missing_archive_is_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        safe_extract(tmp_path / "nowhere.tar.gz", tmp_path / "out")


@pytest.mark.parametrize("name", ["archive.tar.gz", "archive.zip"])
def test_corrupt_archive_is_reported_and_nothing_is_left(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(b"this is not an archive" * 10)

    with pytest.raises(DataError, match="not a readable"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_truncated_tar_gz_is_reported_and_nothing_is_left(tmp_path):
    archive = write_tar(tmp_path / "archive.tar.gz", lambda tar: add_tar_file(tar, "a.bin", bytes(range(256)) * 4000))
    archive.write_bytes(archive.read_bytes()[:-200])

    with pytest.raises(DataError, match="not a readable tar"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_hashes_match_hashlib_over_several_chunks(tmp_path):
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than one read chunk
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert md5_file(path) == hashlib.md5(data).hexdigest()


def test_hashes_of_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")

    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()
    assert md5_file(path) == hashlib.md5(b"").hexdigest()


@pytest.mark.parametrize(
    "name, kind",
    [("a.tar", "tar"), ("a.tar.gz", "tar"), ("A.TGZ", "tar"), ("a.zip", "zip"), ("a.gz", None), ("a.rar", None)],
)
def test_archive_kind_from_name(name, kind):
    assert archive_kind(name) == kind


def test_member_parts_drops_dot_and_empty_components():
    assert member_parts("./top//a/./b.jpg") == ("top", "a", "b.jpg")
    assert member_parts("top/") == ("top",)
