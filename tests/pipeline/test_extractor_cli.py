"""`featurebench extractor new/list/check/remove`, run as a user runs them, in a copy of the project."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
FEATUREBENCH = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture
def project(tmp_path) -> Path:
    for name in ("pipeline", "features", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__", "plugin_example"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def featurebench(project: Path, *args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FEATUREBENCH, *args], cwd=project, capture_output=True, text=True, env=env, input=input)


def snapshot(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def fill_transform(project: Path, name: str, body: str) -> None:
    module = project / "features" / f"{name}.py"
    text = module.read_text().replace(f'        raise NotImplementedError("fill in transform() in features/{name}.py")', body)
    module.write_text(text.replace("return channels  # TODO: the length of one image's feature vector", "return 3"))


def new_filled_and_checked(project: Path, name: str, body: str, *new_flags: str) -> subprocess.CompletedProcess:
    """`extractor new`, a transform body written in, then `extractor check`."""
    assert featurebench(project, "extractor", "new", name, *new_flags).returncode == 0
    fill_transform(project, name, body)
    return featurebench(project, "extractor", "check", name)


def test_new_writes_module_test_and_params_keeping_comments(project):
    result = featurebench(project, "extractor", "new", "mean_color")
    assert result.returncode == 0, result.stderr
    assert (project / "features/mean_color.py").exists()
    assert (project / "tests/features/test_mean_color.py").exists()
    params = (project / "params.yaml").read_text()
    assert "mean_color:\n    scale: 1.0" in params
    assert "# Every stage reads its section" in params  # comments survive
    # in the extractors section, before the comment lines that open the next one
    assert params.index("  mean_color:") < params.index("# Each training stage searches") < params.index("\nlinear:")
    import yaml

    loaded = yaml.safe_load(params)
    assert "mean_color" in loaded["linear"]["feature_sets"]
    listing = featurebench(project, "extractor", "list")
    assert "mean_color" in listing.stdout and "this repository (features/mean_color.py)" in listing.stdout


def test_new_fitted_extractor_refuses_transform_before_fit(project):
    body = "        return (images.mean(axis=(1, 2)) - self.mean_rgb_).astype(np.float32)"
    check = new_filled_and_checked(project, "centred_color", body, "--fitted")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PASS  refuses transform before fit" in check.stdout


@pytest.mark.parametrize(
    "name,reason",
    [("9lives", "not a valid extractor name"), ("mean-color", "not a valid extractor name"), ("class", "not a valid extractor name"),
     ("hog", "built-in"), ("base", "own modules"), ("kmeans", "own modules"), ("MeanColor", "lower-case"),
     ("café", "lower-case ASCII"), ("test_thing", "not a valid extractor name")],
)
def test_new_refuses_bad_names_without_touching_a_file(project, name, reason):
    before = snapshot(project)
    result = featurebench(project, "extractor", "new", name)
    assert result.returncode == 2
    assert reason in result.stderr and "nothing was written" in result.stderr
    assert snapshot(project) == before


def test_new_refuses_an_existing_extractor_without_touching_a_file(project):
    assert featurebench(project, "extractor", "new", "mean_color").returncode == 0
    before = snapshot(project)
    result = featurebench(project, "extractor", "new", "mean_color")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert snapshot(project) == before


def test_check_passes_a_good_extractor(project):
    result = new_filled_and_checked(project, "mean_color", "        return (images.mean(axis=(1, 2)) / 255).astype(np.float32)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed, 0 failed" in result.stdout


@pytest.mark.parametrize(
    "body,failed,advice",
    [
        ("        return images.mean(axis=(1, 2)) / 255", "output shape (n, d) and dtype float32", "astype(np.float32)"),
        ("        return np.full((len(images), 3), np.nan, np.float32)", "finite values", "epsilon"),
        (
            "        return (images.mean(axis=(1, 2)) - images.mean(axis=(0, 1, 2))).astype(np.float32)",
            "same rows one at a time or in a batch",
            "from that image alone",
        ),
    ],
    ids=["wrong-dtype", "nan", "batch-dependent"],
)
def test_check_catches_a_broken_extractor_and_says_what_to_fix(project, body, failed, advice):
    result = new_filled_and_checked(project, "mean_color", body)
    assert result.returncode == 1
    failing = [line for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert any(failed in line and advice in line for line in failing), result.stdout


def test_check_fails_a_broken_extractor_under_python_O_too(project):
    """`python -O` strips assert statements; the contract must not be made of them."""
    assert featurebench(project, "extractor", "new", "mean_color").returncode == 0
    fill_transform(project, "mean_color", "        return np.full((len(images), 3), np.nan)")  # float64 and NaN
    result = subprocess.run([sys.executable, "-O", "-m", "pipeline.cli", "extractor", "check", "mean_color"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    failing = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert [line.split(":")[0] for line in failing] == ["FAIL  output shape (n, d) and dtype float32", "FAIL  finite values"], result.stdout
    assert "astype(np.float32)" in failing[0] and "epsilon" in failing[1]


def test_check_reports_an_unfilled_transform(project):
    featurebench(project, "extractor", "new", "mean_color")
    result = featurebench(project, "extractor", "check", "mean_color")
    assert result.returncode == 1
    assert "NotImplementedError: fill in transform() in features/mean_color.py" in result.stdout


def test_remove_asks_first_and_then_undoes_new(project):
    before = snapshot(project)
    featurebench(project, "extractor", "new", "mean_color")
    declined = featurebench(project, "extractor", "remove", "mean_color", input="n\n")
    assert declined.returncode == 1 and (project / "features/mean_color.py").exists()
    accepted = featurebench(project, "extractor", "remove", "mean_color", input="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert snapshot(project) == before


def test_remove_names_then_deletes_what_the_pipeline_wrote_for_the_extractor_and_nothing_else(project):
    featurebench(project, "extractor", "new", "mean_color")
    written = ["data/features/mean_color/train.npy", "results/extract/mean_color.json", "results/train/svm-mean_color/metrics.json", "results/train/softmax-mean_color/metrics.json"]
    kept = ["data/features/hog/train.npy", "results/extract/hog.json", "results/train/svm-hog/metrics.json"]
    for path in written + kept:  # as the stages leave them: extract@NAME's folder and record, train@NAME's results
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("{}")
    declined = featurebench(project, "extractor", "remove", "mean_color", input="n\n")
    assert declined.returncode == 1 and all((project / path).exists() for path in written)
    assert "data/features/mean_color" in declined.stdout and "results/train/softmax-mean_color" in declined.stdout  # named in the question
    accepted = featurebench(project, "extractor", "remove", "mean_color", "--yes")
    assert accepted.returncode == 0, accepted.stderr
    assert "deleted data/features/mean_color" in accepted.stdout
    assert not any((project / path).exists() for path in written) and not (project / "data/features/mean_color").exists()
    assert all((project / path).exists() for path in kept)


def test_remove_takes_the_extractors_overrides_out_too(project):
    featurebench(project, "extractor", "new", "mean_color")
    params = project / "params.yaml"
    marker = "  overrides:              # per feature set"
    assert marker in params.read_text()
    params.write_text(params.read_text().replace(marker, "  overrides:\n    mean_color: {epochs: 3}\n    hog+mean_color: {epochs: 4}\n" + marker.replace("overrides:", "#")))
    assert featurebench(project, "extractor", "remove", "mean_color", "--yes").returncode == 0
    import yaml

    loaded = yaml.safe_load(params.read_text())
    assert set(loaded["linear"]["overrides"]) == {"bovw"}
    from pipeline.params import load_params

    assert load_params(params).linear.for_feature_set("bovw").epochs == loaded["linear"]["overrides"]["bovw"]["epochs"]


def test_remove_refuses_a_built_in(project):
    result = featurebench(project, "extractor", "remove", "hog", "--yes")
    assert result.returncode == 2 and "built-in" in result.stderr


@pytest.mark.parametrize("name", ["base", "kmeans", "figures", "registry"])
def test_remove_never_deletes_the_features_package_s_own_modules(project, name):
    before = snapshot(project)
    result = featurebench(project, "extractor", "remove", name, "--yes")
    assert result.returncode == 2 and "own modules" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(project) == before


def test_remove_refuses_an_unknown_name_before_asking_and_takes_no_answer_as_no(project):
    unknown = featurebench(project, "extractor", "remove", "nosuch", input="y\n")
    assert unknown.returncode == 2 and "no extractor 'nosuch'" in unknown.stderr and "delete" not in unknown.stdout
    featurebench(project, "extractor", "new", "mean_color")
    closed = featurebench(project, "extractor", "remove", "mean_color", input="")  # stdin at its end: no terminal
    assert closed.returncode == 1 and "nothing removed" in closed.stdout and "Traceback" not in closed.stderr
    assert (project / "features/mean_color.py").exists()


@pytest.mark.parametrize("text, section", [("", "extractors"), ("seed: 0\n", "extractors")])
def test_new_with_params_missing_its_sections_writes_nothing(project, text, section):
    (project / "params.yaml").write_text(text)
    before = snapshot(project)
    result = featurebench(project, "extractor", "new", "mean_color")
    assert result.returncode == 2 and f"no `{section}:` section" in result.stderr and "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr and snapshot(project) == before


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """The example package under tests/plugin_example, pip-installed into a temporary folder."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(ROOT / "tests/plugin_example", source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
        check=True, capture_output=True,
    )
    return site


