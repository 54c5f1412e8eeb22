"""One typed loader for params.yaml: every stage reads its section here, checked before any work starts.

Each section is declared once, as a pydantic model: a setting's type, its range and the words its
error message uses sit together in its annotation (`Count(1)`, `Choice(OPTIMIZERS)`, ...). Types are
strict (`"32"` is not an integer, `0.01` is not a list), unknown keys are refused, and pydantic's
ValidationError becomes one ParamsError line naming the dotted key, the allowed values and the value
found. Rules across keys (a grid larger than its budget, a feature set naming an unconfigured
extractor, overrides) are model validators of the same models.
"""
import copy
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator


DATA_SOURCES = ("shapes", "cifar10", "imagefolder")
ON_BAD_IMAGE = ("error", "skip")  # what prepare does with an image file it cannot read
ENGINES = ("local", "ray")  # where extraction batches and search trials run: pipeline/engine.py
CLASSIFIERS = ("svm", "softmax", "mlp")
LINEAR_CLASSIFIERS = ("svm", "softmax")
SVM_LOSSES = ("hinge", "squared_hinge")
DEVICES = ("auto", "cpu", "cuda")
NOT_OVERRIDABLE = ("feature_sets", "overrides", "classifiers")  # what a stage is, not how it trains


class ParamsError(ValueError):
    """A parameter is missing, unknown or out of range; the message names it and the allowed values."""


# --- the words of a setting's error message, declared beside its type ------------------------------

class Says:
    """What a setting must be, in the words of its error message: "{key} must be {text}; got {value}"."""

    def __init__(self, text: str | Callable[[], str]):
        self._text = text

    @property
    def text(self) -> str:
        return self._text() if callable(self._text) else self._text


def _options(options: tuple | Callable[[], tuple]) -> tuple:
    return options() if callable(options) else options


def Choice(options: tuple | Callable[[], tuple], text: str | None = None):
    """A string among `options`: a tuple, or a function returning one when the tuple lives in a
    module that imports torch (read only when a params file is checked, not when this one is imported)."""

    def check(value: str) -> str:
        if value not in _options(options):
            raise ValueError("not among the options")
        return value

    return Annotated[str, AfterValidator(check), Says(text or (lambda: f"one of {', '.join(_options(options))}"))]


def Count(minimum: int, unit: str = ""):
    return Annotated[int, Field(ge=minimum), Says(f"an integer >= {minimum}{unit}")]


