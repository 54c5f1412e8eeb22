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
