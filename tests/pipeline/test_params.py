from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[2]


def write_params(tmp_path, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        section = params
        *parents, last = dotted.split("__")
        for key in parents:
            section = section[key]
        section[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_projects_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.feature_set_members("hog+color_hist") == ["hog", "color_hist"]
    assert "svm" in params.linear.classifiers


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"data__name": "mnist"}, "data.name"),
        ({"data__name": "imagefolder", "data__path": None}, "data.path"),
        ({"data__val_fraction": 0.0}, "val_fraction"),
        ({"linear__learning_rates": [-0.1]}, "learning_rates"),
        ({"mlp__reg_strengths": [-1.0]}, "reg_strengths"),
        ({"linear__feature_sets": ["hog+sift"]}, "sift"),
        ({"linear__classifiers": ["svm", "knn"]}, "knn"),
        ({"linear__epoch": 3}, "epoch"),
        ({"device": "tpu"}, "device"),
        ({"data__on_bad_image": "ignore"}, "data.on_bad_image must be one of error, skip"),
    ],
)
def test_bad_params_are_refused_naming_the_parameter(tmp_path, changes, named):
    with pytest.raises(ParamsError, match=named):
        load_params(write_params(tmp_path, **changes))


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="project root"):
        load_params(tmp_path / "params.yaml")
