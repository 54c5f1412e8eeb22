"""`featurebench extractor new/remove`: write or delete an extractor's module and test, and its params entry."""
from __future__ import annotations

import keyword
import re
import shutil
from pathlib import Path

from ruamel.yaml import YAML  # round-trips params.yaml with its comments, which PyYAML drops
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from features.registry import NOT_EXTRACTOR_MODULES
from pipeline.artifacts import EXTRACT_METRICS_DIR, feature_dir, train_dir
from pipeline.io import atomic_path
from pipeline.params import CLASSIFIERS

DEFAULT_PARAMS = {"scale": 1.0}

MODULE_TEMPLATE = '''"""{name}: TODO say in one line what this feature captures and why a classifier might use it."""
from __future__ import annotations

import numpy as np

from features.base import FeatureExtractor, NotFittedError, check_images
from features.registry import register


@register("{name}")
class {class_name}(FeatureExtractor):
    """TODO: what the feature measures, with its source if it comes from a paper.

    scale : an example hyperparameter (keyword-only; logged to MLflow as extractors.{name}.scale).
    d = output_dim((H, W, 3)).
    """
{fitted_flag}
    def __init__(self, *, scale: float = 1.0):
        self.scale = scale

    def output_dim(self, image_shape) -> int:
        height, width, channels = image_shape
        return channels  # TODO: the length of one image's feature vector
{fit_method}
    def transform(self, images: np.ndarray) -> np.ndarray:
        """images : (n, H, W, 3) uint8 -> (n, output_dim) float32, each row from its own image only."""
        check_images(images){fitted_check}
        raise NotImplementedError("fill in transform() in features/{name}.py")
'''

FIT_METHOD = '''
    def fit(self, images: np.ndarray) -> "{class_name}":
        """Learn state from the train split only; learned attributes end in an underscore."""
        check_images(images)
        self.mean_rgb_ = images.reshape(-1, 3).mean(0).astype(np.float32)  # TODO: what your extractor learns
        return self
'''

FITTED_CHECK = '''
        if not hasattr(self, "mean_rgb_"):
            raise NotFittedError("{name} must be fit on the train split before transform")'''

TEST_TEMPLATE = '''"""Tests of the {name} extractor; the contract (shape, dtype, determinism, batches) runs on it automatically."""
import numpy as np

from features import get_extractor


def test_{name}_gives_one_float32_row_per_image(images):
    extractor = get_extractor("{name}").fit(images)
    out = extractor.transform(images)
    assert out.shape == (len(images), extractor.output_dim(images.shape[1:]))
    assert out.dtype == np.float32


# TODO: a property your feature must have, on the tiny images of tests/conftest.py
# (constant_image, step_edge_image, disk_image), e.g. "a constant image gives ...".
'''


class ScaffoldError(ValueError):
    """The name cannot be used; nothing was written."""


