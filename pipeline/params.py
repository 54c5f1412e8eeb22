"""One typed loader for params.yaml: every stage reads its section here, checked before any work starts."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

DATA_SOURCES = ("shapes", "cifar10", "imagefolder")
ON_BAD_IMAGE = ("error", "skip")  # what prepare does with an image file it cannot read
CLASSIFIERS = ("svm", "softmax", "mlp")


class ParamsError(ValueError):
    """A parameter is missing, unknown or out of range; the message names it and the allowed values."""


@dataclass
class DataParams:
    name: str = "shapes"
    path: str | None = None
    image_size: int = 32
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    raw_dir: str = "data/raw"
    on_bad_image: str = "error"
    shapes: dict = field(default_factory=dict)
    train_fraction: float = 1.0  # train on a stratified subset of the train split (the data-size study); val and test unchanged

    def check(self) -> None:
        _check_choice("data.name", self.name, DATA_SOURCES)
        if self.name == "imagefolder" and not self.path:
            raise ParamsError("data.path must name a folder or archive of labelled images when data.name is imagefolder")
        _check_choice("data.on_bad_image", self.on_bad_image, ON_BAD_IMAGE)
        if self.image_size < 8:
            raise ParamsError(f"data.image_size must be >= 8; got {self.image_size}")
        if not 0 < self.train_fraction <= 1:
            raise ParamsError(f"data.train_fraction must be in (0, 1]; got {self.train_fraction}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.9:
                raise ParamsError(f"data.{name} must be in (0, 0.9); got {value}")


@dataclass
class TrainingParams:
    """Settings shared by the `linear` and `mlp` sections.

    learning_rates, reg_strengths and epochs (an int or a list) span the search on the validation
    split: `search: grid` tries every combination (at most `budget` of them), `search: random` draws
    `budget` of them. The chosen settings are refit on train + validation when `refit` is true.
    """

    learning_rates: list[float] = field(default_factory=lambda: [0.01])
    reg_strengths: list[float] = field(default_factory=lambda: [1e-4])
    regularization: str = "l2"
    epochs: int | list[int] = 10
    batch_size: int = 256
    optimizer: str = "sgd"
    momentum: float = 0.9
    lr_schedule: str = "cosine"
    patience: int = 0
    precision: str = "auto"
    augment: str = "none"
    search: str = "grid"
    budget: int = 12
    refit: bool = True
    feature_sets: list[str] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # {feature set: {setting: value}}, e.g. more epochs for bovw

    @property
    def epoch_options(self) -> list[int]:
        return list(self.epochs) if isinstance(self.epochs, list) else [self.epochs]

    def for_feature_set(self, feature_set: str) -> "TrainingParams":
        """This section with a feature set's overrides applied: the settings its stages train with."""
        return replace(self, overrides={}, **self.overrides.get(feature_set, {}))


SVM_LOSSES = ("hinge", "squared_hinge")


@dataclass
class LinearParams(TrainingParams):
    """svm_loss : "hinge" (the lecture's multiclass hinge, Weston & Watkins) or "squared_hinge" (one
    binary L2-SVM per class, as Coates et al. 2011 and scikit-learn's LinearSVC train them)."""

    classifiers: list[str] = field(default_factory=lambda: ["svm", "softmax"])
    svm_loss: str = "hinge"


@dataclass
class MLPParams(TrainingParams):
    hidden_sizes: list = field(default_factory=lambda: [512])
    activation: str = "relu"
    dropout: float = 0.0
    batchnorm: bool = False
    loss: str = "softmax"

    @property
    def hidden_size_options(self) -> list[list[int]]:
        """[1024, 512] is one architecture; [[1024], [1024, 512]] are two to search over."""
        sizes = self.hidden_sizes
        if sizes and all(isinstance(option, list) for option in sizes):
            return [list(option) for option in sizes]
        return [list(sizes)]


@dataclass
class Params:
    seed: int
    device: str
    engine: str
    data: DataParams
    extractors: dict[str, dict]
    extract_batch_size: int
    extract_mirror: bool
    linear: LinearParams
    mlp: MLPParams

    def feature_set_members(self, feature_set: str) -> list[str]:
        """'hog+color_hist' -> ['hog', 'color_hist'], each checked to be a configured extractor."""
        members = feature_set.split("+")
        unknown = [m for m in members if m not in self.extractors]
        if unknown or not feature_set:
            raise ParamsError(
                f"feature set {feature_set!r} names {', '.join(unknown) or 'nothing'}, not among the configured "
                f"extractors ({', '.join(self.extractors)}); add it under `extractors` in params.yaml"
            )
        return members


