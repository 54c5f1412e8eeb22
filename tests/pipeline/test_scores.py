import numpy as np

from pipeline.scores import metric_name, per_class_accuracy


def test_per_class_accuracy_is_the_fraction_of_each_class_predicted_right():
    actual = np.array([0, 0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 1])
    assert per_class_accuracy(actual, predicted, ["cat", "dog", "frog"]) == {
        "test_accuracy.cat": 0.75,
        "test_accuracy.dog": 0.5,
        "test_accuracy.frog": 0.0,
    }


def test_a_class_missing_from_the_test_split_scores_zero_not_nan():
    assert per_class_accuracy(np.array([0]), np.array([0]), ["a", "b"]) == {"test_accuracy.a": 1.0, "test_accuracy.b": 0.0}


def test_metric_names_keep_what_mlflow_accepts_and_replace_the_rest():
    assert metric_name("green_blob") == "test_accuracy.green_blob"
    assert metric_name("sea-lion 2") == "test_accuracy.sea-lion 2"
    assert metric_name("cat's (big)") == "test_accuracy.cat_s _big_"
