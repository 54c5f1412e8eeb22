"""featurebench study: the six studies, their planning, the toy parts, and one real study run in a
temporary git + DVC repository, checked against `dvc exp show` and the MLflow store."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.params import ParamsError, load_params
from pipeline.studies import runner
from pipeline.studies.definitions import STUDIES, get_study
from pipeline.studies.toy import run_toy
from tests.pipeline.conftest import ROOT, TINY, deep_update, make_project, run
from tests.pipeline.test_params import write_params

SIX = ["width-vs-l2", "activations", "depth", "convexity", "data-size", "space-warping"]


def test_study_list_shows_the_six_studies(capsys):
    assert main(["study", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines[1:] if line.split() and line.split()[0] in STUDIES]
    assert listed == SIX
    assert any(line.startswith("width-vs-l2") and " 16 " in line for line in lines)  # 4 widths x 4 L2 strengths


def test_an_unknown_study_is_one_line_naming_the_known_ones(capsys):
    assert main(["study", "run", "nope"]) == 2
    error = capsys.readouterr().err
    assert "no study 'nope'" in error and "width-vs-l2" in error and "Traceback" not in error


def test_the_activation_study_has_none_and_a_linear_point():
    labels = [point.label for point in get_study("activations").points]
    assert labels == ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "none", "linear"]
    assert get_study("activations").points[-1].runs == ("softmax-pixels",)


def test_a_plan_drops_unused_extractors_and_the_overrides_that_name_them():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    planned = runner.plan(get_study("depth"), params)
    overrides = planned[0].overrides
    assert "~extractors.bovw" in overrides and "~extractors.pixels" not in overrides
    assert "~linear.overrides" in overrides  # it names bovw
    assert "++mlp.feature_sets=[pixels]" in overrides
    assert [item.point.runs for item in planned] == [("mlp-pixels",)] * 4


def test_point_names_are_stable_and_change_with_the_data_or_an_override():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    study = get_study("depth")
    names = [item.name for item in runner.plan(study, params)]
    assert names == [item.name for item in runner.plan(study, params)]
    assert len(set(names)) == len(names) and names[0].startswith("depth-depth0-")
    assert names[0] != runner.plan(study, params, data="cifar10")[0].name
    assert names[0] != runner.plan(study, params, extra=["mlp.epochs=5"])[0].name
    last = runner.plan(study, params, extra=["mlp.hidden_sizes=[8]"])[0].overrides
    assert last[-1] == "++mlp.hidden_sizes=[8]" and "++mlp.hidden_sizes=[]" not in last  # an extra override wins


def test_a_plan_refuses_points_the_study_does_not_have():
    with pytest.raises(ValueError, match="no point"):
        runner.plan(get_study("depth"), {}, only=["depth9"])


def test_each_kind_of_run_has_its_metrics_and_its_stage():
    assert runner.metrics_path("mlp-pixels") == "results/train/mlp-pixels/metrics.json"
    assert runner.metrics_path("svm-hog+color_hist") == "results/train/svm-hog+color_hist/metrics.json"
    assert runner.training_stage("mlp-pixels") == "train_mlp@pixels"
    assert runner.training_stage("svm-hog+color_hist") == runner.training_stage("softmax-hog+color_hist") == "train@hog+color_hist"


def test_train_fraction_must_be_a_fraction(tmp_path):
    assert load_params(write_params(tmp_path, data__train_fraction=0.01)).data.train_fraction == 0.01
    for bad in (0, 1.5):
        with pytest.raises(ParamsError, match=r"data.train_fraction must be in \(0, 1\]"):
            load_params(write_params(tmp_path, data__train_fraction=bad))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_space_warping_two_relu_units_separate_two_circles(one_thread):
    result = run_toy("space-warping")
    assert set(result.figures) == {"space_warping.png", "universal_approximation.png"}
    assert result.values["mlp_accuracy"] >= 0.85 and result.values["linear_accuracy"] <= 0.65
    errors = result.values["approximation_errors"]
    assert errors[32] < errors[8] < errors[2] and errors[32] < 0.05


def test_activation_none_collapses_to_a_linear_classifier(one_thread):
    result = run_toy("activations")
    assert result.values["collapse_max_difference"] < 1e-4
    assert abs(result.values["none_accuracy"] - result.values["linear_accuracy"]) < 0.03
    assert "toy_none_vs_linear.png" in result.figures


def dvc_exp_metrics(project, env) -> dict[str, dict]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env).stdout)
    return {
        experiment["name"]: experiment["revs"][0]["data"]["metrics"]["results/train/mlp-pixels/metrics.json"]["data"]
        for baseline in shown for experiment in baseline.get("experiments") or []
    }


def test_a_study_runs_as_dvc_experiments_grouped_in_mlflow_and_resumes(tmp_path):
    """Two points of the depth study on tiny shapes: report, `dvc exp show` and MLflow agree; a second
    run finds both points done and trains nothing."""
    project = tmp_path / "project"
    _, env = make_project(project, deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY))
    command = [sys.executable, "-m", "pipeline.cli", "study", "run", "depth", "--points", "depth0,depth1", "-S", "mlp.epochs=2"]
    first = run(command, project, env)
    assert "0 of 2 points already done; running 2" in first.stdout

    metrics = dvc_exp_metrics(project, env)
    names = sorted(name for name in metrics if name.startswith("depth-"))
    assert [name.split("-")[1] for name in names] == ["depth0", "depth1"]
    report = (project / "reports/studies/depth.md").read_text()
    assert (project / "reports/studies/depth/depth.png").stat().st_size > 0
    for name in names:
        assert f"| {name} | mlp-pixels |" in report
        assert f"{metrics[name]['test_accuracy']:.4f}" in report.split(f"| {name} |")[1].splitlines()[0]

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("featurebench/shapes")
    study_runs = client.search_runs([experiment.experiment_id], "tags.study = 'depth' AND tags.`featurebench.role` = 'study'")
    assert len(study_runs) == 1
    assert "report/depth.md" in [item.path for item in client.list_artifacts(study_runs[0].info.run_id, "report")]
    for name in names:
        (group,) = client.search_runs([experiment.experiment_id], f"tags.dvc_experiment = '{name}' AND tags.`featurebench.role` = 'group'")
        assert group.data.tags["mlflow.parentRunId"] == study_runs[0].info.run_id
        (stage,) = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{group.info.run_id}' AND tags.`featurebench.role` = 'stage'")
        assert stage.data.metrics["test_accuracy"] == metrics[name]["test_accuracy"]
        assert stage.data.params["model.activation"] == "relu"

    stages_before = client.search_runs([experiment.experiment_id], "tags.`featurebench.role` = 'stage'")
    again = run(command, project, env)
    assert "2 of 2 points already done; running 0" in again.stdout
    assert len(client.search_runs([experiment.experiment_id], "tags.`featurebench.role` = 'stage'")) == len(stages_before)
    assert len(client.search_runs([experiment.experiment_id], "tags.study = 'depth' AND tags.`featurebench.role` = 'study'")) == 1
    assert subprocess.run(["git", "status", "--porcelain", "params.yaml"], cwd=project, capture_output=True, text=True).stdout == ""


def test_train_fraction_keeps_a_stratified_share_of_train_and_the_same_val_and_test(tmp_path):
    """The data-size study's knob: prepare at 10% and at 100%; only the train split shrinks."""
    from tests.pipeline.test_prepare import load_split, run_prepare

    splits = {}
    for fraction in (0.1, 1.0):
        project = tmp_path / str(fraction)
        project.mkdir()
        result = run_prepare(project, name="shapes", shapes={"n_train": 400, "n_test": 100}, val_fraction=0.25, train_fraction=fraction)
        assert result.returncode == 0, result.stderr
        splits[fraction] = {split: load_split(project, split) for split in ("train", "val", "test")}
        assert json.loads((project / "data/prepared/meta.json").read_text())["counts"]["train"] == [3 if fraction == 0.1 else 30] * 10
    for split in ("val", "test"):
        for small, full in zip(splits[0.1][split], splits[1.0][split]):
            np.testing.assert_array_equal(small, full)


