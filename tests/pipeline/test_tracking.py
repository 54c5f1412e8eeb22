from pathlib import Path

from pipeline import tracking


def test_project_root_of_a_dvc_temp_experiment_is_the_outer_repository(tmp_path):
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    copy.mkdir(parents=True)
    assert tracking.project_root(copy) == tmp_path / "repo"


def test_project_root_is_the_working_directory_otherwise(tmp_path):
    assert tracking.project_root(tmp_path) == tmp_path


def test_tracking_uri_defaults_to_an_absolute_sqlite_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


def test_environment_overrides_the_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_flatten_nests_with_dots():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
