"""A run's featurizer rebuilds the extractors it was trained with, fitted state included."""
import numpy as np

from features import get_extractor
from pipeline.featurizer import load_featurizer, save_featurizer
from pipeline.io import save_arrays, write_json


def extracted(folder, name: str, params: dict, images: np.ndarray):
    """What `extract@NAME` leaves in data/features/NAME/: extractor.json and, when fitted, state.npz."""
    extractor = get_extractor(name, **params).fit(images)
    write_json(folder / "extractor.json", {"name": name, "params": extractor.get_params()})
    state = {key: value for key, value in vars(extractor).items() if key.endswith("_") and isinstance(value, np.ndarray)}
    if state:
        save_arrays(folder / "state.npz", **state)
    return extractor


def test_a_saved_featurizer_transforms_new_images_like_the_fitted_extractors(monkeypatch, tmp_path, images):
    monkeypatch.chdir(tmp_path)
    bovw = extracted(tmp_path / "data/features/bovw", "bovw", {"n_clusters": 4, "n_patches": 200, "patch_size": 6, "stride": 4}, images)
    hog = extracted(tmp_path / "data/features/hog", "hog", {}, images)
    meta = {"image_shape": [32, 32, 3], "class_names": ["a", "b"]}
    folder = save_featurizer(tmp_path / "featurizer", "bovw+hog", ["bovw", "hog"], meta)
    assert (folder / "bovw/state.npz").exists() and not (folder / "hog/state.npz").exists()

    featurizer = load_featurizer(folder)
    new_images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    # each extractor's rows as the extract stage stores them: bovw's in float16, hog's in float32
    stored = [bovw.transform(new_images).astype(np.float16).astype(np.float32), hog.transform(new_images)]
    np.testing.assert_array_equal(featurizer.transform(new_images), np.concatenate(stored, axis=1))
    assert featurizer.class_names == ["a", "b"] and featurizer.image_shape == (32, 32, 3)


def test_images_of_another_size_are_refused_with_the_expected_shape(monkeypatch, tmp_path, images):
    import pytest

    monkeypatch.chdir(tmp_path)
    extracted(tmp_path / "data/features/pixels", "pixels", {}, images)
    featurizer = load_featurizer(save_featurizer(tmp_path / "f", "pixels", ["pixels"], {"image_shape": [32, 32, 3], "class_names": ["a"]}))
    with pytest.raises(ValueError, match=r"\(32, 32, 3\)"):
        featurizer.transform(np.zeros((1, 16, 16, 3), np.uint8))


def test_one_image_instead_of_a_batch_is_refused_with_the_way_to_pass_it(monkeypatch, tmp_path, images):
    import pytest

    monkeypatch.chdir(tmp_path)
    extracted(tmp_path / "data/features/pixels", "pixels", {}, images)
    featurizer = load_featurizer(save_featurizer(tmp_path / "f", "pixels", ["pixels"], {"image_shape": [32, 32, 3], "class_names": ["a"]}))
    with pytest.raises(ValueError, match=r"must be a batch \(n, 32, 32, 3\); got one image of shape \(32, 32, 3\): pass images\[None\]"):
        featurizer.transform(images[0])
    assert featurizer.transform(images[0][None]).shape == (1, 32 * 32 * 3)
