"""Image files decoded in worker processes come back as the stage's own process decodes them, in order."""
import hashlib
import io
import multiprocessing
import tarfile

import numpy as np
import pytest
from PIL import Image

from pipeline.datasets import DataError
from pipeline.datasets import decoding
from pipeline.datasets.decoding import Unreadable, decode_workers, decoded_in_order
from pipeline.datasets.imagefolder import load_imagefolder


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def mixed_entries(n: int) -> list:
    """Folders, images of several formats, modes and sizes, files never read and damaged files, interleaved."""
    rng = np.random.default_rng(0)
    entries = [(("cats",), None), (("dogs",), None)]
    for index in range(n):
        pixels = rng.integers(0, 256, (int(rng.integers(5, 60)), int(rng.integers(5, 60)), 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        kind = index % 5
        if kind == 0:
            data = encoded(image, "PNG")
        elif kind == 1:
            data = encoded(image.convert("L"), "JPEG")
        elif kind == 2:
            data = encoded(image.convert("RGBA"), "PNG")[: 40 if index % 10 == 2 else None]  # some truncated
        elif kind == 3:
            data = Unreadable("a named pipe, not an image file")
        else:
            data = b"" if index % 10 == 4 else encoded(image, "BMP")
        entries.append((("cats" if index % 2 else "dogs", f"{index:04d}.img"), data))
    return entries


def as_comparable(decoded) -> list:
    return [(parts, image.tobytes() if isinstance(image, np.ndarray) else image, sha) for parts, image, sha in decoded]


@pytest.mark.parametrize("hash_bytes", [True, False])
def test_workers_give_what_one_process_gives_in_the_same_order(hash_bytes):
    entries = mixed_entries(300)
    here = list(decoded_in_order(entries, 16, hash_bytes, workers=1))
    by_workers = list(decoded_in_order(entries, 16, hash_bytes, workers=2, serial_seconds=0))

    assert as_comparable(by_workers) == as_comparable(here)
    assert [parts for parts, _, _ in here] == [parts for parts, _ in entries]
    images = [image for _, image, _ in here if isinstance(image, np.ndarray)]
    reasons = [image.reason for _, image, _ in here if isinstance(image, Unreadable)]
    assert len(images) == 180 and all(image.shape == (16, 16, 3) and image.dtype == np.uint8 for image in images)
    assert len(reasons) == 120 and sum(reason == "an empty file" for reason in reasons) == 30
    for (parts, data), (_, _, sha) in zip(entries, here):
        assert sha == (hashlib.sha256(data).hexdigest() if hash_bytes and isinstance(data, bytes) else None)


def test_stopping_early_stops_the_workers():
    decoded = decoded_in_order(mixed_entries(2000), 8, hash_bytes=False, workers=2, serial_seconds=0)
    first = [next(decoded) for _ in range(5)]
    assert multiprocessing.active_children(), "the workers should have started"
    decoded.close()
    assert [parts for parts, _, _ in first] == [("cats",), ("dogs",), ("dogs", "0000.img"), ("cats", "0001.img"), ("dogs", "0002.img")]
    assert multiprocessing.active_children() == []


def test_an_archive_prepared_by_workers_is_byte_identical(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            for label in ("a b", "é"):
                for index in range(40):
                    data = encoded(Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)), "JPEG")
                    member = tarfile.TarInfo(f"photos/{split}/{label}/{index}.jpg")
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))

    def prepared(workers: str):
        monkeypatch.setenv(decoding.WORKERS_VARIABLE, workers)
        data = load_imagefolder(archive, image_size=12, progress=False)
        return [np.concatenate(list(split.batches())) for split in (data.train, data.test)], data

    monkeypatch.setattr(decoding, "SERIAL_SECONDS", 0.0)
    (one_train, one_test), one = prepared("1")
    (two_train, two_test), two = prepared("2")
    assert one_train.shape == (80, 12, 12, 3) and one_test.shape == (80, 12, 12, 3)
    assert np.array_equal(one_train, two_train) and np.array_equal(one_test, two_test)
    assert np.array_equal(one.train.labels, two.train.labels) and one.class_names == two.class_names == ["a b", "é"]
    assert one.checksum == two.checksum


def test_decode_workers_reads_the_environment(monkeypatch):
    monkeypatch.setenv(decoding.WORKERS_VARIABLE, "3")
    assert decode_workers() == 3
    monkeypatch.delenv(decoding.WORKERS_VARIABLE)
    assert 1 <= decode_workers() <= decoding.MAX_WORKERS
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(decoding.WORKERS_VARIABLE, bad)
        with pytest.raises(DataError, match="FEATUREBENCH_DECODE_WORKERS must be a whole number"):
            decode_workers()


@pytest.mark.parametrize("values,expected", [
    (np.array([[0, 100], [200, 255]], np.int32), [[0, 100], [200, 255]]),  # a 32-bit integer TIFF of 8-bit values
    (np.array([[0, 25700], [51400, 65535]], np.int32), [[0, 100], [200, 255]]),  # 16-bit values, as older Pillow opened 16-bit PNGs
])
def test_32_bit_integer_images_keep_8_bit_values_and_scale_16_bit_ones(values, expected):
    image = Image.fromarray(values, mode="I")
    assert image.mode == "I"

    decoded = decoding.decode_or_reason(encoded(image, "TIFF"), 2)

    np.testing.assert_array_equal(decoded[..., 0], expected)
    assert (decoded == decoded[..., :1]).all()
