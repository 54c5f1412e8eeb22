"""`featurebench predict` and `predict_images` on files that are not readable images (issue #13)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.predict import UnreadableImage, read_image



def bad_files(folder) -> dict[str, str]:
    """{path: the reason its error line must give}, each file made for real."""
    folder.mkdir(exist_ok=True)
    (folder / "notes.png").write_text("a shopping list, not a picture")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 90, 200)).save(buffer, "JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    (folder / "empty.png").write_bytes(b"")
    (folder / "a_folder.png").mkdir()
    os.mkfifo(folder / "pipe.png")  # opened for reading, it would wait for a writer forever
    return {
        str(folder / "notes.png"): "UnidentifiedImageError: not an image format Pillow reads",
        str(folder / "cut.jpg"): "OSError: ",  # Pillow words it by version: "Truncated File Read", "image file is truncated"
        str(folder / "empty.png"): "an empty file",
        str(folder / "a_folder.png"): "a folder, not an image file",
        str(folder / "pipe.png"): "a named pipe, not an image file",
        str(folder / "missing.png"): "FileNotFoundError: No such file or directory",
    }


def test_read_image_names_the_file_and_why_it_cannot_be_read(tmp_path):
    for path, reason in bad_files(tmp_path).items():
        with pytest.raises(UnreadableImage) as raised:
            read_image(path, 32)
        assert str(raised.value).startswith(f"{path}: cannot read image ({reason}")
        assert "BytesIO" not in str(raised.value)


def test_predict_classifies_every_readable_file_and_names_each_bad_one(tiny_project, tmp_path):
    project, _, env, _ = tiny_project
    images = np.load(project / "data/prepared/test_images.npy", mmap_mode="r")[:3]
    good = []
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"good{index}.png")
        good.append(str(tmp_path / f"good{index}.png"))
    bad = bad_files(tmp_path / "bad")
    folder = project / "results/train/svm-pixels"
    run_id = json.loads((folder / "run.json").read_text())["run_id"]
    expected = [line.split(",")[2] for line in (folder / "predictions.csv").read_text().splitlines()[1:4]]
    paths = [good[0], *list(bad)[:3], good[1], *list(bad)[3:], good[2]]

    result = subprocess.run(["featurebench", "predict", run_id, *paths], cwd=project, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 1
    assert [line.split("\t") for line in result.stdout.splitlines()] == [[path, label] for path, label in zip(good, expected)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(bad) and "Traceback" not in result.stderr
    for line, (path, reason) in zip(errors, bad.items()):
        assert line.startswith(f"{path}: cannot read image ({reason}")


def test_predict_images_takes_one_path_as_one_image(tiny_project, tmp_path):
    project, _, env, _ = tiny_project
    image = np.load(project / "data/prepared/test_images.npy", mmap_mode="r")[0]
    Image.fromarray(image).save(tmp_path / "one.png")
    folder = project / "results/train/svm-pixels"
    run_id = json.loads((folder / "run.json").read_text())["run_id"]
    expected = (folder / "predictions.csv").read_text().splitlines()[1].split(",")[2]
    code = f"from pipeline.predict import predict_images; print(predict_images({run_id!r}, {str(tmp_path / 'one.png')!r}))"

    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == repr([expected])
