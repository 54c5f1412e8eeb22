"""Bad params files through the real commands: one line on stderr naming the key, exit 2, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BROKEN_YAML = "seed: 0\ndata:\n  name: shapes\n   image_size: 32\n"  # line 4 is indented deeper than its key


def run(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, *arguments], cwd=project, capture_output=True, text=True, env=env)


def assert_one_line_refusal(result: subprocess.CompletedProcess, command: str, *named: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"featurebench {command}: error: "), lines[0]
    for text in named:
        assert text in lines[0], lines[0]


def write_params(project: Path, **changes) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (params[section] if section else params)[name] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize(
    "command,arguments",
    [
        ("prepare", ["-m", "pipeline.prepare"]),
        ("train", ["-m", "pipeline.train", "svm", "pixels"]),
        ("compare", ["-m", "pipeline.cli", "compare"]),
        ("extractor new", ["-m", "pipeline.cli", "extractor", "new", "mean_color"]),
    ],
)
def test_a_yaml_syntax_error_is_one_line_naming_file_and_line_from_every_command(tmp_path, command, arguments):
    (tmp_path / "params.yaml").write_text(BROKEN_YAML)
    result = run(tmp_path, *arguments)
    assert_one_line_refusal(result, command, "params.yaml, line 4, column 14: not valid YAML", "fix the syntax")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_a_broken_experiment_file_is_one_line_from_featurebench_run(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text("data:\n  name: [imagefolder\n")
    result = run(tmp_path, "-m", "pipeline.cli", "run", "mine")
    assert_one_line_refusal(result, "run", "experiments/mine.yaml, line 3", "not valid YAML")


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"data.image_size": "32"}, ["data.image_size must be an integer >= 8", "got the string '32'"]),
        ({"data": None}, ["data must be a mapping of its settings", "got null"]),
        ({"epochs": 3}, ["unknown key(s) epochs in BAD.yaml; allowed: data, device"]),
        pytest.param(
            {"device": "cuda"},
            ["device: cuda but no CUDA GPU is visible to PyTorch; use auto or cpu"],
            marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU"),
        ),
    ],
)
def test_prepare_refuses_a_bad_params_file_in_one_line_naming_the_key(tmp_path, changes, named):
    write_params(tmp_path, **changes)
    (tmp_path / "params.yaml").rename(tmp_path / "BAD.yaml")
    result = run(tmp_path, "-m", "pipeline.prepare", "--params", "BAD.yaml")
    assert_one_line_refusal(result, "prepare", *named)
    assert not (tmp_path / "data").exists()


def test_a_stage_freezes_the_garbage_collector_after_every_exit_handler_it_registered(tmp_path):
    """Shutdown would otherwise collect everything torch and MLflow imported; the stage's own exit
    handlers (MLflow's, temporary files') still run first, with the collector as usual."""
    script = (
        "import atexit, gc\n"
        "from pipeline.stage import run_stage\n"
        "atexit.register(lambda: print('after', gc.get_freeze_count() > 0))\n"
        "run_stage(lambda: atexit.register(lambda: print('during', gc.get_freeze_count() > 0)), 'unit')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["during False", "after True"]