def test_point_names_change_with_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    study = get_study("depth")
    changed = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), {"data": {"shapes": {"n_train": 500}}})
    assert runner.plan(study, params)[0].name != runner.plan(study, changed)[0].name


def test_a_bad_override_is_refused_naming_the_key_before_anything_is_queued(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    for override, named in (("mlp.epochs=abc", "mlp.epochs must be an integer"), ("nosuch.key=1", "unknown key(s) nosuch")):
        assert main(["study", "run", "depth", "-S", override]) == 2
        error = capsys.readouterr().err
        assert named in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as usage:
        main(["study", "run", "depth", "-j", "0"])
    assert usage.value.code == 2 and "-j/--jobs: must be from 1 to 64, got 0" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]  # nothing queued, nothing written


def test_a_point_that_failed_is_reported_missing_not_with_the_baselines_numbers(tmp_path):
    """DVC lists a failed queued experiment in `exp show` with its baseline's metrics: the report must not."""
    from tests.pipeline.datasets.test_imagefolder import make_flat_folder

    project = tmp_path / "project"
    _, env = make_project(project, deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY))
    one_class = make_flat_folder(tmp_path / "one-class", classes=("cat",))  # prepare refuses a single class
    command = [sys.executable, "-m", "pipeline.cli", "study", "run", "depth", "--points", "depth0", "--data", str(one_class)]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 point(s) failed: depth-depth0-" in result.stderr
    report = (project / "reports/studies/depth.md").read_text()
    assert "0 of 1 points done" in report
    [row] = [line for line in report.splitlines() if line.startswith("| depth0 |")]
    assert "| not run |" in row and not re.search(r"\d\.\d{4}", row)  # no accuracy shown for it


def test_featurebench_run_refuses_a_bad_override_and_leaves_params_yaml_as_it_was(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "quick.yaml").write_text((ROOT / "experiments" / "quick.yaml").read_text())

    assert main(["run", "quick", "-S", "linear.epochs=abc"]) == 2

    assert "linear.epochs must be an integer" in capsys.readouterr().err
    assert (tmp_path / "params.yaml").read_text() == text
