"""The `prepare` stage as DVC runs it: a subprocess in a project folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cifar_sample import SHARED_CIFAR10_JPEG, write_sample_archive

ROOT = Path(__file__).resolve().parents[2]


def run_prepare(project: Path, **data) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(data)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, "-m", "pipeline.prepare"], cwd=project, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def load_split(project: Path, split: str):
    with np.load(project / "data/prepared" / f"{split}.npz") as arrays:
        return arrays["images"], arrays["labels"]


def test_shapes_are_split_stratified_with_validation_from_train(tmp_path):
    result = run_prepare(tmp_path, name="shapes", shapes={"n_train": 400, "n_test": 100}, val_fraction=0.25)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    assert meta["counts"]["train"] == [30] * 10 and meta["counts"]["val"] == [10] * 10 and meta["counts"]["test"] == [10] * 10
    images, labels = load_split(tmp_path, "val")
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8


@pytest.mark.skipif(not SHARED_CIFAR10_JPEG.exists(), reason="the shared CIFAR-10 JPEG archive is not beside the checkout")
def test_prepare_reads_a_sample_of_real_cifar10_through_imagefolder(tmp_path):
    sample = tmp_path / "cifar-sample.tar.gz"
    write_sample_archive(sample, per_class=12)
    project = tmp_path / "project"
    project.mkdir()
    result = run_prepare(project, name="imagefolder", path=str(sample), val_fraction=0.25)
    assert result.returncode == 0, result.stderr
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["class_names"] == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert meta["dataset"] == "cifar-sample"
    assert meta["counts"]["test"] == [12] * 10 and meta["counts"]["val"] == [3] * 10
    images, _ = load_split(project, "train")
    assert images.shape == (90, 32, 32, 3)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"name": "mnist"}, "data.name must be one of"),
        ({"name": "imagefolder", "path": "/no/such/folder"}, "/no/such/folder"),
    ],
)
def test_bad_input_is_one_clear_line_and_no_output(tmp_path, data, message):
    result = run_prepare(tmp_path, **data)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data/prepared").exists()
