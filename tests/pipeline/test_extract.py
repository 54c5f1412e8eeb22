"""The extract stage: a split and its mirror written in one pass over the split's batches, as two passes would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import yaml

from features import get_extractor
from pipeline.artifacts import NpyWriter, image_batches, images_path, write_split
from pipeline.datasets.shapes import make_shapes
from pipeline.extract import extract_split
from pipeline.featurizer import load_featurizer, save_featurizer

ROOT = Path(__file__).resolve().parents[2]


def extract_to_files(extractor, folder: Path, images_file: Path, n: int, batch_size: int, *, together: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, mirrored features) of a split: in one pass (`together`) or in two, as before."""
    dim = extractor.output_dim((32, 32, 3))
    paths = [folder / "train.npy", folder / "train_mirrored.npy"]
    with ExitStack() as stack:
        writer, mirrored_writer = (stack.enter_context(NpyWriter(path, n, (dim,), np.float32)) for path in paths)
        if together:
            extract_split(extractor, "x", "train", image_batches(images_file, n, batch_size), writer, "local", mirrored_writer)
        else:
            extract_split(extractor, "x", "train", image_batches(images_file, n, batch_size), writer, "local")
            extract_split(extractor, "x", "train_mirrored", image_batches(images_file, n, batch_size, True), mirrored_writer, "local")
    return np.load(paths[0]), np.load(paths[1])


@pytest.mark.parametrize("name", ["pixels", "hog", "color_hist", "bovw"])
def test_a_split_and_its_mirror_in_one_pass_are_the_two_passes_whatever_the_batch_size(tmp_path, name):
    images = make_shapes(n_train=100, n_test=10, seed=0).train.images[:30]
    write_split(tmp_path, "train", images, np.zeros(len(images), np.int64), batch_size=13)
    extractor = get_extractor(name, **({"n_clusters": 8, "n_patches": 2000} if name == "bovw" else {})).fit(images)
    separate = extract_to_files(extractor, tmp_path, images_path("train", tmp_path), len(images), 7, together=False)
    for batch_size in (7, 30):
        (tmp_path / str(batch_size)).mkdir()
        features, mirrored = extract_to_files(extractor, tmp_path / str(batch_size), images_path("train", tmp_path), len(images), batch_size, together=True)
        np.testing.assert_array_equal(features, separate[0])
        if name == "bovw":  # derived from the images' own distances: float32 rounding apart
            np.testing.assert_allclose(mirrored, separate[1], rtol=1e-5, atol=1e-5 * separate[1].max())
        else:
            np.testing.assert_array_equal(mirrored, separate[1])


def test_the_stage_writes_every_split_and_the_mirrors_and_counts_their_rows(tmp_path, monkeypatch):
    """`python -m pipeline.extract bovw` with extract.mirror on a tiny project; the saved state still predicts."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["shapes"].update(n_train=200, n_test=40)
    params["extract"].update(mirror=True, batch_size=16)
    params["extractors"]["bovw"].update(n_clusters=8, n_patches=2000, kmeans_iterations=5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in (["pipeline.prepare"], ["pipeline.extract", "bovw"]):
        result = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]

    monkeypatch.chdir(tmp_path)  # the featurizer reads data/features/ where the stage wrote it
    out = tmp_path / "data/features/bovw"
    assert sorted(path.name for path in out.glob("*.npy")) == ["test.npy", "train.npy", "train_mirrored.npy", "val.npy", "val_mirrored.npy"]
    assert {np.load(path, mmap_mode="r").dtype for path in out.glob("*.npy")} == {np.dtype(np.float16)}  # bovw's stored_as
    featurizer = load_featurizer(save_featurizer(tmp_path / "featurizer", "bovw", ["bovw"], {"image_shape": [32, 32, 3], "class_names": ["a"]}))
    rows = 0
    for split in ("train", "val", "test"):
        images = np.load(tmp_path / f"data/prepared/{split}_images.npy")
        np.testing.assert_array_equal(np.load(out / f"{split}.npy"), featurizer.transform(images))
        rows += len(images)
        if split != "test":
            expected = featurizer.transform(np.ascontiguousarray(images[:, :, ::-1]))
            np.testing.assert_allclose(np.load(out / f"{split}_mirrored.npy"), expected, rtol=1e-5, atol=1e-5 * expected.max())
            rows += len(images)
    metrics = json.loads((tmp_path / "results/extract/bovw.json").read_text())
    assert metrics["feature_dim"] == 4 * 8
    assert metrics["images_per_second"] * (metrics["extract_seconds"] - metrics["fit_seconds"]) == pytest.approx(rows, rel=0.05)
