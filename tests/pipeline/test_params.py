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


@pytest.mark.parametrize("setting,small,large", [(True, True, True), (False, False, False), ("auto", True, False)])
def test_refit_auto_refits_a_small_train_split_and_keeps_the_chosen_trial_on_a_large_one(tmp_path, setting, small, large):
    from pipeline.params import REFIT_AUTO_BELOW

    params = load_params(write_params(tmp_path, mlp__refit=setting))
    assert (params.mlp.refits(REFIT_AUTO_BELOW - 1), params.mlp.refits(REFIT_AUTO_BELOW)) == (small, large)


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
        ({"mlp__refit": "yes"}, "mlp.refit must be true, false or auto"),
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
        # wrong types are refused naming the key, never a TypeError (issue #13)
        ({"data__image_size": "32"}, r"data.image_size must be an integer >= 8; got the string '32': write the number without quotes"),
        ({"linear__momentum": "0.9"}, r"linear.momentum must be in \[0, 1\); got the string '0.9'"),
        ({"linear__learning_rates": 0.01}, r"linear.learning_rates must be a non-empty list of values > 0; got 0.01$"),
        ({"mlp__hidden_sizes": 1024}, r"mlp.hidden_sizes must be a list of integers >= 1, or a list of such lists; got 1024$"),
        ({"mlp__hidden_sizes": [[1024], 512]}, r"mlp.hidden_sizes must be a list of integers >= 1, or a list of such lists"),
        ({"seed": "abc"}, r"^seed must be an integer >= 0; got 'abc'$"),
        ({"seed": 1.5}, r"^seed must be an integer >= 0; got 1.5$"),
        ({"mlp__epochs": True}, r"mlp.epochs must be an integer >= 1"),
        ({"linear__classifiers": "svm"}, r"linear.classifiers must be a list among svm, softmax; got 'svm'"),
        ({"linear__feature_sets": "hog"}, r"linear.feature_sets must be a list of feature sets"),
        ({"data__path": 5}, r"data.path must be a folder or archive path, or null; got 5"),
        ({"data__label": "a/b"}, r"data.label must be null or a name of up to 64 letters"),
        ({"data__shapes": {"n_train": 300, "n_tset": 100}}, r"data.shapes must be a mapping of n_train and n_test to integers >= 1"),
        ({"extractors__hog": 5}, r"extractors.hog must be a mapping of the extractor's settings"),
        ({"mlp__overrides": 3}, r"mlp.overrides must be a mapping of feature sets to the settings they change; got 3"),
        ({"engine": "dask"}, r"engine must be one of local, ray; got 'dask'"),
        ({"linear__precision": "fp16"}, r"linear.precision must be one of auto, fp32, bf16"),
        # unknown keys and sections that are not mappings are refused, not ignored
        ({"bogus": 1}, r"unknown key\(s\) bogus in params.yaml; allowed: data, device, engine, extract, extractors, linear, mlp, seed"),
        ({"data": None}, r"^data must be a mapping of its settings \(name, path, label, .*\); got null \(nothing\)$"),
        ({"linear": []}, r"^linear must be a mapping of its settings \(learning_rates, .*\); got \[\]$"),
        ({"extract": "fast"}, r"^extract must be a mapping of its settings \(batch_size, mirror\); got 'fast'$"),
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