def _build(cls, section: dict | None, where: str):
    section = dict(section or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ParamsError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(known))}")
    return cls(**section)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; raise ParamsError naming the first bad parameter."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root")
    raw = yaml.safe_load(path.read_text()) or {}
    extract = raw.get("extract") or {}
    unknown = sorted(set(extract) - {"batch_size", "mirror"})
    if unknown:
        raise ParamsError(f"unknown key(s) {', '.join(unknown)} in extract; allowed: batch_size, mirror")
    params = Params(
        seed=int(raw.get("seed", 0)),
        device=str(raw.get("device", "auto")),
        engine=str(raw.get("engine", "local")),
        data=_build(DataParams, raw.get("data"), "data"),
        extractors={name: dict(value or {}) for name, value in (raw.get("extractors") or {}).items()},
        extract_batch_size=int(extract.get("batch_size", 1000)),
        extract_mirror=extract.get("mirror", False),
        linear=_build(LinearParams, raw.get("linear"), "linear"),
        mlp=_build(MLPParams, raw.get("mlp"), "mlp"),
    )
    params.data.check()
    from pipeline.engine import ENGINES

    _check_choice("engine", params.engine, ENGINES)
    if params.device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"device must be auto, cpu or cuda; got {params.device!r}")
    unknown = [c for c in params.linear.classifiers if c not in ("svm", "softmax")]
    if unknown:
        raise ParamsError(f"linear.classifiers must be among svm, softmax; got {', '.join(unknown)}")
    if params.extract_batch_size < 1:
        raise ParamsError(f"extract.batch_size must be an integer >= 1; got {params.extract_batch_size}")
    if not isinstance(params.extract_mirror, bool):
        raise ParamsError(f"extract.mirror must be true or false; got {params.extract_mirror!r}")
    for where, section in (("linear", params.linear), ("mlp", params.mlp)):
        for feature_set in section.feature_sets:
            params.feature_set_members(feature_set)
        _check_section(section, where)
        _check_overrides(section, where, params)
    return params


def _check_choice(key: str, value, options) -> None:
    """Refuse a setting outside its allowed values, naming the key and every allowed value."""
    if value not in options:
        raise ParamsError(f"{key} must be one of {', '.join(options)}; got {value!r}")


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_training(section: TrainingParams, where: str) -> None:
    """The ranges models.training.TrainConfig enforces, and the search settings, checked here so that
    every stage, prepare first, refuses them before any work (TrainConfig is only built by a training
    stage, after extraction); each message names the key and the allowed values."""
    if not section.learning_rates or any(rate <= 0 for rate in section.learning_rates):
        raise ParamsError(f"{where}.learning_rates must be a non-empty list of values > 0; got {section.learning_rates}")
    if not section.reg_strengths or any(strength < 0 for strength in section.reg_strengths):
        raise ParamsError(f"{where}.reg_strengths must be a non-empty list of values >= 0; got {section.reg_strengths}")
    if not _is_int(section.batch_size, 1):
        raise ParamsError(f"{where}.batch_size must be an integer >= 1; got {section.batch_size!r}")
    if not 0 <= section.momentum < 1:
        raise ParamsError(f"{where}.momentum must be in [0, 1); got {section.momentum}")
    if section.regularization not in ("l2", "l1"):
        raise ParamsError(f"{where}.regularization must be l2 or l1; got {section.regularization!r}")
    if section.lr_schedule not in ("constant", "cosine"):
        raise ParamsError(f"{where}.lr_schedule must be constant or cosine; got {section.lr_schedule!r}")
    from models.augment import AUGMENTATIONS
    from models.search import SEARCH_METHODS
    from models.precision import REQUESTABLE as PRECISIONS
    from models.training import OPTIMIZERS

    epochs = section.epoch_options
    if not epochs or not all(_is_int(value, 1) for value in epochs):
        raise ParamsError(f"{where}.epochs must be an integer >= 1 or a non-empty list of them; got {section.epochs!r}")
    _check_choice(f"{where}.optimizer", section.optimizer, OPTIMIZERS)
    _check_choice(f"{where}.augment", section.augment, AUGMENTATIONS)
    _check_choice(f"{where}.precision", section.precision, PRECISIONS)
    _check_choice(f"{where}.search", section.search, SEARCH_METHODS)
    if not _is_int(section.budget, 1):
        raise ParamsError(f"{where}.budget must be an integer >= 1 (trials); got {section.budget!r}")
    if not _is_int(section.patience, 0):
        raise ParamsError(f"{where}.patience must be an integer >= 0 (0: no early stopping); got {section.patience!r}")
    if not isinstance(section.refit, bool):
        raise ParamsError(f"{where}.refit must be true or false; got {section.refit!r}")
    grid_size = len(section.learning_rates) * len(section.reg_strengths) * len(epochs)
    if isinstance(section, MLPParams):
        grid_size *= len(section.hidden_size_options)
    if section.search == "grid" and grid_size > section.budget:
        raise ParamsError(
            f"{where}: the search grid has {grid_size} points but {where}.budget is {section.budget}; "
            f"raise {where}.budget or set {where}.search: random"
        )


