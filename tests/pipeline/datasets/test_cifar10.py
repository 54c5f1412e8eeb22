import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from functools import partial

import numpy as np
import pytest

from pipeline.datasets import DataError
from pipeline.datasets.cifar10 import (
    CIFAR10_MD5,
    CIFAR10_URL,
    MAX_BATCH_BYTES,
    TEST_BATCH,
    TRAIN_BATCHES,
    download,
    load_cifar10,
)

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGES_PER_BATCH = 4


def fake_batch(seed, n=IMAGES_PER_BATCH):
    """A batch as the release stores it: rows of 1024 red, 1024 green, 1024 blue values; labels a list."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, n).tolist(),
        b"filenames": [f"{seed}_{i}.png".encode() for i in range(n)],
    }


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_fake_release(path, batches=None, skip=(), meta=None):
    """A cifar-10-python.tar.gz in the official layout; returns {file name: batch dict}."""
    batches = batches or {name: fake_batch(seed) for seed, name in enumerate([*TRAIN_BATCHES, TEST_BATCH])}
    meta = meta or {b"label_names": [name.encode() for name in CLASS_NAMES], b"num_vis": 3072}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in [("batches.meta", meta), *batches.items()]:
            if name not in skip:
                add_member(tar, f"cifar-10-batches-py/{name}", pickle.dumps(content, protocol=2))
        add_member(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
    return batches


def test_official_url_and_md5():
    assert CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_local_archive_gives_five_train_batches_and_the_test_batch(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    batches = write_fake_release(archive)

    dataset = load_cifar10(cache_dir=tmp_path / "unused", archive=archive, progress=False)

    assert dataset.class_names == CLASS_NAMES
    assert dataset.train.images.shape == (5 * IMAGES_PER_BATCH, 32, 32, 3)
    assert dataset.train.images.dtype == np.uint8
    assert dataset.test.images.shape == (IMAGES_PER_BATCH, 32, 32, 3)
    expected_train_labels = sum((batches[name][b"labels"] for name in TRAIN_BATCHES), [])
    assert dataset.train.labels.tolist() == expected_train_labels
    assert dataset.test.labels.tolist() == batches[TEST_BATCH][b"labels"]
    assert dataset.checksum == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert dataset.source == f"cifar10:{archive}"
    assert not (tmp_path / "unused").exists()


def test_rows_become_height_width_channel_images(tmp_path):
    batch = fake_batch(0)
    data = batch[b"data"]
    write_fake_release(tmp_path / "c.tar.gz", batches={**{n: fake_batch(1) for n in TRAIN_BATCHES}, TEST_BATCH: batch})

    image = load_cifar10(archive=tmp_path / "c.tar.gz", progress=False).test.images[2]

    row, column = 5, 17
    red, green, blue = (data[2, channel * 1024 + row * 32 + column] for channel in range(3))
    assert image[row, column].tolist() == [red, green, blue]


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch", "batches.meta"])
def test_archive_missing_a_batch_is_refused(tmp_path, missing):
    write_fake_release(tmp_path / "c.tar.gz", skip=(missing,))

    with pytest.raises(DataError, match=f"missing cifar-10-batches-py/{missing}"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)


def test_file_that_is_not_a_tar_is_refused(tmp_path):
    (tmp_path / "c.tar.gz").write_bytes(b"<html>not found</html>")

    with pytest.raises(DataError, match="not a readable tar.gz"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)


def test_missing_local_archive_is_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(archive=tmp_path / "nowhere.tar.gz", progress=False)


def test_batch_with_wrong_image_size_is_refused(tmp_path):
    batches = {name: fake_batch(0) for name in [*TRAIN_BATCHES, TEST_BATCH]}
    batches["data_batch_2"][b"data"] = np.zeros((IMAGES_PER_BATCH, 1000), np.uint8)
    write_fake_release(tmp_path / "c.tar.gz", batches=batches)

    with pytest.raises(DataError, match=r"data_batch_2: expected uint8 data \(n, 3072\)"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)


def test_label_outside_the_classes_is_refused(tmp_path):
    batches = {name: fake_batch(0) for name in [*TRAIN_BATCHES, TEST_BATCH]}
    batches[TEST_BATCH][b"labels"][0] = 10
    write_fake_release(tmp_path / "c.tar.gz", batches=batches)

    with pytest.raises(DataError, match=r"test_batch: labels must lie in 0\.\.9"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)


class RunsCode:
    """A pickle payload that would create a folder when unpickled by a trusting loader."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_batch_too_large_for_the_release_is_refused_before_it_is_unpickled(tmp_path):
    batches = {name: fake_batch(0) for name in [*TRAIN_BATCHES, TEST_BATCH]}
    batches["data_batch_2"] = {**fake_batch(0), b"filler": bytes(MAX_BATCH_BYTES)}
    write_fake_release(tmp_path / "c.tar.gz", batches=batches)

    with pytest.raises(DataError, match=r"c\.tar\.gz:cifar-10-batches-py/data_batch_2 holds 64 MiB, more than a CIFAR-10 batch"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    batches = {name: fake_batch(0) for name in [*TRAIN_BATCHES, TEST_BATCH]}
    batches["data_batch_1"] = RunsCode(str(tmp_path / "pwned"))
    write_fake_release(tmp_path / "c.tar.gz", batches=batches)

    with pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 batch: posix.mkdir is not allowed"):
        load_cifar10(archive=tmp_path / "c.tar.gz", progress=False)
    assert not (tmp_path / "pwned").exists()


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served; yields (base url, served folder, request log)."""
    monkeypatch.setenv("no_proxy", "*")  # never route the loopback request through a proxy from the environment
    served = tmp_path / "served"
    served.mkdir()
    requests = []
    handler = type("Handler", (CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, requests
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_checks_md5_and_is_skipped_once_cached(tmp_path, file_server):
    base_url, served, requests = file_server
    write_fake_release(served / "cifar-10-python.tar.gz")
    expected_md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "cifar-10-python.tar.gz"

    first = download(f"{base_url}/cifar-10-python.tar.gz", dest, expected_md5, progress=False)
    second = download(f"{base_url}/cifar-10-python.tar.gz", dest, expected_md5, progress=False)

    assert first == second == dest
    assert dest.read_bytes() == (served / "cifar-10-python.tar.gz").read_bytes()
    assert requests == ["/cifar-10-python.tar.gz"]
    assert os.listdir(dest.parent) == ["cifar-10-python.tar.gz"]


def test_download_with_wrong_md5_raises_and_leaves_no_file(tmp_path, file_server):
    base_url, served, _ = file_server
    write_fake_release(served / "cifar-10-python.tar.gz")
    got_md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match=f"expected md5 {'0' * 32}, got {got_md5}"):
        download(f"{base_url}/cifar-10-python.tar.gz", cache / "cifar-10-python.tar.gz", "0" * 32, progress=False)
    assert os.listdir(cache) == []


def test_cached_file_with_wrong_md5_is_downloaded_again(tmp_path, file_server):
    base_url, served, requests = file_server
    (served / "file.bin").write_bytes(b"the right bytes")
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"a stale partial download")

    download(f"{base_url}/file.bin", dest, hashlib.md5(b"the right bytes").hexdigest(), progress=False)

    assert dest.read_bytes() == b"the right bytes"
    assert requests == ["/file.bin"]


def test_unreachable_url_raises_data_error(tmp_path, file_server):
    base_url, _, _ = file_server

    with pytest.raises(DataError, match="cannot download .*missing.tar.gz"):
        download(f"{base_url}/missing.tar.gz", tmp_path / "missing.tar.gz", "0" * 32, progress=False)
    assert not (tmp_path / "missing.tar.gz").exists()


def test_load_cifar10_downloads_into_cache_dir_once(tmp_path, file_server):
    base_url, served, requests = file_server
    write_fake_release(served / "cifar-10-python.tar.gz")
    md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    url = f"{base_url}/cifar-10-python.tar.gz"

    first = load_cifar10(cache_dir=tmp_path / "raw", url=url, md5=md5, progress=False)
    second = load_cifar10(cache_dir=tmp_path / "raw", url=url, md5=md5, progress=False)

    assert (tmp_path / "raw" / "cifar-10-python.tar.gz").is_file()
    assert requests == ["/cifar-10-python.tar.gz"]
    assert first.source == f"cifar10:{url}"
    np.testing.assert_array_equal(first.train.images, second.train.images)
    assert first.checksum == second.checksum
