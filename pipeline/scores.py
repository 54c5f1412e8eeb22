"""Scores a comparison needs beyond overall accuracy."""
from __future__ import annotations

import re

import numpy as np

PER_CLASS_PREFIX = "test_accuracy."


def metric_name(class_name: str) -> str:
    """`test_accuracy.<class>`, with characters MLflow refuses in metric names replaced by `_`."""
    return PER_CLASS_PREFIX + re.sub(r"[^\w.\- /]", "_", class_name)


def per_class_accuracy(actual: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """{`test_accuracy.<class>`: fraction of that class's images predicted right}, rounded to 4 places.

    A class absent from `actual` scores 0 (there is nothing it got right).
    """
    scores = {}
    for index, name in enumerate(class_names):
        of_class = actual == index
        scores[metric_name(name)] = round(float((predicted[of_class] == index).mean()) if of_class.any() else 0.0, 4)
    return scores
