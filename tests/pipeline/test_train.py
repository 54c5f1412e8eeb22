"""The training stage's three parts: load (memory-mapped, standardized as read), fit and score, write."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.search import SearchSpace, candidates
from models.mlp import MLPConfig
from models.training import TrainConfig
from pipeline.artifacts import features_path, write_split
from pipeline.io import write_json
from pipeline.train import adds_mirrored_rows, chosen_settings, fit_and_score, fit_and_score_many, load_training_data, score, write_results
from tests.models.test_training import assert_same_history, assert_same_weights


def test_mirrored_rows_are_added_only_when_flips_are_asked_for_and_extracted(capsys):
    assert adds_mirrored_rows("flip", "bovw", True)
    assert adds_mirrored_rows("flip+shift", "bovw", True)
    assert not adds_mirrored_rows("shift", "bovw", True)
    assert not adds_mirrored_rows("none", "bovw", True)
    assert not adds_mirrored_rows("flip", "bovw", False)
    assert "bovw has no mirrored rows (extract.mirror is false)" in capsys.readouterr().out


@pytest.fixture
def feature_project(tmp_path, monkeypatch):
    """data/prepared and two extractors' features on disk, as `prepare` and `extract` leave them."""
    monkeypatch.chdir(tmp_path)
    generator = np.random.default_rng(0)
    counts = {"train": 60, "val": 30, "test": 30}
    prepared = tmp_path / "data/prepared"
    prepared.mkdir(parents=True)
    for split, n in counts.items():
        labels = np.arange(n) % 3
        write_split(prepared, split, np.zeros((n, 4, 4, 3), np.uint8), labels)
        for member, dim in (("a", 3), ("b", 2)):
            centers = np.eye(3, dim) * 4
            rows = (centers[labels] + generator.normal(0, 0.3, (n, dim))).astype(np.float32)
            if member == "b":
                rows[:, 1] = 0.0 if split == "train" else 1.0  # empty on train, filled elsewhere (issue #13)
            features_path(member, split).parent.mkdir(parents=True, exist_ok=True)
            np.save(features_path(member, split), rows)
            if split in ("train", "val"):
                np.save(features_path(member, f"{split}_mirrored"), rows[:, ::-1].copy())
    write_json(prepared / "meta.json", {"dataset": "toy", "class_names": ["x", "y", "z"], "image_shape": [4, 4, 3]})
    return tmp_path


def test_mirrored_rows_follow_their_split_with_the_same_labels(feature_project):
    data = load_training_data(["a", "b"], "a+b", "flip")
    assert len(data.train) == 120 and data.train_labels.tolist() == 2 * (np.arange(60) % 3).tolist()
    plain = np.concatenate([np.load(features_path(m, "train_mirrored")) for m in ("a", "b")], axis=1)
    np.testing.assert_allclose(data.train.rows([60, 61]), (plain[:2] - data.mean) / data.scale)
    assert len(load_training_data(["a", "b"], "a+b", "none").train) == 60


def test_a_column_constant_on_train_stays_modest_elsewhere(feature_project):
    data = load_training_data(["a", "b"], "a+b", "none")
    assert data.scale[4] == 1.0
    assert np.abs(data.test.rows(np.arange(30))).max() < 20


