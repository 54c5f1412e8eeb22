"""The lecture's questions as data: each study is a list of points, each point a `dvc exp run -S ...`.

A study also names the extractors it needs (the others are removed from the points' params, so a
width sweep does not extract bag of visual words) and the settings shared by its points. Studies
with a `toy` part also run small in-process problems (models/toy.py) for the geometric pictures.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One experiment: `overrides` on top of the study's, and the training runs whose metrics it reads
    (results/train/<run>: `softmax-pixels`, `mlp-pixels`; runner.training_stage names their DVC stages)."""

    label: str
    overrides: dict
    runs: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    extractors: tuple[str, ...]  # the extractors the points need; the others are removed (-S ~extractors.NAME)
    settings: dict  # overrides shared by every point
    points: tuple[Point, ...]
    toy: bool = False  # has an in-process part (pipeline/studies/toy.py)
    seconds_per_point: int = 40  # on the default shapes data, queue and process start included
    toy_seconds: int = 0
    notes: str = ""

    def expected_seconds(self) -> int:
        return len(self.points) * self.seconds_per_point + self.toy_seconds


MLP_PIXELS = "mlp-pixels"
SOFTMAX_PIXELS = "softmax-pixels"

# shared by the pixel studies: one linear stage at most, no augmentation (it would blur what L2 and
# width do), no refit (so val_accuracy is measured on data the point never trained on)
PIXEL_SETTINGS = {
    "linear.feature_sets": ["pixels"],
    "linear.classifiers": ["softmax"],
    "linear.augment": "none",
    "linear.refit": False,
    "linear.epochs": 20,
    "linear.learning_rates": [0.003],
    "linear.reg_strengths": [0.0001],
    "mlp.feature_sets": ["pixels"],
    "mlp.augment": "none",
    "mlp.refit": False,
    "mlp.epochs": 20,
    "mlp.learning_rates": [0.01],
    "mlp.reg_strengths": [0.0001],
    "mlp.hidden_sizes": [256],
}


def _label_number(value: float) -> str:
    return f"{value:g}".replace(".", "p")


WIDTHS = (16, 64, 256, 1024)
L2_STRENGTHS = (0.0001, 0.001, 0.01, 0.1)
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "none")
DEPTHS = (0, 1, 2, 3)
SEEDS = (0, 1, 2, 3, 4)
FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0)
DATA_SIZE_FEATURE_SET = "hog+color_hist"  # the best linear feature set that extracts in seconds (bovw wins, at minutes a point)

STUDIES: dict[str, Study] = {}


def _register(study: Study) -> Study:
    if study.name in STUDIES:
        raise ValueError(f"study {study.name!r} is defined twice")
    STUDIES[study.name] = study
    return study


_register(Study(
    name="width-vs-l2",
    question="More hidden units = more capacity: regularize with a stronger L2, not a smaller network?",
    extractors=("pixels",),
    settings=PIXEL_SETTINGS,
    points=tuple(
        Point(f"h{width}-l2_{_label_number(strength)}", {"mlp.hidden_sizes": [width], "mlp.reg_strengths": [strength]}, (MLP_PIXELS,))
        for width in WIDTHS for strength in L2_STRENGTHS
    ),
    toy=True, seconds_per_point=35, toy_seconds=20,
))

_register(Study(
    name="activations",
    question="Which nonlinearity, and what is an MLP without one? (none: any depth is a linear classifier)",
    extractors=("pixels",),
    settings=PIXEL_SETTINGS,
    points=tuple(Point(name, {"mlp.activation": name}, (MLP_PIXELS,)) for name in ACTIVATIONS)
    + (Point("linear", {}, (SOFTMAX_PIXELS,)),),
    toy=True, seconds_per_point=30, toy_seconds=5,
))

_register(Study(
    name="depth",
    question="Does depth help at a fixed width? 0 to 3 hidden layers of 256 units",
    extractors=("pixels",),
    settings=PIXEL_SETTINGS,
    points=tuple(Point(f"depth{depth}", {"mlp.hidden_sizes": [256] * depth}, (MLP_PIXELS,)) for depth in DEPTHS),
    seconds_per_point=30,
))

_register(Study(
    name="convexity",
    question="A linear model's loss is convex: do its runs from different seeds end at one solution, and an MLP's?",
    extractors=("pixels",),
    # both models keep their last weights, not their best epoch on validation: the question is where the
    # optimizer ends. Softmax is solved to its minimum (L-BFGS until the gradient vanishes; L2 0.01 makes
    # the minimum unique and reached in a few hundred iterations); the MLP trains its 20 SGD epochs.
    settings={**PIXEL_SETTINGS, "linear.solver": "lbfgs", "linear.reg_strengths": [0.01], "linear.max_iterations": 1000,
              "linear.keep": "last", "mlp.keep": "last"},
    points=tuple(
        Point(f"{model}-seed{seed}", {f"{section}.seed": seed}, (run,))
        for model, section, run in (("softmax", "linear", SOFTMAX_PIXELS), ("mlp", "mlp", MLP_PIXELS)) for seed in SEEDS
    ),
    toy=True, seconds_per_point=35, toy_seconds=30,
    notes="Each point sets its section's `seed` (linear.seed, mlp.seed): the initial weights and the minibatch order, "
    "on the same images and splits (the top-level `seed` would draw other shapes images too). Both keep their last "
    "weights (`keep: last`): softmax solved to its minimum by L-BFGS (L2 0.01), the MLP after 20 SGD epochs.",
))

_register(Study(
    name="data-size",
    question="At which training-set size does the MLP on pixels overtake hand-made features with a linear classifier?",
    extractors=("pixels", "hog", "color_hist"),
    settings={
        "linear.feature_sets": [DATA_SIZE_FEATURE_SET],
        "linear.classifiers": ["svm"],
        "mlp.feature_sets": ["pixels"],
        # a refit trains on train + validation: at 1% of the training split the validation rows would outnumber it
        "linear.refit": False,
        "mlp.refit": False,
    },
    points=tuple(
        Point(f"train{_label_number(fraction)}", {"data.train_fraction": fraction}, (f"svm-{DATA_SIZE_FEATURE_SET}", MLP_PIXELS))
        for fraction in FRACTIONS
    ),
    seconds_per_point=60,
    notes=f"The linear classifier is the SVM on {DATA_SIZE_FEATURE_SET}, the best feature set that extracts in seconds; "
    "the training sections keep params.yaml's settings (search, augmentation) but do not refit on train + validation, "
    "so each model trains on its share of the training split only. Validation and test splits are the same at every size.",
))

_register(Study(
    name="space-warping",
    question="How does a hidden layer make classes a line cannot separate separable? And can ReLU units approximate any function?",
    extractors=(),
    settings={},
    points=(),
    toy=True, toy_seconds=20,
))


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"no study {name!r}; known: {', '.join(STUDIES)} (see `featurebench study list`)")
    return STUDIES[name]