def class_name_for(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or name


def paths_for(root: Path, name: str) -> tuple[Path, Path]:
    return root / "features" / f"{name}.py", root / "tests" / "features" / f"test_{name}.py"


EXTRACTOR_NAME = re.compile(r"[a-z][a-z0-9_]*")  # ASCII: it names a module, a DVC stage and params keys


def check_name(name: str) -> None:
    """An extractor's name: a lower-case ASCII identifier that is not a keyword, a test module's name or
    one of the features package's own helper modules (which `remove` would otherwise delete)."""
    if not EXTRACTOR_NAME.fullmatch(name) or keyword.iskeyword(name) or name.startswith("test"):
        raise ScaffoldError(f"{name!r} is not a valid extractor name: use a lower-case ASCII Python identifier such as mean_color")
    if name in NOT_EXTRACTOR_MODULES:
        raise ScaffoldError(f"features/{name}.py is one of the features package's own modules, not an extractor")


def check_new_name(root: Path, name: str, registered: list[str], built_in: tuple[str, ...]) -> None:
    if name in built_in:
        raise ScaffoldError(f"{name!r} is a built-in extractor; choose another name")
    check_name(name)
    module, test = paths_for(root, name)
    if name in registered or module.exists() or test.exists():
        raise ScaffoldError(f"extractor {name!r} already exists ({module.relative_to(root)}); choose another name or remove it first")


def _load_params(root: Path):
    from pipeline.params import read_yaml

    read_yaml(root / "params.yaml")  # a syntax error as one line naming the file and line, not ruamel's traceback
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    params = yaml.load((root / "params.yaml").read_text())
    for section in ("extractors", "linear"):
        if not isinstance(params, dict) or not isinstance(params.get(section), dict):
            raise ScaffoldError(f"params.yaml has no `{section}:` section; restore it (git checkout params.yaml) and try again")
    if not isinstance(params["linear"].get("feature_sets"), list):
        raise ScaffoldError("params.yaml's linear.feature_sets is not a list; restore it (git checkout params.yaml) and try again")
    return yaml, params


def add_extractor_entry(params, name: str, settings: dict) -> None:
    """params.yaml's `extractors:` gains `name: settings` as its last entry, the comment lines that
    followed the section (the next section's, ruamel keeps them on the last entry) still after it."""
    extractors = params["extractors"]
    following = _take_following_lines(extractors)
    extractors[name] = CommentedMap(settings)
    _give_following_lines(extractors, following)


def remove_extractor_entry(params, name: str) -> None:
    """`name` out of params.yaml's `extractors:`; the comment lines after it, when it was the last entry,
    move to the new last one (add_extractor_entry undone to the byte)."""
    extractors = params["extractors"]
    if name not in extractors:
        return
    following = _take_following_lines(extractors) if list(extractors)[-1] == name else None
    del extractors[name]
    _give_following_lines(extractors, following)


def _last_entry(mapping) -> tuple:
    """(mapping, key) of the deepest last entry under a ruamel mapping: where it keeps what follows it."""
    while True:
        key = list(mapping)[-1]
        if not (isinstance(mapping[key], CommentedMap) and len(mapping[key])):
            return mapping, key
        mapping = mapping[key]


def _take_following_lines(mapping) -> str | None:
    """Cut the blank and comment lines after a mapping's last entry, leaving its own end-of-line comment."""
    if not isinstance(mapping, CommentedMap) or not len(mapping):
        return None
    holder, key = _last_entry(mapping)
    slots = holder.ca.items.get(key)
    if not slots or len(slots) < 3 or slots[2] is None:
        return None
    own, newline, following = slots[2].value.partition("\n")
    if not following:
        return None
    slots[2].value = own + newline
    return following


def _give_following_lines(mapping, following: str | None) -> None:
    if following is None or not isinstance(mapping, CommentedMap) or not len(mapping):
        return
    holder, key = _last_entry(mapping)
    slots = holder.ca.items.setdefault(key, [None, None, None, None])
    if slots[2] is None:
        slots[2] = CommentToken("\n" + following, CommentMark(0), None)
    else:
        slots[2].value += following


def _dump_params(root: Path, yaml: YAML, params) -> None:
    with atomic_path(root / "params.yaml") as temporary:
        with open(temporary, "w") as handle:
            yaml.dump(params, handle)


def create(root: Path, name: str, fitted: bool, registered: list[str], built_in: tuple[str, ...]) -> list[Path]:
    """Write the module and its test and register the name in params.yaml; return what was written."""
    try:
        check_new_name(root, name, registered, built_in)
        yaml, params = _load_params(root)  # read before writing anything: a broken params.yaml stops here
    except ScaffoldError as error:
        raise ScaffoldError(f"{error}; nothing was written") from None
    class_name = class_name_for(name)
    module, test = paths_for(root, name)
    module.write_text(
        MODULE_TEMPLATE.format(
            name=name,
            class_name=class_name,
            fitted_flag="\n    fitted = True\n" if fitted else "",
            fit_method=FIT_METHOD.format(class_name=class_name) if fitted else "",
            fitted_check=FITTED_CHECK.format(name=name) if fitted else "",
        )
    )
    test.parent.mkdir(parents=True, exist_ok=True)
    test.write_text(TEST_TEMPLATE.format(name=name))
    add_extractor_entry(params, name, dict(DEFAULT_PARAMS))
    if name not in params["linear"]["feature_sets"]:
        params["linear"]["feature_sets"].append(name)
    _dump_params(root, yaml, params)
    return [module, test, root / "params.yaml"]


def check_removable(root: Path, name: str, built_in: tuple[str, ...]):
    """Refuse, before anything is asked or deleted, a name `remove` must not act on; else (yaml, params)
    as `_load_params` read them."""
    if name in built_in:
        raise ScaffoldError(f"{name!r} is a built-in extractor and cannot be removed")
    check_name(name)
    yaml, params = _load_params(root)
    if not paths_for(root, name)[0].exists() and name not in params["extractors"]:
        raise ScaffoldError(f"no extractor {name!r} in this repository")
    return yaml, params


def pipeline_outputs(root: Path, name: str, params: dict) -> list[Path]:
    """What the pipeline wrote for extractor `name` and is here: its features, its extraction's figures
    and the results of the feature sets that use it (their stages go with it)."""
    sets = {s for section in ("linear", "mlp") if isinstance(params.get(section), dict) for s in params[section].get("feature_sets") or [] if name in str(s).split("+")}
    candidates = [root / feature_dir(name), root / EXTRACT_METRICS_DIR / f"{name}.json"]
    candidates += [root / train_dir(classifier, feature_set) for feature_set in sorted(sets) for classifier in CLASSIFIERS]
    return [path for path in candidates if path.exists()]


def remove(root: Path, name: str, built_in: tuple[str, ...]) -> list[Path]:
    """Delete the module, its test and what the pipeline wrote for it (`pipeline_outputs`), and take the
    name out of params.yaml (feature sets using it too)."""
    yaml, params = check_removable(root, name, built_in)
    module, test = paths_for(root, name)
    outputs = pipeline_outputs(root, name, params)
    remove_extractor_entry(params, name)
    for section in ("linear", "mlp"):
        if not isinstance(params.get(section), dict) or not isinstance(params[section].get("feature_sets"), list):
            continue
        sets = params[section]["feature_sets"]
        for feature_set in [s for s in sets if name in s.split("+")]:
            sets.remove(feature_set)
        overrides = params[section].get("overrides") or {}
        for feature_set in [s for s in overrides if name in str(s).split("+")]:
            del overrides[feature_set]
    _dump_params(root, yaml, params)
    removed = []
    for path in (module, test, *outputs):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed + [root / "params.yaml"]


PIN_TEMPLATE = '''"""{name} is provided by the installed package {package} (entry point featurebench.extractors).

This file is what `dvc.yaml` tracks for extract@{name}: it changes, and the extraction re-runs, when
the package version does. Written by `featurebench extractor use {name}`.
"""
PROVIDED_BY = "{package}=={version}"
'''


def use_package_extractor(root: Path, name: str, package: str, version: str, default_params: dict) -> list[Path]:
    """Put an extractor that an installed package provides into the pipeline: a version pin and params."""
    module, _ = paths_for(root, name)
    yaml, params = _load_params(root)
    if name in params["extractors"]:
        raise ScaffoldError(f"extractor {name!r} is already in params.yaml")
    module.write_text(PIN_TEMPLATE.format(name=name, package=package, version=version))
    add_extractor_entry(params, name, default_params)
    if name not in params["linear"]["feature_sets"]:
        params["linear"]["feature_sets"].append(name)
    _dump_params(root, yaml, params)
    return [module, root / "params.yaml"]
