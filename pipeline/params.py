"""One typed loader for params.yaml: every stage reads its section here, checked before any work starts."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
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

    def check(self) -> None:
        if self.name not in DATA_SOURCES:
            raise ParamsError(f"data.name must be one of {', '.join(DATA_SOURCES)}; got {self.name!r}")
        if self.name == "imagefolder" and not self.path:
            raise ParamsError("data.path must name a folder or archive of labelled images when data.name is imagefolder")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise ParamsError(f"data.on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {self.on_bad_image!r}")
        if self.image_size < 8:
            raise ParamsError(f"data.image_size must be >= 8; got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.9:
                raise ParamsError(f"data.{name} must be in (0, 0.9); got {value}")


@dataclass
class TrainingParams:
    """Settings shared by the `linear` and `mlp` sections; lists are the validation grid searched."""

    learning_rates: list[float] = field(default_factory=lambda: [0.01])
    reg_strengths: list[float] = field(default_factory=lambda: [1e-4])
    regularization: str = "l2"
    epochs: int = 10
    batch_size: int = 256
    momentum: float = 0.9
    lr_schedule: str = "cosine"
    feature_sets: list[str] = field(default_factory=list)


@dataclass
class LinearParams(TrainingParams):
    classifiers: list[str] = field(default_factory=lambda: ["svm", "softmax"])


@dataclass
class MLPParams(TrainingParams):
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    activation: str = "relu"
    dropout: float = 0.0
    loss: str = "softmax"


@dataclass
class Params:
    seed: int
    device: str
    data: DataParams
    extractors: dict[str, dict]
    extract_batch_size: int
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
    params = Params(
        seed=int(raw.get("seed", 0)),
        device=str(raw.get("device", "auto")),
        data=_build(DataParams, raw.get("data"), "data"),
        extractors={name: dict(value or {}) for name, value in (raw.get("extractors") or {}).items()},
        extract_batch_size=int((raw.get("extract") or {}).get("batch_size", 1000)),
        linear=_build(LinearParams, raw.get("linear"), "linear"),
        mlp=_build(MLPParams, raw.get("mlp"), "mlp"),
    )
    params.data.check()
    if params.device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"device must be auto, cpu or cuda; got {params.device!r}")
    unknown = [c for c in params.linear.classifiers if c not in ("svm", "softmax")]
    if unknown:
        raise ParamsError(f"linear.classifiers must be among svm, softmax; got {', '.join(unknown)}")
    if params.extract_batch_size < 1:
        raise ParamsError(f"extract.batch_size must be an integer >= 1; got {params.extract_batch_size}")
    for where, section in (("linear", params.linear), ("mlp", params.mlp)):
        for feature_set in section.feature_sets:
            params.feature_set_members(feature_set)
        _check_training(section, where)
    _check_mlp(params.mlp)
    return params


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_training(section: TrainingParams, where: str) -> None:
    """The ranges models.training.TrainConfig enforces, checked here too so that every stage, prepare
    first, refuses them before any work (TrainConfig is only built by a training stage, after extraction)."""
    if not section.learning_rates or any(rate <= 0 for rate in section.learning_rates):
        raise ParamsError(f"{where}.learning_rates must be a non-empty list of values > 0; got {section.learning_rates}")
    if not section.reg_strengths or any(strength < 0 for strength in section.reg_strengths):
        raise ParamsError(f"{where}.reg_strengths must be a non-empty list of values >= 0; got {section.reg_strengths}")
    for name in ("epochs", "batch_size"):
        if not _is_int(getattr(section, name), 1):
            raise ParamsError(f"{where}.{name} must be an integer >= 1; got {getattr(section, name)!r}")
    if not 0 <= section.momentum < 1:
        raise ParamsError(f"{where}.momentum must be in [0, 1); got {section.momentum}")
    if section.regularization not in ("l2", "l1"):
        raise ParamsError(f"{where}.regularization must be l2 or l1; got {section.regularization!r}")
    if section.lr_schedule not in ("constant", "cosine"):
        raise ParamsError(f"{where}.lr_schedule must be constant or cosine; got {section.lr_schedule!r}")


def _check_mlp(mlp: MLPParams) -> None:
    if not all(_is_int(size, 1) for size in mlp.hidden_sizes):
        raise ParamsError(f"mlp.hidden_sizes must be a list of integers >= 1; got {mlp.hidden_sizes}")
    if not 0 <= mlp.dropout < 1:
        raise ParamsError(f"mlp.dropout must be in [0, 1); got {mlp.dropout}")
    if mlp.loss not in ("svm", "softmax"):
        raise ParamsError(f"mlp.loss must be svm or softmax; got {mlp.loss!r}")


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