def test_an_installed_package_adds_extractors_and_a_broken_one_is_named(project, installed_plugin):
    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}
    listing = featurebench(project, "extractor", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "mean_rgb" in listing.stdout and "package featurebench-example" in listing.stdout
    assert "broken_plugin" in listing.stdout and "featurebench-example failed to load" in listing.stdout
    for built_in in ("pixels", "color_hist", "hog", "bovw"):
        assert built_in in listing.stdout
    check = featurebench(project, "extractor", "check", "mean_rgb", env=env)
    assert check.returncode == 0, check.stdout


def test_list_shows_the_settings_params_yaml_gives_each_extractor_else_its_defaults(project, installed_plugin):
    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}

    def lines() -> dict[str, str]:
        listing = featurebench(project, "extractor", "list", env=env)
        assert listing.returncode == 0, listing.stderr
        return {line.split()[0]: line for line in listing.stdout.splitlines() if line and not line.startswith("!")}, listing.stderr

    listed, _ = lines()
    assert "params.yaml" in listed["color_hist"] and "'mode': 'per_channel'" in listed["color_hist"]  # the built-in default is hue
    assert "defaults (not in params.yaml)" in listed["mean_rgb"]  # installed, not in the pipeline
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("data:\n  name: shapes", "data:\n  name: mnist"))
    listed, stderr = lines()
    assert any(line.startswith("! params.yaml: data.name must be one of") for line in stderr.splitlines()) and "Traceback" not in stderr
    assert "defaults (not in params.yaml)" in listed["color_hist"] and "'mode': 'hue'" in listed["color_hist"]


def test_use_puts_a_package_extractor_into_the_pipeline_with_a_version_pin(project, installed_plugin):
    import yaml

    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}
    result = featurebench(project, "extractor", "use", "mean_rgb", env=env)
    assert result.returncode == 0, result.stderr
    assert 'PROVIDED_BY = "featurebench-example==0.1.0"' in (project / "features/mean_rgb.py").read_text()
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["extractors"]["mean_rgb"] == {"scale": 1.0}
    assert "mean_rgb" in params["linear"]["feature_sets"]
    listing = featurebench(project, "extractor", "list", env=env)
    assert "package featurebench-example" in listing.stdout.split("mean_rgb", 1)[1].splitlines()[0]
    assert featurebench(project, "extractor", "use", "hog", env=env).returncode == 2


def test_a_broken_params_file_is_one_clear_line_not_a_traceback(project):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("data:\n  name: shapes", "data:\n  name: mnist"))
    result = featurebench(project, "extractor", "check", "hog")
    assert result.returncode == 2
    assert result.stderr.startswith("featurebench extractor check: error: data.name must be one of")
    assert "Traceback" not in result.stderr
