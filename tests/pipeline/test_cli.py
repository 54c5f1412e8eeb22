import subprocess
import sys

import pytest

from pipeline.cli import build_parser, experiment_overrides


def test_experiment_file_becomes_dvc_set_param_overrides():
    overrides = experiment_overrides("quick")
    assert "data.name=shapes" in overrides
    assert "linear.learning_rates=[0.01]" in overrides


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(SystemExit, match="quick"):
        experiment_overrides("no-such-experiment")


def test_ui_listens_on_localhost_by_default():
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("run", "ui", "compare"):
        assert command in result.stdout


def test_the_ui_address_is_the_experiments_runs_table():
    from pipeline.cli import runs_table_url

    assert runs_table_url("http://h:1", "7", "comparison") == "http://h:1/#/experiments/7/runs?viewStateShareKey=comparison"
    assert runs_table_url("http://h:1", "7") == "http://h:1/#/experiments/7/runs"
    assert runs_table_url("http://h:1", None) == "http://h:1/"


def featurebench(args: list[str], cwd) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_compare_before_any_run_says_what_to_do_in_one_line(tmp_path):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path)
    result = featurebench(["compare"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["featurebench compare: error: results/train/svm-pixels/run.json is missing; run `dvc repro` so every training stage finishes"]