@pytest.mark.parametrize("hidden_sizes", [[8], []])  # an MLP refits after its search; a linear model in the same pass
def test_training_from_memory_maps_equals_training_from_tensors(feature_project, hidden_sizes):
    data = load_training_data(["a", "b"], "a+b", "flip")
    configs = candidates(SearchSpace([0.01], [1e-4], [hidden_sizes], [3]), TrainConfig(batch_size=16), MLPConfig(5, 3), "grid", 1, 0)
    mapped = fit_and_score(data, configs, torch.device("cpu"), refit_chosen=True)
    for name in ("train", "val", "refit", "test"):
        source = getattr(data, name)
        setattr(data, name, torch.from_numpy(source.rows(np.arange(len(source)))))
    in_memory = fit_and_score(data, configs, torch.device("cpu"), refit_chosen=True)
    for ours, theirs in zip(mapped.model.parameters(), in_memory.model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    np.testing.assert_array_equal(mapped.test_predictions, in_memory.test_predictions)
    assert mapped.model is not mapped.best.model  # the refit, trained on train + val


@pytest.mark.parametrize("rates", [[0.01], [0.003, 0.03]])  # one candidate or several, each beside its refit in the search's pass
@pytest.mark.parametrize("refit_chosen", [True, False])
def test_a_linear_stage_trains_its_svm_and_softmax_together_each_as_it_would_alone_to_rounding(feature_project, rates, refit_chosen):
    data = load_training_data(["a", "b"], "a+b", "flip")
    groups = [
        candidates(SearchSpace(rates, [1e-4], [[]], [3]), TrainConfig(batch_size=16, loss=loss), MLPConfig(5, 3), "grid", len(rates), 0)
        for loss in ("squared_hinge", "softmax")
    ]
    together = fit_and_score_many(data, groups, torch.device("cpu"), refit_chosen)
    for fitted, configs in zip(together, groups):
        alone = fit_and_score(data, configs, torch.device("cpu"), refit_chosen)
        assert fitted.best.config == alone.best.config  # the same trial chosen, trained to float32 rounding
        assert_same_history(fitted.best.history, alone.best.history)
        assert_same_weights(fitted.model, alone.model)
        np.testing.assert_array_equal(fitted.test_predictions, alone.test_predictions)
        assert fitted.train_accuracy == alone.train_accuracy and (fitted.model is not fitted.best.model) == refit_chosen
    assert together[0].train_seconds == together[1].train_seconds  # each an equal share of the joint training


def test_results_are_written_with_the_metrics_they_were_scored_with(feature_project):
    data = load_training_data(["a", "b"], "a+b", "none")
    write_json(feature_project / "results/extract/a.json", {"extract_seconds": 1.0})
    write_json(feature_project / "results/extract/b.json", {"extract_seconds": 2.0})
    configs = candidates(SearchSpace([0.05], [1e-4], [[]], [5]), TrainConfig(batch_size=16), MLPConfig(5, 3), "grid", 1, 0)
    fitted = fit_and_score(data, configs, torch.device("cpu"), refit_chosen=False)
    metrics = score(fitted, data, ["a", "b"], 5)
    assert metrics["test_accuracy"] > 0.9 and metrics["extract_seconds"] == 3.0

    class Run:
        class info:
            run_id, experiment_id = "r", "e"

    out = feature_project / "results/train/softmax-a+b"
    write_results(out, fitted, data, {"learning_rate": 0.05}, metrics, Run)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "index,actual,predicted" and len(predictions) == 31


def test_the_training_stage_collects_young_objects_rarely_and_importing_it_changes_nothing(tmp_path):
    """Run as a stage (`python -m pipeline.train`), the collector's thresholds are raised before the
    imports; imported as a library, they stay as they were."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import gc, runpy, sys\n"
        "before = gc.get_threshold()\n"
        "import pipeline.train\n"
        "print(gc.get_threshold() == before)\n"
        "sys.argv = ['train']  # no arguments: argparse stops it right after the imports\n"
        "try:\n"
        "    runpy.run_module('pipeline.train', run_name='__main__')\n"
        "except SystemExit:\n"
        "    print(gc.get_threshold()[0])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.stdout.split() == ["True", "50000"], result.stderr


def test_solver_lbfgs_searches_reg_strengths_on_a_warm_path_and_refits(feature_project):
    from models.solvers import LBFGSConfig

    data = load_training_data(["a", "b"], "a+b", "flip")
    configs = [(LBFGSConfig(reg_strength=strength, max_iterations=20, record_every=5), MLPConfig(5, 3)) for strength in (1e-3, 1e-1)]
    fitted = fit_and_score(data, configs, torch.device("cpu"), refit_chosen=True)
    assert [trial.config.reg_strength for trial in fitted.trials] == [1e-1, 1e-3]
    assert fitted.model is not fitted.best.model  # the refit on train + val
    assert (fitted.test_predictions == data.test_labels.numpy()).mean() > 0.9
    assert chosen_settings(fitted, is_mlp=False) == {
        "solver": "lbfgs",
        "learning_rate": "not applicable (lbfgs)",
        "reg_strength": fitted.best.config.reg_strength,
        "iterations": fitted.best.best_epoch,
    }


def test_the_train_stage_runs_with_solver_lbfgs_on_flipped_pixels(tmp_path):
    """`dvc repro` of one linear stage on raw pixels with solver: lbfgs: metrics, curve and choice written."""
    import yaml

    from tests.pipeline.conftest import ROOT, TINY, deep_update, make_project, run

    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    deep_update(params, {"linear": {"solver": "lbfgs", "max_iterations": 20, "classifiers": ["softmax"], "feature_sets": ["pixels"], "augment": "flip"}})
    params["linear"]["overrides"] = {}
    _, env = make_project(tmp_path / "project", params)
    run(["dvc", "repro", "train@pixels"], tmp_path / "project", env)
    out = tmp_path / "project/results/train/softmax-pixels"
    metrics, chosen = json.loads((out / "metrics.json").read_text()), json.loads((out / "chosen.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["n_trials"] == 2
    assert chosen["solver"] == "lbfgs" and chosen["learning_rate"] == "not applicable (lbfgs)" and chosen["reg_strength"] in (0.0001, 0.001)
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,train_accuracy,val_accuracy" and 1 < len(curve) <= 5  # a record every 5 iterations, 20 at most
