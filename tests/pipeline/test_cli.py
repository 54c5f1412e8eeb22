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



def ui_environment() -> dict:
    """The environment of `featurebench ui` with its store in its working directory, not the caller's."""
    import os

    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def test_ui_on_a_busy_port_says_so_in_one_line_and_fails(tmp_path):
    import socket

    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "ui", "--port", str(port), "--no-browser"],
            cwd=tmp_path, env=ui_environment(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""  # no address of a server that is not ours
    assert result.stderr.strip().splitlines() == [f"featurebench ui: error: port {port} is in use; choose another with --port"]


def test_ui_on_every_interface_warns_that_the_store_is_open_to_the_network(tmp_path):
    import socket

    with socket.socket() as occupant:  # a busy port, so the warning is seen without starting a server
        occupant.bind(("0.0.0.0", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "ui", "--host", "0.0.0.0", "--port", str(port), "--no-browser"],
            cwd=tmp_path, env=ui_environment(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("featurebench ui: warning: --host 0.0.0.0 makes the UI, and the MLflow store behind it")
    assert "without authentication" in warning
    assert error == f"featurebench ui: error: port {port} is in use; choose another with --port" and result.returncode == 2


def test_only_a_loopback_host_is_private():
    from pipeline.cli import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_prints_its_address_only_once_the_server_answers(tmp_path):
    """The address is printed when a browser opening it gets the page, not 'connection refused'."""
    import os
    import signal
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "ui", "--port", str(port), "--no-browser"],
        cwd=tmp_path, env=ui_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        announced = server.stdout.readline()
        assert announced.startswith(f"MLflow UI for sqlite:///{tmp_path.resolve() / 'mlflow.db'} at http://127.0.0.1:{port}/"), announced
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as page:  # one try: it must answer now
            assert page.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_ui_whose_server_dies_before_answering_fails_instead_of_printing_an_address(tmp_path):
    """A store MLflow cannot open (its folder is a file): the server exits during start-up."""
    (tmp_path / "not-a-folder").write_text("")
    env = {**ui_environment(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'not-a-folder' / 'mlflow.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "ui", "--port", str(free_port()), "--no-browser"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("featurebench ui: error: the MLflow server exited (code ")


def test_the_featurebench_command_runs_the_checkout_it_is_typed_in(tmp_path):
    """The installed entry point imports the installed checkout's code; in another checkout (a second clone)
    the command must run that one's, as its DVC stages do."""
    import os
    import shutil
    from pathlib import Path

    entry = Path(sys.executable).parent / ("featurebench.exe" if os.name == "nt" else "featurebench")
    if not entry.exists() or os.name == "nt":
        pytest.skip("needs the installed `featurebench` command on POSIX")
    root = Path(__file__).resolve().parents[2]
    for name in ("pipeline", "features", "models"):
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    cli = tmp_path / "pipeline" / "cli.py"
    cli.write_text(cli.read_text().replace('description="Hand-crafted features', 'description="OTHER-CHECKOUT Hand-crafted features', 1))
    env = {k: v for k, v in os.environ.items() if k != "FEATUREBENCH_CLI_OF_PROJECT"}

    here = subprocess.run([str(entry), "--help"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    installed = subprocess.run([str(entry), "--help"], cwd=root, capture_output=True, text=True, env=env, timeout=120)

    assert here.returncode == 0 and "OTHER-CHECKOUT" in here.stdout
    assert installed.returncode == 0 and "OTHER-CHECKOUT" not in installed.stdout
