"""The default pipeline on an image folder built to look like a real photo set (issue #13): objects on a
plain white background (colour-histogram bins that are always empty: constant feature columns), grey-only
photos, mixed sizes with a few large ones, odd class names. Then a stage that cannot train: it fails
alone, and says why. Real DVC and MLflow in a temporary git repository."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from tests.pipeline.conftest import ROOT, deep_update, expected_runs, make_project, run, stage_runs


CLASSES = {"café": "ellipse", "cat&dog": "rectangle", "two words": "triangle"}  # unicode, punctuation, a space
IMAGES_PER_CLASS = 30
LARGE_SIZE = (1500, 1200)
OBJECT_COLOURS = [(200, 30, 30), (150, 20, 40), (30, 40, 170)]  # reds and a blue: most hue bins stay empty
SMALL = {
    "extractors": {"bovw": {"n_clusters": 8, "n_patches": 2000}},
    # the default learning rates, searched as usual; svm's squared hinge is the loss that diverges
    "linear": {"classifiers": ["svm"], "epochs": 3, "overrides": {"bovw": {"epochs": 2}}},
    "mlp": {"hidden_sizes": [32], "epochs": 3},
}
FAILING_STAGE, FAILING_DIR = "train@color_hist", "svm-color_hist"


def photo(shape: str, index: int, rng: np.random.Generator) -> Image.Image:
    """One object in the left half (a hand entering from one side), on a plain white background.

    So the right half's colour-histogram bins of the object's colours are empty in every photo: constant
    columns, which the mirrored photos (extract.mirror) fill.

    Every third photo is grey only; every seventh is small and wide; two of the set are 1500x1200.
    """
    large = index == 0
    size = LARGE_SIZE if large else (64, 48) if index % 7 == 3 else (100, 100)
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    left, top = rng.uniform(0.04, 0.12) * width, rng.uniform(0.1, 0.35) * height
    right, bottom = left + rng.uniform(0.25, 0.34) * width, top + rng.uniform(0.4, 0.6) * height
    colour = OBJECT_COLOURS[rng.integers(len(OBJECT_COLOURS))]
    draw = ImageDraw.Draw(image)
    if shape == "ellipse":
        draw.ellipse((left, top, right, bottom), fill=colour)
    elif shape == "rectangle":
        draw.rectangle((left, top, right, bottom), fill=colour)
    else:
        draw.polygon([(left, bottom), (right, bottom), ((left + right) / 2, top)], fill=colour)
    return image.convert("L") if index % 3 == 1 else image


def photo_folder(root) -> None:
    """<root>/<class>/<image>: JPEG mostly (their compression leaves faint colour at the edges), some PNG."""
    rng = np.random.default_rng(0)
    for class_index, (name, shape) in enumerate(CLASSES.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(IMAGES_PER_CLASS):
            image = photo(shape, index if class_index < 2 else index + 1, rng)  # a large photo in two classes
            suffix = "png" if index % 5 == 4 else "jpg"
            image.save(folder / f"IMG {index:04d}.{suffix}")


@pytest.fixture(scope="module")
def photo_project(tmp_path_factory):
    """The default params on the photo folder (smaller models), after one `dvc repro`; what it left is read at once."""
    import mlflow

    folder = tmp_path_factory.mktemp("photos")
    photo_folder(folder)
    project = tmp_path_factory.mktemp("photo_project")
    changes = deep_update({"data": {"name": "imagefolder", "path": str(folder)}}, SMALL)
    params, env = make_project(project, deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), changes))
    first = run(["dvc", "repro"], project, env)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    some_stage = next((project / "results/train").iterdir())
    experiment = client.get_experiment(json.loads((some_stage / "run.json").read_text())["experiment_id"])
    statuses = {run.data.tags["dvc_stage"]: run.info.status for run in stage_runs(client, experiment.experiment_id)}
    report = (project / "reports/comparison.md").read_text()
    return project, params, env, client, experiment, first, statuses, report


def training_stages(params: dict) -> set[str]:
    linear = {f"train@{f}" for f in params["linear"]["feature_sets"]}  # one stage per feature set, its classifier (svm) alone here
    return linear | {f"train_mlp@{f}" for f in params["mlp"]["feature_sets"]}


def test_the_default_pipeline_trains_every_stage_on_a_folder_of_real_looking_photos(photo_project):
    project, params, _, _, _, _, statuses, report = photo_project
    assert statuses == {stage: "FINISHED" for stage in training_stages(params)}
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["class_names"] == sorted(CLASSES)
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| classifier")]
    assert len(rows) == len(expected_runs(params))
    assert "failed" not in report
    for classifier, feature_set in expected_runs(params):
        metrics = json.loads((project / "results/train" / f"{classifier}-{feature_set}" / "metrics.json").read_text())
        assert len([key for key in metrics if key.startswith("test_accuracy.")]) == len(CLASSES), (classifier, feature_set)
    for feature_set in params["linear"]["feature_sets"]:  # the classifier left out of linear.classifiers says so
        skipped = json.loads((project / "results/train" / f"softmax-{feature_set}" / "metrics.json").read_text())
        assert skipped == {"status": "not trained", "reason": "softmax is not listed in linear.classifiers"}


def test_a_stage_that_cannot_train_fails_alone_with_its_reason_and_the_report_lists_it(photo_project):
    project, params, env, client, experiment, _, _, _ = photo_project
    # a squared hinge grows with the margin it misses: at 1e10 (1e12 backed off twice) each step overshoots more
    params["linear"]["overrides"]["color_hist"] = {"learning_rates": [1e12]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = run(["dvc", "repro"], project, env)  # exit 0: the other stages and the report go on

    ran = {line.split("'")[1] for line in second.stdout.splitlines() if line.startswith("Running stage")}
    assert {FAILING_STAGE, "compare"} <= ran and ran <= training_stages(params) | {"compare"}  # nothing extracted again
    said = [line for line in second.stderr.splitlines() if f"{FAILING_STAGE} failed" in line]
    assert len(said) == 1 and "training diverged for every learning rate tried (1e+12, 1e+11, 1e+10)" in said[0], second.stderr[-3000:]

    metrics = json.loads((project / "results/train" / FAILING_DIR / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["reason"].startswith("training diverged for every learning rate tried (1e+12, 1e+11, 1e+10)")
    assert not {key for key in metrics if "accuracy" in key}
    run_id = json.loads((project / "results/train" / FAILING_DIR / "run.json").read_text())["run_id"]
    failed_run = client.get_run(run_id)
    assert failed_run.info.status == "FAILED"
    assert {key: failed_run.data.tags[key] for key in metrics} == metrics  # the dict DVC shows is the one MLflow holds
    latest = {}
    for stage_run in sorted(stage_runs(client, experiment.experiment_id), key=lambda r: r.info.start_time):
        latest[stage_run.data.tags["dvc_stage"]] = stage_run.info.status
    assert latest == {stage: "FAILED" if stage == FAILING_STAGE else "FINISHED" for stage in training_stages(params)}

    table = (project / "reports/comparison.md").read_text().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in table[2:]]
    assert len(rows) == len(expected_runs(params))
    [failed] = [row for row in rows if row["status"] == "failed"]
    assert (failed["classifier"], failed["feature_set"], failed["test_accuracy"]) == ("svm", "color_hist", "")
    assert failed["reason"] == metrics["reason"]
    assert all(row["test_accuracy"] for row in rows if row is not failed)
    run(["dvc", "plots", "show", "--json"], project, env)  # its empty curves do not break the plots