def test_the_messages_are_one_line(tmp_path):
    for changes in ({"linear": []}, {"data__image_size": "32"}, {"bogus": 1}, {"linear__budget": 2}):
        with pytest.raises(ParamsError) as refused:
            load_params(write_params(tmp_path, **changes))
        assert "\n" not in str(refused.value) and "pydantic" not in str(refused.value)


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ndata:\n  name: shapes\n   image_size: 32\n")
    with pytest.raises(ParamsError, match=rf"^{path}, line 4, column 14: not valid YAML \(mapping values are not allowed here\); fix the syntax there$"):
        load_params(path)
    path.write_text("linear:\n  learning_rates: [0.01, 0.1\n  epochs: 3\n")
    with pytest.raises(ParamsError, match=r"line 3, .*not valid YAML .*flow sequence at line 2"):
        load_params(path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- seed\n- data\n")
    with pytest.raises(ParamsError, match=r"params.yaml must be a mapping of sections \(seed, device, engine, data"):
        load_params(path)


def test_an_empty_file_means_every_default(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing set\n")
    params = load_params(path)
    assert (params.seed, params.device, params.engine, params.data.name, params.extract_batch_size) == (0, "auto", "local", "shapes", 1000)


def test_exponents_without_a_dot_are_numbers_as_in_dvc(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("linear:\n  learning_rates: [1e-2, 3E-3, 1e+0]\n  reg_strengths: [0]\n")
    assert load_params(path).linear.learning_rates == [0.01, 0.003, 1.0]


def test_an_extractor_without_settings_gets_its_defaults(tmp_path):
    path = write_params(tmp_path)
    path.write_text(path.read_text().replace("  pixels: {}\n", "  pixels:\n"))
    assert load_params(path).extractors["pixels"] == {}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_cuda_without_a_gpu_is_refused_at_load_time(tmp_path):
    with pytest.raises(ParamsError, match=r"^device: cuda but no CUDA GPU is visible to PyTorch; use auto or cpu$"):
        load_params(write_params(tmp_path, device="cuda"))


def test_a_feature_sets_settings_are_validated_like_the_section(tmp_path):
    params = load_params(write_params(tmp_path, mlp__overrides={"pixels": {"hidden_sizes": [[64], [32]], "budget": 4}}))
    pixels = params.mlp.for_feature_set("pixels")
    assert pixels.hidden_size_options == [[64], [32]] and pixels.budget == 4 and pixels.overrides == {}
    with pytest.raises(ParamsError, match=r"^mlp.overrides.pixels: the search grid has 4 points but mlp.overrides.pixels.budget is 2; raise"):
        load_params(write_params(tmp_path, mlp__overrides={"pixels": {"hidden_sizes": [[64], [32]], "reg_strengths": [1e-5, 1e-4]}}))
    with pytest.raises(ParamsError, match=r"unknown key\(s\) feature_sets in linear.overrides.bovw"):
        load_params(write_params(tmp_path, linear__overrides={"bovw": {"feature_sets": ["hog"]}}))


def test_the_linear_solver_is_sgd_or_lbfgs_and_lbfgs_searches_only_reg_strengths(tmp_path):
    with pytest.raises(ParamsError, match=r"linear.solver must be one of sgd, lbfgs"):
        load_params(write_params(tmp_path, linear__solver="newton"))
    with pytest.raises(ParamsError, match=r"linear.solver lbfgs minimizes the l2-penalized objective; set linear.regularization: l2"):
        load_params(write_params(tmp_path, linear__solver="lbfgs", linear__regularization="l1"))
    with pytest.raises(ParamsError, match=r"unknown key\(s\) solver"):
        load_params(write_params(tmp_path, mlp__solver="lbfgs"))  # MLPs are not convex: they keep SGD
    # three learning rates x four reg strengths is 12 SGD trials, but 4 L-BFGS ones: within budget 6
    changes = {"linear__reg_strengths": [1e-1, 1e-2, 1e-3, 1e-4], "linear__budget": 6, "linear__overrides": {}}
    with pytest.raises(ParamsError, match="search grid has 12 points"):
        load_params(write_params(tmp_path, **changes))
    assert load_params(write_params(tmp_path, linear__solver="lbfgs", **changes)).linear.solver == "lbfgs"


def test_a_sections_seed_sets_the_training_seed_and_null_keeps_the_top_level_one(tmp_path):
    params = load_params(write_params(tmp_path, seed=7, mlp__seed=3))
    assert params.mlp.training_seed(params.seed) == 3
    assert params.mlp.for_feature_set("pixels").training_seed(params.seed) == 3
    assert params.linear.seed is None and params.linear.training_seed(params.seed) == 7
    with pytest.raises(ParamsError, match="linear.seed"):
        load_params(write_params(tmp_path, linear__seed=-1))
