"""Scores a comparison needs beyond overall accuracy."""
from __future__ import annotations

import re
import sys
from collections import Counter

import numpy as np

PER_CLASS_PREFIX = "test_accuracy."
# MLflow's own rule (mlflow.utils.validation) is `[/\w.\- :]`; colons are refused on Windows and a
# slash makes a name a path (`a/../b`), so both are replaced too. \w keeps unicode letters and digits.
_REFUSED_IN_METRIC_NAMES = re.compile(r"[^\w.\- ]")
# MLflow's MAX_ENTITY_KEY_LENGTH (250), less the prefix and room for `_<class index>` suffixes.
_MAX_CLASS_PART = 250 - len(PER_CLASS_PREFIX) - 16


def metric_names(class_names: list[str]) -> list[str]:
    """`test_accuracy.<class>` for every class, each one a valid MLflow metric name and all distinct.

    Characters MLflow refuses become `_`. Classes that would then share a name, even only by case
    (`cat&dog`, `cat?dog`, `Cat_dog`: a file store on macOS or Windows cannot tell case apart), all get
    their class index appended (`test_accuracy.cat_dog_0`, `..._1`), so none silently overwrites another;
    a class whose name is already valid and unique keeps it unchanged.
    """
    keys = [PER_CLASS_PREFIX + _REFUSED_IN_METRIC_NAMES.sub("_", name)[:_MAX_CLASS_PART] for name in class_names]
    counts = Counter(key.casefold() for key in keys)
    shared = {key for key, count in counts.items() if count > 1}
    taken = {key for key in counts if key not in shared}  # unique names are kept: reserve them first
    for index, key in enumerate(keys):
        if key.casefold() not in shared:
            continue
        key = f"{key}_{index}"
        while key.casefold() in taken:  # the suffixed name is another class's real name (`a_b_1`)
            key = f"{key}_{index}"
        keys[index] = key
        taken.add(key.casefold())
    return keys


def per_class_accuracy(actual: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """{`test_accuracy.<class>`: fraction of that class's images predicted right}, rounded to 4 places.

    A class with no test images has no accuracy: it is left out (with a warning on stderr) rather
    than scored 0.0, which would read as a class the model never gets right.
    """
    scores = {}
    for index, (name, key) in enumerate(zip(class_names, metric_names(class_names))):
        of_class = actual == index
        if not of_class.any():
            print(f"warning: class {name!r} has no test images; it gets no per-class accuracy", file=sys.stderr)
            continue
        scores[key] = round(float((predicted[of_class] == index).mean()), 4)
    return scores
