import numpy as np
import pytest
from mlflow.utils.validation import _validate_metric_name

from pipeline.scores import metric_names, per_class_accuracy

ODD_CLASS_NAMES = [
    "cat&dog", "cat?dog", "cat_dog", "Cat_Dog", "cat_dog_1",  # equal once sanitized, or but for case
    "sea lion", "café", "日本の猫", "a/b", "x:y", "..", "", "n" * 300, "n" * 300 + "!",
]


def test_per_class_accuracy_is_the_fraction_of_each_class_predicted_right():
    actual = np.array([0, 0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 1])
    assert per_class_accuracy(actual, predicted, ["cat", "dog", "frog"]) == {
        "test_accuracy.cat": 0.75,
        "test_accuracy.dog": 0.5,
        "test_accuracy.frog": 0.0,
    }


def test_a_class_missing_from_the_test_split_is_left_out_with_a_warning_not_scored_zero(capsys):
    assert per_class_accuracy(np.array([0]), np.array([0]), ["a", "b"]) == {"test_accuracy.a": 1.0}
    assert "class 'b' has no test images" in capsys.readouterr().err


def test_metric_names_keep_what_mlflow_accepts_and_replace_the_rest():
    assert metric_names(["green_blob", "sea-lion 2", "cat's (big)"]) == [
        "test_accuracy.green_blob", "test_accuracy.sea-lion 2", "test_accuracy.cat_s _big_",
    ]


def test_classes_that_differ_only_in_punctuation_or_case_keep_a_metric_each():
    keys = metric_names(ODD_CLASS_NAMES)
    assert len({key.casefold() for key in keys}) == len(ODD_CLASS_NAMES)
    assert keys[:5] == ["test_accuracy.cat_dog_0", "test_accuracy.cat_dog_1_1", "test_accuracy.cat_dog_2", "test_accuracy.Cat_Dog_3", "test_accuracy.cat_dog_1"]
    assert keys[5:8] == ["test_accuracy.sea lion", "test_accuracy.café", "test_accuracy.日本の猫"]


@pytest.mark.parametrize("key", metric_names(ODD_CLASS_NAMES))
def test_every_metric_name_is_one_mlflow_accepts(key):
    _validate_metric_name(key)  # raises MlflowException on a bad character, a path-like name or a long one
    assert len(key) <= 250


def test_per_class_accuracy_of_classes_equal_but_for_punctuation_gives_each_its_own_score():
    scores = per_class_accuracy(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), ["cat&dog", "cat?dog"])
    assert scores == {"test_accuracy.cat_dog_0": 1.0, "test_accuracy.cat_dog_1": 0.0}