def _check_overrides(section: TrainingParams, where: str, params: Params) -> None:
    """Each override names a feature set and settings of its section, and leaves them in range.

    The feature set need not be listed: trimming feature_sets (dvc exp run -S) keeps its overrides.
    """
    overridable = [f.name for f in fields(section) if f.name not in ("feature_sets", "overrides", "classifiers")]
    if not isinstance(section.overrides, dict):
        raise ParamsError(f"{where}.overrides must map feature sets to settings; got {section.overrides!r}")
    for feature_set, settings in section.overrides.items():
        missing = [member for member in str(feature_set).split("+") if member not in params.extractors]
        if missing:
            raise ParamsError(
                f"{where}.overrides.{feature_set}: {', '.join(missing)} is not a configured extractor ({', '.join(params.extractors)}); "
                f"remove the override or add the extractor under `extractors` in params.yaml"
            )
        if not isinstance(settings, dict):
            raise ParamsError(f"{where}.overrides.{feature_set} must map settings to values; got {settings!r}")
        unknown = sorted(set(settings) - set(overridable))
        if unknown:
            raise ParamsError(f"unknown key(s) {', '.join(unknown)} in {where}.overrides.{feature_set}; allowed: {', '.join(overridable)}")
        _check_section(section.for_feature_set(feature_set), f"{where}.overrides.{feature_set}")


def _check_section(section: TrainingParams, where: str) -> None:
    """Every setting of a `linear` or `mlp` section (or one feature set's overridden copy of it)."""
    if isinstance(section, MLPParams):
        check_mlp(section, where)  # first: the search grid's size counts its hidden_sizes options
    else:
        _check_choice(f"{where}.svm_loss", section.svm_loss, SVM_LOSSES)
    _check_training(section, where)


def check_mlp(section: MLPParams, where: str = "mlp") -> None:
    from models.mlp import ACTIVATIONS

    for option in section.hidden_size_options:
        if not all(_is_int(size, 1) for size in option):
            raise ParamsError(f"{where}.hidden_sizes must be a list of integers >= 1, or a list of such lists; got {section.hidden_sizes!r}")
    _check_choice(f"{where}.activation", section.activation, ACTIVATIONS)
    if not 0 <= section.dropout < 1:
        raise ParamsError(f"{where}.dropout must be in [0, 1); got {section.dropout!r}")
    if section.loss not in ("svm", "softmax"):
        raise ParamsError(f"{where}.loss must be svm or softmax; got {section.loss!r}")
    if not isinstance(section.batchnorm, bool):
        raise ParamsError(f"{where}.batchnorm must be true or false; got {section.batchnorm!r}")


def check_extractors(params: Params, names: list[str] | None = None) -> dict[str, int]:
    """Build each configured extractor (all, or `names`) and size its output for data.image_size.

    An unknown extractor name or an impossible value (zero bins, HoG cells larger than the image, more
    centroids than patches) then stops prepare or extract before it does any work, naming the key.
    Imports the extractors (seconds), so it is kept out of load_params, which every stage calls.
    Returns {name: feature dimension}.
    """
    from features import get_extractor

    size = params.data.image_size
    dims = {}
    for name in names if names is not None else params.extractors:
        if name not in params.extractors:
            raise ParamsError(f"extractor {name!r} is not configured under `extractors` in params.yaml")
        try:
            extractor = get_extractor(name, **params.extractors[name])
        except ValueError as error:
            raise ParamsError(f"extractors.{name}: {error}") from None
        try:
            dims[name] = extractor.output_dim((size, size, 3))
        except ValueError as error:
            raise ParamsError(f"extractors.{name}: {error} (data.image_size is {size})") from None
    return dims
