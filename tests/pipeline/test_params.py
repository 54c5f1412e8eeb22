from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, check_extractors, load_params

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
        ({"linear__optimizer": "rmsprop"}, "linear.optimizer"),
        ({"mlp__search": "bayes"}, "mlp.search"),
        ({"mlp__precision": "fp16"}, "mlp.precision"),
        ({"linear__budget": 2}, "linear.budget"),
        ({"mlp__budget": 0}, "mlp.budget"),
        ({"linear__epochs": [5, 0]}, "linear.epochs"),
        ({"mlp__patience": -1}, "mlp.patience"),
        ({"mlp__refit": "yes"}, "mlp.refit"),
        ({"mlp__hidden_sizes": [[512], [0]]}, "mlp.hidden_sizes"),
        ({"mlp__activation": "swish"}, "mlp.activation"),
        ({"mlp__dropout": 1.0}, "mlp.dropout"),
        ({"mlp__augment": "rotate"}, "mlp.augment"),
        ({"linear__augment": "mirror"}, "linear.augment"),
        ({"mlp__batchnorm": "on"}, "mlp.batchnorm"),
        ({"data__on_bad_image": "ignore"}, "data.on_bad_image must be one of error, skip"),
        ({"linear__learning_rates": [0.01, 0.0]}, r"linear.learning_rates must be a non-empty list of values > 0"),
        ({"linear__epochs": 0}, r"linear.epochs must be an integer >= 1"),
        ({"mlp__batch_size": 2.5}, r"mlp.batch_size must be an integer >= 1"),
        ({"linear__momentum": 1.0}, r"linear.momentum must be in \[0, 1\)"),
        ({"mlp__regularization": "l3"}, "mlp.regularization must be l2 or l1"),
        ({"linear__lr_schedule": "step"}, "linear.lr_schedule must be constant or cosine"),
        ({"mlp__hidden_sizes": [64, 0]}, "mlp.hidden_sizes must be a list of integers >= 1"),
        ({"mlp__dropout": 1.5}, r"mlp.dropout must be in \[0, 1\)"),
        ({"mlp__loss": "hinge"}, "mlp.loss must be svm or softmax"),
        ({"extract": {"batch_size": 0}}, "extract.batch_size must be an integer >= 1"),
        ({"extract": {"mirror": "yes"}}, "extract.mirror must be true or false"),
        ({"extract": {"flip": True}}, r"unknown key\(s\) flip in extract; allowed: batch_size, mirror"),
        ({"linear__overrides": {"sift": {"epochs": 3}}}, r"linear.overrides.sift: sift is not a configured extractor \(.*pixels.*\); remove the override or add the extractor"),
        ({"linear__overrides": {"bovw": {"epoch": 3}}}, r"unknown key\(s\) epoch in linear.overrides.bovw; allowed: .*epochs"),
        ({"linear__overrides": {"bovw": {"epochs": 0}}}, r"linear.overrides.bovw.epochs must be an integer >= 1"),
        ({"mlp__overrides": {"pixels": {"augment": "rotate"}}}, "mlp.overrides.pixels.augment must be one of"),
        ({"linear__overrides": {"bovw": 60}}, "linear.overrides.bovw must map settings to values"),
        ({"linear__svm_loss": "squared"}, "linear.svm_loss must be one of hinge, squared_hinge"),
        ({"linear__overrides": {"bovw": {"svm_loss": "l1"}}}, "linear.overrides.bovw.svm_loss must be one of"),
        ({"mlp__overrides": {"pixels": {"dropout": 1.5}}}, r"mlp.overrides.pixels.dropout must be in \[0, 1\)"),
        ({"mlp__overrides": {"pixels": {"svm_loss": "hinge"}}}, r"unknown key\(s\) svm_loss in mlp.overrides.pixels"),
    ],
)
def test_bad_params_are_refused_naming_the_parameter(tmp_path, changes, named):
    with pytest.raises(ParamsError, match=named):
        load_params(write_params(tmp_path, **changes))


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="project root"):
        load_params(tmp_path / "params.yaml")


def test_search_spaces_accept_one_value_or_a_list_to_search(tmp_path):
    params = load_params(write_params(tmp_path, mlp__hidden_sizes=[[1024], [1024, 512]], mlp__epochs=[10, 20], mlp__budget=8))
    assert params.mlp.hidden_size_options == [[1024], [1024, 512]]
    assert params.mlp.epoch_options == [10, 20]
    one = load_params(write_params(tmp_path, mlp__hidden_sizes=[256, 128], mlp__epochs=7))
    assert one.mlp.hidden_size_options == [[256, 128]] and one.mlp.epoch_options == [7]


def test_a_feature_sets_overrides_change_only_its_own_settings(tmp_path):
    params = load_params(write_params(tmp_path, linear__epochs=15, linear__overrides={"bovw": {"epochs": 60, "learning_rates": [0.001]}}))
    bovw, hog = params.linear.for_feature_set("bovw"), params.linear.for_feature_set("hog")
    assert (bovw.epochs, bovw.learning_rates) == (60, [0.001])
    assert (hog.epochs, hog.learning_rates) == (15, params.linear.learning_rates)
    assert bovw.batch_size == params.linear.batch_size and bovw.overrides == {}
    trimmed = load_params(write_params(tmp_path, linear__feature_sets=["hog"], linear__overrides={"bovw": {"epochs": 60}}))
    assert trimmed.linear.for_feature_set("hog").epochs == trimmed.linear.epochs  # an unlisted set's overrides wait


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"extractors__sift": {}}, r"extractors.sift: unknown extractor 'sift'; registered: .*hog"),
        ({"extractors__color_hist__bins": 0}, r"extractors.color_hist: bins must be an integer >= 1; got 0"),
        ({"extractors__hog__pixels_per_cell": 64}, r"extractors.hog: an image of 32x32 pixels .*pixels_per_cell=64.*data.image_size is 32"),
        ({"extractors__bovw__n_clusters": 300, "extractors__bovw__n_patches": 100}, r"extractors.bovw: n_clusters=300 needs at least as many patches"),
        ({"extractors__bovw__patch_size": 40}, r"extractors.bovw: patch_size=40 is larger than the 32x32 images"),
        ({"extractors__hog__colour": True}, r"extractors.hog: bad parameters .*colour"),
    ],
)
def test_impossible_extractor_settings_are_refused_naming_the_key(tmp_path, changes, named):
    params = load_params(write_params(tmp_path, **changes))
    with pytest.raises(ParamsError, match=named):
        check_extractors(params)


def test_the_projects_extractors_pass_and_report_their_dimensions():
    dims = check_extractors(load_params(ROOT / "params.yaml"))
    assert dims["pixels"] == 32 * 32 * 3 and dims["color_hist"] == 2 * 2 * 3 * 10