Flag = Annotated[bool, Says("true or false")]
REFIT_AUTO_BELOW = 10_000  # refit: auto refits when the train split has fewer images (TrainingParams.refits)
BelowOne = Annotated[float, Field(ge=0, lt=1), Says("in [0, 1)")]
HeldOutFraction = Annotated[float, Field(gt=0, lt=0.9), Says("in (0, 0.9)")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Width = Annotated[int, Field(ge=1)]


def _optimizers():
    from models.training import OPTIMIZERS

    return OPTIMIZERS


def _keep_choices():
    from models.training import KEEP_CHOICES

    return KEEP_CHOICES


def _augmentations():
    from models.augment import AUGMENTATIONS

    return AUGMENTATIONS


def _precisions():
    from models.precision import REQUESTABLE

    return REQUESTABLE


def _search_methods():
    from models.search import SEARCH_METHODS

    return SEARCH_METHODS


def _solvers():
    from models.solvers import SOLVERS

    return SOLVERS


def _activations():
    from models.mlp import ACTIVATIONS

    return tuple(ACTIVATIONS)


class SectionRule(ValueError):
    """A rule across keys of a section, worded once the section's dotted name ({where}) is known:
    `linear` itself, or `linear.overrides.bovw` for a feature set's overridden copy."""

    def worded(self, where: str) -> str:
        return str(self).format(where=where)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- the sections ----------------------------------------------------------------------------------

class DataParams(_Section):
    name: Choice(DATA_SOURCES) = "shapes"
    path: Annotated[str | None, Says("a folder or archive path, or null")] = None
    label: Annotated[
        str | None,
        Field(pattern=r"^\w[\w .\-]{0,63}$"),
        Says("null or a name of up to 64 letters, digits, spaces, '.', '-' or '_' (the MLflow experiment is featurebench/<label>)"),
    ] = None
    image_size: Count(8) = 32
    val_fraction: HeldOutFraction = 0.1
    test_fraction: HeldOutFraction = 0.2
    raw_dir: Annotated[str, Says("a folder path")] = "data/raw"
    on_bad_image: Choice(ON_BAD_IMAGE) = "error"
    # train on a stratified share of the train split (the data-size study); validation and test unchanged
    train_fraction: Annotated[float, Field(gt=0, le=1), Says("in (0, 1]")] = 1.0
    shapes: Annotated[dict[Literal["n_train", "n_test"], Width], Says("a mapping of n_train and n_test to integers >= 1")] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _path_for_imagefolder(self):
        if self.name == "imagefolder" and not self.path:
            raise ParamsError("data.path must name a folder or archive of labelled images when data.name is imagefolder")
        return self


class ExtractParams(_Section):
    batch_size: Count(1) = 1000
    mirror: Flag = False


class TrainingParams(_Section):
    """Settings shared by the `linear` and `mlp` sections.

    learning_rates, reg_strengths and epochs (an int or a list) span the search on the validation
    split: `search: grid` tries every combination (at most `budget` of them), `search: random` draws
    `budget` of them. The chosen settings are refit on train + validation when `refit` is true, or, with
    `refit: auto`, when the train split is small enough for its validation rows to matter (`refits`).
    """

    learning_rates: Annotated[list[Positive], Field(min_length=1), Says("a non-empty list of values > 0")] = [0.01]
    reg_strengths: Annotated[list[NonNegative], Field(min_length=1), Says("a non-empty list of values >= 0")] = [1e-4]
    regularization: Choice(("l2", "l1"), "l2 or l1") = "l2"
    epochs: Annotated[Width | Annotated[list[Width], Field(min_length=1)], Says("an integer >= 1 or a non-empty list of them")] = 10
    batch_size: Count(1) = 256
    optimizer: Choice(_optimizers) = "sgd"
    momentum: BelowOne = 0.9
    lr_schedule: Choice(("constant", "cosine"), "constant or cosine") = "cosine"
    patience: Count(0, " (0: no early stopping)") = 0
    keep: Choice(_keep_choices) = "best_val"
    precision: Choice(_precisions) = "auto"
    augment: Choice(_augmentations) = "none"
    search: Choice(_search_methods) = "grid"
    budget: Count(1, " (trials)") = 12
    refit: Annotated[bool | Literal["auto"], Says("true, false or auto")] = True
    # the initial weights and minibatch order only; None: the top-level seed, which also draws the data and splits
    seed: Annotated[int | None, Field(ge=0), Says("an integer >= 0, or null for the top-level seed")] = None
    feature_sets: Annotated[list[str], Says("a list of feature sets: extractor names or '+'-joined combinations")] = []
    # {feature set: {setting: value}}, e.g. more epochs for bovw; checked by Params, which knows the extractors
    overrides: Annotated[dict[str, Any], Says("a mapping of feature sets to the settings they change")] = {}

    def training_seed(self, top_level_seed: int) -> int:
        """The seed of the weights and minibatch order: this section's, else the top-level one."""
        return top_level_seed if self.seed is None else self.seed

    def refits(self, train_rows: int) -> bool:
        """Whether to refit on train + validation: `refit`, or for auto, whether the train split has fewer
        than REFIT_AUTO_BELOW rows. Validation adds a tenth to the data, which moves a small data set's
        learning curve (shapes' 1,800 images: the MLP on pixels 0.80 with the refit, 0.75 without) and not
        a large one's (CIFAR-10's 45,000: 0.6208 both), where a refit only doubles the training time."""
        return train_rows < REFIT_AUTO_BELOW if self.refit == "auto" else self.refit

    @property
    def epoch_options(self) -> list[int]:
        return list(self.epochs) if isinstance(self.epochs, list) else [self.epochs]

    def architecture_count(self) -> int:
        return 1

    def for_feature_set(self, feature_set: str) -> "TrainingParams":
        """This section with a feature set's overrides applied: the settings its stages train with."""
        settings = self.overrides.get(feature_set, {})
        merged = {**self.model_dump(exclude={"overrides"}), **settings, "overrides": {}}
        return _validated(type(self), merged, f"{self.section_name}.overrides.{feature_set}")

    @property
    def section_name(self) -> str:
        return "mlp" if isinstance(self, MLPParams) else "linear"

    @model_validator(mode="after")
    def _grid_within_budget(self):
        searched_rates = 1 if getattr(self, "solver", "sgd") == "lbfgs" else len(self.learning_rates)  # L-BFGS has no learning rate
        searched_epochs = 1 if getattr(self, "solver", "sgd") == "lbfgs" else len(self.epoch_options)  # nor epochs: max_iterations
        grid_size = searched_rates * len(self.reg_strengths) * searched_epochs * self.architecture_count()
        if self.search == "grid" and grid_size > self.budget:
            raise SectionRule(
                f"{{where}}: the search grid has {grid_size} points but {{where}}.budget is {self.budget}; "
                "raise {where}.budget or set {where}.search: random"
            )
        return self


class LinearParams(TrainingParams):
    """svm_loss : "hinge" (the lecture's multiclass hinge, Weston & Watkins) or "squared_hinge" (one
    binary L2-SVM per class, as Coates et al. 2011 and scikit-learn's LinearSVC train them)."""

    classifiers: Annotated[list[Choice(LINEAR_CLASSIFIERS)], Says(f"a list among {', '.join(LINEAR_CLASSIFIERS)}")] = ["svm", "softmax"]
    svm_loss: Choice(SVM_LOSSES) = "hinge"
    # sgd: the lecture's minibatch loop over learning_rates x epochs; lbfgs: full-batch L-BFGS (models/solvers.py)
    # on the convex objective, a warm-started path over reg_strengths, l2 only
    solver: Choice(_solvers) = "sgd"
    max_iterations: Count(1, " (L-BFGS iterations)") = 100

    @model_validator(mode="after")
    def _lbfgs_is_l2(self):
        if self.solver == "lbfgs" and self.regularization != "l2":
            raise SectionRule("{where}.solver lbfgs minimizes the l2-penalized objective; set {where}.regularization: l2 or {where}.solver: sgd")
        return self


class MLPParams(TrainingParams):
    hidden_sizes: Annotated[
        list[Width] | list[list[Width]], Says("a list of integers >= 1, or a list of such lists")
    ] = [512]
    activation: Choice(_activations) = "relu"
    dropout: BelowOne = 0.0
    batchnorm: Flag = False
    loss: Choice(("svm", "softmax"), "svm or softmax") = "softmax"

    @property
    def hidden_size_options(self) -> list[list[int]]:
        """[1024, 512] is one architecture; [[1024], [1024, 512]] are two to search over."""
        sizes = self.hidden_sizes
        if sizes and all(isinstance(option, list) for option in sizes):
            return [list(option) for option in sizes]
        return [list(sizes)]

    def architecture_count(self) -> int:
        return len(self.hidden_size_options)


def _extractor_settings(value):
    """`pixels:` (nothing) and `pixels: {}` both mean an extractor with its default settings."""
    if not isinstance(value, dict):
        return value
    for name, settings in value.items():
        if settings is not None and not isinstance(settings, dict):
            raise ParamsError(f"extractors.{name} must be a mapping of the extractor's settings ({{}} for its defaults); got {_shown(settings)}")
    return {name: dict(settings or {}) for name, settings in value.items()}


def _cuda_visible(device: str) -> str:
    if device == "cuda":
        import torch  # only here: no other setting needs it at load time

        if not torch.cuda.is_available():
            raise ParamsError("device: cuda but no CUDA GPU is visible to PyTorch; use auto or cpu")
    return device


class Params(_Section):
    seed: Count(0) = 0
    device: Annotated[Choice(DEVICES), AfterValidator(_cuda_visible)] = "auto"
    engine: Choice(ENGINES) = "local"
    data: DataParams = Field(default_factory=DataParams)
    extract: ExtractParams = Field(default_factory=ExtractParams)
    extractors: Annotated[
        dict[str, dict[str, Any]], BeforeValidator(_extractor_settings), Says("a mapping of extractor names to their settings")
    ] = {}
    linear: LinearParams = Field(default_factory=LinearParams)
    mlp: MLPParams = Field(default_factory=MLPParams)

    @property
    def extract_batch_size(self) -> int:
        return self.extract.batch_size

    @property
    def extract_mirror(self) -> bool:
        return self.extract.mirror

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

    @model_validator(mode="after")
    def _feature_sets_and_overrides(self):
        for where, section in (("linear", self.linear), ("mlp", self.mlp)):
            for feature_set in section.feature_sets:
                self.feature_set_members(feature_set)
            _check_overrides(section, where, list(self.extractors))
        return self


def _check_overrides(section: TrainingParams, where: str, extractors: list[str]) -> None:
    """Each override names a feature set and settings of its section, and leaves them in range.

    The feature set need not be listed: trimming feature_sets (dvc exp run -S) keeps its overrides.
    """
    overridable = [name for name in type(section).model_fields if name not in NOT_OVERRIDABLE]
    for feature_set, settings in section.overrides.items():
        missing = [member for member in str(feature_set).split("+") if member not in extractors]
        if missing:
            raise ParamsError(
                f"{where}.overrides.{feature_set}: {', '.join(missing)} is not a configured extractor ({', '.join(extractors)}); "
                f"remove the override or add the extractor under `extractors` in params.yaml"
            )
        if not isinstance(settings, dict):
            raise ParamsError(f"{where}.overrides.{feature_set} must map settings to values; got {_shown(settings)}")
        unknown = sorted(set(settings) - set(overridable))
        if unknown:
            raise ParamsError(f"unknown key(s) {', '.join(unknown)} in {where}.overrides.{feature_set}; allowed: {', '.join(sorted(overridable))}")
        section.for_feature_set(feature_set)


def check_mlp(section: MLPParams, where: str = "mlp") -> None:
    """Check an `mlp` section built by hand (load_params checks the file's already)."""
    _validated(MLPParams, section.model_dump(), where)


# --- reading the file --------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where `1e-4` (no dot) is a string; DVC (YAML 1.2) and users read a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: str | Path):
    """The YAML document in `path`; a syntax error is a ParamsError naming the file, line and column."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context, opened = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and opened and opened is not mark:  # an unclosed bracket or quote: where it opened
            problem += f", {context} at line {opened.line + 1}"
        raise ParamsError(f"{where}: not valid YAML ({problem}); fix the syntax there") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; raise ParamsError naming the first bad parameter."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root")
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections ({', '.join(Params.model_fields)}); got {_shown(raw)}")
    return _validated(Params, raw, "", file_name=path.name)


def parse_assignment(item: str) -> tuple[str, object]:
    """'mlp.epochs=5' (or +/++mlp.epochs=5) -> ('mlp.epochs', 5), the value read as YAML like `dvc exp run -S` reads it."""
    key, equals, value = item.lstrip("+").partition("=")
    if not equals or not key:
        raise ParamsError(f"-S {item}: expected KEY=VALUE, e.g. mlp.epochs=5")
    return key, yaml.safe_load(value)


def with_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of params `raw` with `dvc exp run -S` overrides applied in order: KEY=VALUE, +KEY=VALUE and
    ++KEY=VALUE set a dotted key (parse_assignment), ~KEY removes one."""
    merged = copy.deepcopy(raw)
    for item in overrides:
        removal = item.startswith("~")
        key, value = (item[1:].partition("=")[0], None) if removal else parse_assignment(item)
        if not key:
            raise ParamsError(f"-S {item}: expected ~KEY, e.g. ~extractors.bovw")
        *path, last = key.split(".")
        parent = merged
        for depth, part in enumerate(path):
            child = parent.setdefault(part, {}) if not removal else parent.get(part)
            if not isinstance(child, dict):
                if removal and child is None:
                    break
                raise ParamsError(f"-S {item}: {'.'.join(path[: depth + 1])} is not a section that holds {key}")
            parent = child
        else:
            if removal:
                parent.pop(last, None)
            else:
                parent[last] = value
    return merged


def check_overrides(overrides: list[str], path: str | Path = "params.yaml", raw: dict | None = None) -> Params:
    """params.yaml (or its contents, `raw`) with `dvc exp run -S` overrides applied, checked as a stage would
    check it: a bad override is refused before any experiment is queued or params.yaml is rewritten."""
    if raw is None:
        raw = read_yaml(path) if Path(path).exists() else None
        if not isinstance(raw, dict):
            return load_params(path)  # its own message for a missing or malformed file
    file_name = f"{Path(path).name} with -S {' '.join(overrides)}" if overrides else Path(path).name
    return _validated(Params, with_overrides(raw, overrides), "", file_name=file_name)


def _validated(model: type[BaseModel], data: dict, where: str, file_name: str = "params.yaml"):
    """model.model_validate(data), its first error worded as one ParamsError line; `where` is the
    dotted name of `data` ("" for the whole file)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ParamsError(_worded(error, model, data, where, file_name)) from None


def _join(*parts) -> str:
    return ".".join(str(part) for part in parts if part != "")


def _shown(value) -> str:
    """The value found, as the user wrote it: a quoted number is named as a string, with the fix."""
    if value is None:
        return "null (nothing)"
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?", value.strip()) and any(c.isdigit() for c in value):
        return f"the string {value!r}: write the number without quotes"
    return repr(value)


def _worded(error: ValidationError, model: type[BaseModel], data: dict, where: str, file_name: str) -> str:
    """pydantic's first error as one line: "KEY must be WHAT IT SAYS; got VALUE", or a rule's own words."""
    errors = error.errors(include_url=False)
    first = errors[0]
    loc = first["loc"]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ParamsError):
        return str(cause)
    if isinstance(cause, SectionRule):
        return cause.worded(_join(where, *loc))
    if first["type"] == "extra_forbidden":
        parent = loc[:-1]
        unknown = sorted(str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent)
        path, _, field = _setting_at(model, parent)
        allowed = sorted((field.annotation if field else model).model_fields)
        return f"unknown key(s) {', '.join(unknown)} in {_join(where, *parent) or file_name}; allowed: {', '.join(allowed)}"
    path, _, field = _setting_at(model, loc)
    key, value = _join(where, *path) or file_name, _value_at(data, path)
    if field is not None and _is_section(field.annotation):
        return f"{key} must be a mapping of its settings ({', '.join(field.annotation.model_fields)}); got {_shown(value)}"
    says = next((item for item in field.metadata if isinstance(item, Says)), None) if field is not None else None
    if says is None:  # a setting declared without its words: pydantic's own
        return f"{key}: {first['msg']}; got {_shown(first.get('input'))}"
    return f"{key} must be {says.text}; got {_shown(value)}"


def _is_section(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _setting_at(model: type[BaseModel], loc: tuple):
    """(dotted path, declaring model, field) of the setting an error location falls under: sections
    are walked into, a setting's own parts (a list index, a union's branch) are not."""
    path, owner = [], model
    for part in loc:
        field = owner.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            break
        path.append(part)
        if _is_section(field.annotation) and len(path) < len(loc):
            owner = field.annotation
            continue
        return path, owner, field
    return path, owner, None


def _value_at(data, path):
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


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
