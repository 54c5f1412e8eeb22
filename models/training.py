"""One seeded minibatch loop for every model (SGD with momentum, Nesterov or Adam), and its evaluation."""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from models.losses import EXAMPLE_LOSSES_AND_GRADIENTS, LOSSES, add_penalty_gradient
from models.mlp import MLP, MLPConfig
from models.precision import PRECISIONS

OPTIMIZERS = ("sgd", "nesterov", "adam")
STACKED_OPTIMIZERS = ("sgd", "nesterov")  # updates that LinearStack applies to many linear models at once
KEEP_CHOICES = ("best_val", "last")  # which epoch's weights a training run ends with


@dataclass
class TrainConfig:
    """Optimization settings; `loss` is "svm" or "softmax", `regularization` "l2" or "l1".

    optimizer : "sgd" (the lecture's momentum update), "nesterov" or "adam".
    patience : stop after this many epochs without a better validation accuracy (0: run every epoch).
    keep : the weights training ends with: "best_val" (the epoch with the best validation accuracy) or
        "last" (where the optimizer stopped: to compare solutions, as the convexity study does).
    precision : "bf16" runs the forward and backward matrix products in bfloat16 (autocast; the weights,
        their updates and the loss stay float32): about 1.7x faster on CPUs with AVX512-BF16 and on GPUs,
        30-40x slower on CPUs that emulate it (models.precision.resolve_precision chooses for "auto").
    """

    loss: str = "softmax"
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    reg_strength: float = 1e-4
    regularization: str = "l2"
    epochs: int = 10
    batch_size: int = 256
    lr_schedule: str = "cosine"
    patience: int = 0
    keep: str = "best_val"
    precision: str = "fp32"
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0 turns early stopping off); got {self.patience}")
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}; got {self.keep!r}")
        if self.regularization not in ("l2", "l1"):
            raise ValueError(f"regularization must be 'l2' or 'l1'; got {self.regularization!r}")
        for name in ("epochs", "batch_size", "patience", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be a whole number; got {value!r}")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError(f"learning_rate must be a finite number > 0; got {self.learning_rate}")
        if not 0 <= self.reg_strength < math.inf:
            raise ValueError(f"reg_strength must be a finite number >= 0; got {self.reg_strength}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; got {self.epochs}, {self.batch_size}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine'; got {self.lr_schedule!r}")


class TrainingFailed(FloatingPointError):
    """Training that cannot go on: `reason` says what happened, `fix` what the user changes.

    A FloatingPointError, so code that catches divergence catches it; the stage records it as a failed run.
    """

    def __init__(self, reason: str, fix: str):
        super().__init__(f"{reason}; {fix}")
        self.reason, self.fix = reason, fix


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    learning_rate: float


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when present unless a device is forced ("cpu", "cuda")."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from the initial rate to zero over the epochs, or constant."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


@torch.no_grad()
def sgd_momentum_step(parameters, gradients, velocities, learning_rate: float, momentum: float) -> None:
    """The lecture's update: v = momentum * v - learning_rate * grad; w = w + v (in place)."""
    for parameter, gradient, velocity in zip(parameters, gradients, velocities):
        velocity.mul_(momentum).sub_(gradient, alpha=learning_rate)
        parameter.add_(velocity)


@torch.no_grad()
def fused_step_from_products(weight, velocity, output_gradient, layer_input, learning_rate: float, momentum: float, l2_strength: float) -> None:
    """sgd_momentum_step of a Linear layer's weight with the gradient output_gradient.T @ layer_input
    + 2 l2_strength weight, never written out: v = momentum v - rate (that gradient); w = w + v."""
    velocity.addmm_(output_gradient.T, layer_input, beta=momentum, alpha=-learning_rate)
    if l2_strength:
        velocity.add_(weight, alpha=-2 * l2_strength * learning_rate)
    weight.add_(velocity)


@torch.no_grad()
def nesterov_step(parameters, gradients, velocities, learning_rate: float, momentum: float) -> None:
    """Nesterov momentum as cs231n writes it: v' = mu v - lr g; w += -mu v + (1 + mu) v'."""
    for parameter, gradient, velocity in zip(parameters, gradients, velocities):
        parameter.sub_(velocity, alpha=momentum)
        velocity.mul_(momentum).sub_(gradient, alpha=learning_rate)
        parameter.add_(velocity, alpha=1 + momentum)


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction; beta1 is the config's momentum, beta2 = 0.999."""

    def __init__(self, parameters, beta1: float, beta2: float = 0.999, epsilon: float = 1e-8):
        self.beta1, self.beta2, self.epsilon, self.t = beta1, beta2, epsilon, 0
        self.first = [torch.zeros_like(p) for p in parameters]
        self.second = [torch.zeros_like(p) for p in parameters]

    @torch.no_grad()
    def step(self, parameters, gradients, learning_rate: float) -> None:
        self.t += 1
        correction1, correction2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for parameter, gradient, first, second in zip(parameters, gradients, self.first, self.second):
            first.mul_(self.beta1).add_(gradient, alpha=1 - self.beta1)
            second.mul_(self.beta2).addcmul_(gradient, gradient, value=1 - self.beta2)
            denominator = (second / correction2).sqrt_().add_(self.epsilon)
            parameter.addcdiv_(first, denominator, value=-learning_rate / correction1)


def optimizer_step(config: TrainConfig, parameters: list[torch.Tensor], velocities: list[torch.Tensor] | None = None) -> Callable:
    """step(gradients, learning_rate) applying the configured update to `parameters` in place; momentum
    updates keep their `velocities` (zeros like the parameters unless given)."""
    if config.optimizer == "adam":
        adam = Adam(parameters, beta1=config.momentum)
        return lambda gradients, rate: adam.step(parameters, gradients, rate)
    velocities = [torch.zeros_like(p) for p in parameters] if velocities is None else velocities
    update = nesterov_step if config.optimizer == "nesterov" else sgd_momentum_step
    return lambda gradients, rate: update(parameters, gradients, velocities, rate, config.momentum)


class RowSource(Protocol):
    """Rows a model trains on or scores, read a minibatch at a time: in memory or memory-mapped on disk.

    rows(indices) returns (len(indices), d) float32 rows in the order asked, as a tensor or an array.
    """

    def __len__(self) -> int: ...

    def rows(self, indices) -> torch.Tensor | np.ndarray: ...


class TensorRows:
    """An in-memory (n, d) tensor as a row source."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __len__(self) -> int:
        return len(self.tensor)

    @property
    def dim(self) -> int:
        return self.tensor.shape[1]

    def rows(self, indices) -> torch.Tensor:
        return self.tensor[torch.as_tensor(indices).to(self.tensor.device)]


def as_row_source(features: torch.Tensor | RowSource) -> RowSource:
    """Tensors are wrapped; anything with rows() is used as it is."""
    return TensorRows(features) if isinstance(features, torch.Tensor) else features


def read_rows(source: RowSource, indices, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(source.rows(indices)).to(device)


@torch.no_grad()
def predict_many(models: Sequence[MLP], features: torch.Tensor | RowSource, batch_size: int = 4096) -> list[torch.Tensor]:
    """predict() for several models on the same device, reading each chunk of `features` once for all of them."""
    source = as_row_source(features)
    for model in models:
        model.eval()
    device = next(models[0].parameters()).device
    # Filled in place: a small per-chunk result kept between the chunk's large blocks splits the heap's
    # free space, so each chunk took new memory (800 MB over 180,000 rows of pixels, growing with the rows).
    predictions = [torch.empty(len(source), dtype=torch.int64) for _ in models]
    for i in range(0, len(source), batch_size):
        stop = min(i + batch_size, len(source))
        rows = read_rows(source, torch.arange(i, stop), device)
        for model, predicted in zip(models, predictions):
            predicted[i:stop] = model(rows).argmax(1).cpu()
    return predictions


def predict(model: MLP, features: torch.Tensor | RowSource, batch_size: int = 4096) -> torch.Tensor:
    """Class indices for every row of `features` (a tensor or a row source), read `batch_size` rows at a time."""
    return predict_many([model], features, batch_size)[0]


def evaluate_many(models: Sequence[MLP], features: torch.Tensor | RowSource, labels: torch.Tensor) -> list[float]:
    """Accuracy in [0, 1] of each model, the rows read once."""
    if len(labels) == 0:
        return [float("nan")] * len(models)
    return [(predictions == labels.cpu()).float().mean().item() for predictions in predict_many(models, features)]


def evaluate(model: MLP, features: torch.Tensor | RowSource, labels: torch.Tensor) -> float:
    """Accuracy in [0, 1]."""
    return evaluate_many([model], features, labels)[0]


def train(
    model: MLP,
    config: TrainConfig,
    train_features: torch.Tensor | RowSource,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | RowSource,
    val_labels: torch.Tensor,
    device: torch.device | None = None,
    progress: bool = True,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    stop_after: int | None = None,
) -> list[EpochRecord]:
    """Minibatch training; keeps the weights of the epoch with the best validation accuracy (config.keep "best_val").

    features : (n, d) float32 tensors on the CPU, or row sources (memory-mapped features) read one
        minibatch at a time; labels : (n,) int64. Returns one record per epoch. The minibatches are
        the same rows in the same order either way: results depend on the seed, not on the source.
    With no validation rows (a refit on train + val) it keeps the last epoch's weights.
    augment : applied to every training minibatch (e.g. random horizontal flips of pixel rows).
    stop_after : end after this many epochs, the learning-rate schedule still spanning `config.epochs`.
    Raises TrainingFailed when the loss stops being finite.
    """
    (outcome,) = train_together([model], [config], train_features, train_labels, val_features, val_labels, device, progress, augment, stop_after)
    if isinstance(outcome, TrainingFailed):
        raise outcome
    return outcome


def can_train_together(configs: Sequence[TrainConfig], model_configs: Sequence[MLPConfig]) -> bool:
    """Whether train_together gives each model what train() alone would: one model always; several
    with the same seed and batch size (so the same minibatches, flips and shifts) and no dropout (which
    draws from torch's global generator, shared between them)."""
    if len(configs) == 1:
        return True
    return len({(config.seed, config.batch_size) for config in configs}) == 1 and all(model.dropout == 0 for model in model_configs)


def train_together(
    models: Sequence[MLP],
    configs: Sequence[TrainConfig],
    train_features: torch.Tensor | RowSource,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | RowSource,
    val_labels: torch.Tensor,
    device: torch.device | None = None,
    progress: bool = True,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    stop_after: int | Sequence[int] | None = None,
    twins: Sequence[MLP] = (),
    train_rows: int | None = None,
) -> list[list[EpochRecord] | TrainingFailed]:
    """train() for several models in lockstep: each minibatch is read (and augmented) once and feeds them all.

    Reading rows is most of a linear model's epoch, so a search over learning rates costs about one
    training instead of one per rate. Each model gets the updates train() would give it alone
    (can_train_together says when): bit for bit, except that linear models learn from one matrix
    product for all of them (LinearStack), which rounds differently from each model's own;
    a model whose loss stops being finite gets its TrainingFailed in
    the returned list and the others go on. Models may differ in learning rate, regularization,
    epochs, patience, optimizer, loss, precision and architecture; `stop_after` is one number for all of
    them or one per model (refits of different trials, each stopped at its trial's best epoch).

    twins : a refit of each model in the same pass (one twin per model, its settings): the training
        rows are then train + validation, the first `train_rows` of them the train split. Each model
        learns from the train rows of every minibatch, its twin from all of them; a twin stops with its
        model and ends with its weights of the epoch the model keeps. Their outcomes follow the models'.
    """
    if not models or len(models) != len(configs):
        raise ValueError(f"train_together needs one config per model; got {len(models)} models and {len(configs)} configs")
    if not can_train_together(configs, [model.config for model in models]):
        raise ValueError("models train together only with one seed and batch size and no dropout")
    train_features, train_labels = checked_split(train_features, train_labels, models[0].config, "training")
    val_features, val_labels = checked_split(val_features, val_labels, models[0].config, "validation")
    if len(train_labels) == 0:
        raise ValueError("no training rows: a model needs at least one to learn from")
    device = device or choose_device()
    seed, batch_size = configs[0].seed, configs[0].batch_size
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if isinstance(train_features, torch.Tensor):
        train_features = train_features.to(device)  # in memory: moved once, not a batch at a time
    x, y = as_row_source(train_features), train_labels.to(device)
    stops = stop_after if isinstance(stop_after, Sequence) else [stop_after] * len(models)
    if any(stop is not None and stop < 1 for stop in stops):
        raise ValueError(f"stop_after must be at least 1 epoch; got {stop_after}")
    runs = [_Run(model.to(device), config, config.epochs if stop is None else min(config.epochs, stop), device) for model, config, stop in zip(models, configs, stops)]
    twin_runs = [_Twin(twin.to(device), run) for twin, run in zip(twins, runs)]
    n_train = len(x) if train_rows is None else train_rows
    epochs = tqdm(range(max(run.epochs for run in runs)), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in epochs:
        active = [run for run in runs if run.goes_on(epoch)]
        if not active:
            break
        active_twins = [twin for twin in twin_runs if twin.failure is None and twin.partner in active]
        for run in active + active_twins:
            run.start_epoch(epoch)
        stack = LinearStack.of(active_twins + active)
        order = torch.randperm(len(x), generator=generator)
        for start, stop in minibatch_bounds(len(x), batch_size, any(model.config.batchnorm for model in models)):
            batch = order[start:stop]
            rows, batch = read_rows(x, batch, device), batch.to(device)
            inputs, labels = rows if augment is None else augment(rows, generator), y[batch]
            learners: list[tuple[_Run, torch.Tensor | None]] = [(run, None) for run in active]
            if twin_runs:
                in_train = batch < n_train
                learners = [(twin, None) for twin in active_twins] + ([(run, in_train) for run in active] if in_train.any() else [])
            learn_minibatch(stack.learn(learners, inputs, labels) if stack else learners, inputs, labels)
        if stack:
            stack.end_epoch()
        finite = [run for run in active if run.end_epoch(epoch)]
        for run, accuracy in zip(finite, evaluate_many([run.model for run in finite], val_features, val_labels) if finite else []):
            run.record(epoch, n_train, accuracy, no_validation=len(val_labels) == 0)
        for twin in active_twins:
            if twin.end_epoch(epoch):
                twin.record_beside_partner(epoch, len(x))
        if len(runs) == 1 and finite:
            last = runs[0].history[-1]  # a refit has no validation rows: its accuracy is nan, not shown
            shown = {"val": f"{last.val_accuracy:.3f}"} if len(val_labels) else {}
            epochs.set_postfix(loss=f"{last.train_loss:.3f}", **shown)
    return [run.outcome() for run in runs + twin_runs]


def minibatch_bounds(n: int, batch_size: int, batchnorm: bool) -> list[tuple[int, int]]:
    """(start, stop) of each minibatch of an epoch's n rows. Batch norm cannot train on one row (its
    variance is undefined), so with it a last minibatch of one row joins the one before."""
    if batchnorm and n == 1:
        raise ValueError("batchnorm needs at least 2 training rows (it normalizes each minibatch by its own statistics)")
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if batchnorm and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def checked_split(features, labels, model: MLPConfig, split: str):
    """(features, labels) as training reads them, or a ValueError that names what is wrong: tensors of
    another float type become float32, integer labels int64; lengths, widths and label values are checked."""
    if isinstance(features, torch.Tensor):
        if not features.is_floating_point():
            raise ValueError(f"{split} features must be floating point; got {features.dtype}")
        if features.dtype != torch.float32:
            features = features.float()
        if not torch.isfinite(features).all():  # else the loss turns NaN and reads as a learning rate too high
            raise ValueError(f"{split} features hold NaN or infinite values; no learning rate can fit them")
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.dim() != 1:
        raise ValueError(f"{split} labels must be a 1-D tensor of class indices; got {labels.dtype} of shape {tuple(labels.shape)}")
    labels = labels.long()
    if len(features) != len(labels):
        raise ValueError(f"{split} features hold {len(features)} rows but there are {len(labels)} labels")
    width = features.shape[1] if isinstance(features, torch.Tensor) and features.dim() == 2 else getattr(features, "dim", None)
    if isinstance(width, int) and len(labels) and width != model.input_dim:
        raise ValueError(f"{split} features have {width} columns; the model takes {model.input_dim}")
    if len(labels) and (labels.min() < 0 or labels.max() >= model.n_classes):
        raise ValueError(
            f"{split} labels must be class indices 0..{model.n_classes - 1}; got values from {labels.min().item()} to {labels.max().item()}"
        )
    return features, labels


class _Run:
    """One model's state in train_together: its optimizer, running sums, history and best weights."""

    def __init__(self, model: MLP, config: TrainConfig, epochs: int, device: torch.device):
        self.model, self.config, self.epochs, self.device = model, config, epochs, device
        self.parameters = list(model.parameters())
        self.velocities = [torch.zeros_like(p) for p in self.parameters] if config.optimizer in STACKED_OPTIMIZERS else None
        self.step = optimizer_step(config, self.parameters, self.velocities)
        self.loss_function = LOSSES[config.loss]
        weights = {id(weight) for weight in model.weight_matrices()}  # penalized; biases and batch-norm scales are not
        self.weight_positions = [position for position, parameter in enumerate(self.parameters) if id(parameter) in weights]
        self.history: list[EpochRecord] = []
        self.best_accuracy, self.best_state, self.improved = -1.0, None, False
        self.failure: TrainingFailed | None = None

    def goes_on(self, epoch: int) -> bool:
        if self.failure is not None or epoch >= self.epochs:
            return False
        return not (self.config.patience and self.history and epoch - best_epoch(self.history) >= self.config.patience)

    def start_epoch(self, epoch: int) -> None:
        self.rate = learning_rate_at(self.config, epoch)
        self.model.train()
        self.total_loss = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)

    @property
    def is_linear(self) -> bool:
        return not self.model.config.hidden_sizes

    @property
    def fuses_its_steps(self) -> bool:
        """Whether `learn` takes fused_step_from_products's way: an MLP with the lecture's momentum
        update and an L2 penalty (or none), in fp32 (bf16 products would need their own casts)."""
        config = self.config
        return not self.is_linear and config.optimizer == "sgd" and config.regularization == "l2" and config.precision == "fp32"

    def learn(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if self.fuses_its_steps:
            self.learn_fused(inputs, labels)
        else:
            self.learn_by_gradients(inputs, labels)

    def learn_by_gradients(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """One minibatch's step from every parameter's gradient, as autograd writes it out."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            scores = self.model(inputs).float()
        loss = self.loss_function(scores, labels)
        self.apply(list(torch.autograd.grad(loss, self.parameters)), loss, scores, labels)

    def learn_fused(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """learn_by_gradients' step, the same to float32 rounding, in fewer passes over the weights.

        Autograd gives the gradient of each Linear layer's output instead of its weight's, so that the
        weight gradient (that output gradient times the layer's input) is computed straight into the
        velocity: v = momentum v - rate (dW + 2 reg W) is one addmm (momentum its beta) and one add,
        then W += v. A weight matrix is read or written 8 times a step instead of 12 (the gradient
        written, the penalty added to it, the velocity scaled, then stepped, the weight stepped): the
        MLP's 3072 x 1024 first layer is 12.6 MB, a step's matrix products a few milliseconds, and
        those passes a fifth of them (tests/benchmarks/bench_mlp_step.py).
        """
        linears, x = [], inputs
        for layer in self.model.layers:
            layer_input, x = x, layer(x)
            if isinstance(layer, torch.nn.Linear):
                linears.append((layer_input, x))
        scores = x.float()
        loss = self.loss_function(scores, labels)
        others, other_velocities = self.other_parameters  # batch norm's scales and shifts
        gradients = torch.autograd.grad(loss, [output for _, output in linears] + others)
        momentum = self.config.momentum
        with torch.no_grad():
            for (layer_input, _), output_gradient, (weight, weight_velocity, bias, bias_velocity) in zip(linears, gradients, self.linear_parameters):
                fused_step_from_products(weight, weight_velocity, output_gradient, layer_input, self.rate, momentum, self.config.reg_strength)
                sgd_momentum_step([bias], [output_gradient.sum(0)], [bias_velocity], self.rate, momentum)
            if others:
                sgd_momentum_step(others, gradients[len(linears) :], other_velocities, self.rate, momentum)
        self.tally(loss, scores, labels)

    @functools.cached_property
    def linear_parameters(self) -> list[tuple]:
        """(weight, its velocity, bias, its velocity) of each Linear layer, in the model's order: found
        once a run (an MLP keeps its parameter and velocity tensors), not at every step."""
        velocity_of = {id(p): v for p, v in zip(self.parameters, self.velocities)}
        layers = [layer for layer in self.model.layers if isinstance(layer, torch.nn.Linear)]
        return [(layer.weight, velocity_of[id(layer.weight)], layer.bias, velocity_of[id(layer.bias)]) for layer in layers]

    @functools.cached_property
    def other_parameters(self) -> tuple[list, list]:
        """([parameter], [its velocity]) of the layers that are not Linear (batch norm's)."""
        linear = {id(p) for layer in self.model.layers if isinstance(layer, torch.nn.Linear) for p in layer.parameters()}
        pairs = [(p, v) for p, v in zip(self.parameters, self.velocities) if id(p) not in linear]
        return [p for p, _ in pairs], [v for _, v in pairs]

    def apply(self, gradients: list[torch.Tensor], loss: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """The update from one minibatch's gradients, and its loss and correct answers added to the epoch's."""
        for position in self.weight_positions:
            add_penalty_gradient(gradients[position], self.parameters[position], self.config.regularization, self.config.reg_strength)
        self.step(gradients, self.rate)
        self.tally(loss, scores, labels)

    def tally(self, loss: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """The minibatch's loss and correct answers added to the epoch's: summed on the device, one host
        sync per epoch, not two per batch."""
        self.total_loss += loss.detach() * len(labels)
        self.correct += (scores.detach().argmax(1) == labels).sum()

    def end_epoch(self, epoch: int) -> bool:
        """False (and the failure kept) when the epoch's loss is not finite."""
        self.total_loss, self.correct = self.total_loss.item(), self.correct.item()
        if not math.isfinite(self.total_loss):
            self.failure = TrainingFailed(f"training diverged at epoch {epoch + 1} with learning_rate {self.config.learning_rate:g}", "lower learning_rate")
        return self.failure is None

    def record(self, epoch: int, n_rows: int, val_accuracy: float, no_validation: bool) -> None:
        record = EpochRecord(epoch + 1, self.total_loss / n_rows, self.correct / n_rows, val_accuracy, self.rate)
        self.history.append(record)
        self.improved = self.config.keep == "best_val" and (no_validation or record.val_accuracy > self.best_accuracy)
        if self.improved:
            self.best_accuracy = record.val_accuracy
            self.keep_weights()

    def keep_weights(self) -> None:
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def outcome(self) -> list[EpochRecord] | TrainingFailed:
        if self.failure is not None:
            return self.failure
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history


class _Twin(_Run):
    """A model's refit in train_together's pass: same settings, every row of the minibatches (train and
    validation), stopped with its partner, and kept at the epoch whose weights the partner keeps."""

    def __init__(self, model: MLP, partner: _Run):
        super().__init__(model, partner.config, partner.epochs, partner.device)
        self.partner = partner

    def end_epoch(self, epoch: int) -> bool:
        if super().end_epoch(epoch):
            return True
        what = f"the refit on train + validation diverged at epoch {epoch + 1} with learning_rate {self.config.learning_rate:g}"
        self.failure = TrainingFailed(what, "lower learning_rate")
        return False

    def record_beside_partner(self, epoch: int, n_rows: int) -> None:
        self.history.append(EpochRecord(epoch + 1, self.total_loss / n_rows, self.correct / n_rows, math.nan, self.rate))
        if self.partner.improved:
            self.keep_weights()


def learn_minibatch(learners: list[tuple[_Run, torch.Tensor | None]], inputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Each (run, rows) learns from the minibatch, or from its `rows` (a mask) when given: each its own
    products, the masked rows copied once for all of them (linear runs that can, LinearStack, learn
    before, together)."""
    subset = None
    for run, rows in learners:
        if rows is None:
            run.learn(inputs, labels)
            continue
        if subset is None:
            subset = inputs[rows], labels[rows]
        run.learn(*subset)


class LinearStack:
    """Linear runs of one optimizer (momentum or Nesterov), precision and class count, stacked for an
    epoch: their weights, biases and velocities side by side in one tensor each (each run's own become
    views of it), so that a minibatch is one product for the scores of all of them, one for their
    weight gradients, and a handful of operations for their losses, penalties and updates, however
    many runs there are. A linear model's own products are ten-odd columns wide, too narrow for the
    CPU's matrix kernels, each re-reading the minibatch, and its update a dozen small operations: on
    CIFAR-10's rows the stack is 2.2x faster a minibatch (tests/benchmarks/bench_linear_together.py).
    Each run's loss, gradient, penalty and update are its own, to float32 rounding: the wide product
    sums in another order than the narrow one.
    """

    def __init__(self, runs: list[_Run]):
        first = runs[0]
        self.runs, self.classes = runs, len(first.parameters[1])
        self.member = {id(run): index for index, run in enumerate(runs)}
        self.bf16, self.nesterov = first.config.precision == "bf16", first.config.optimizer == "nesterov"
        self.stacked = []  # (parameter, velocity) for the weights, then the biases
        for position in range(2):
            parameter = torch.cat([run.parameters[position].detach() for run in runs])
            velocity = torch.cat([run.velocities[position] for run in runs])
            for index, run in enumerate(runs):
                rows = slice(index * self.classes, (index + 1) * self.classes)
                run.parameters[position].data, run.velocities[position].data = parameter[rows], velocity[rows]
            self.stacked.append((parameter, velocity))

        def per_row(values):  # one value a run -> a column with one row per weight row
            return torch.tensor(values, dtype=first.parameters[0].dtype, device=first.device).repeat_interleave(self.classes)[:, None]

        self.rate, self.momentum = per_row([run.rate for run in runs]), per_row([run.config.momentum for run in runs])
        self.l2 = per_row([2 * run.config.reg_strength if run.config.regularization == "l2" else 0.0 for run in runs])
        self.l1 = per_row([run.config.reg_strength if run.config.regularization == "l1" else 0.0 for run in runs])
        self.has_l1 = any(run.config.regularization == "l1" for run in runs)
        losses = sorted({run.config.loss for run in runs})
        self.loss_members = [(loss, torch.tensor([i for i, run in enumerate(runs) if run.config.loss == loss], device=first.device)) for loss in losses]
        self.total_loss = torch.zeros(len(runs), device=first.device)
        self.correct = torch.zeros(len(runs), dtype=torch.int64, device=first.device)

    @classmethod
    def of(cls, runs: list[_Run]) -> "LinearStack | None":
        """The stack of the largest group of runs that can share one (at least two), or None."""
        groups: dict[tuple, list[_Run]] = {}
        for run in runs:
            if run.is_linear and run.config.optimizer in STACKED_OPTIMIZERS:
                groups.setdefault((run.config.optimizer, run.config.precision, len(run.parameters[1])), []).append(run)
        largest = max(groups.values(), key=len, default=[])
        return cls(largest) if len(largest) > 1 else None

    def learn(self, learners: list[tuple[_Run, torch.Tensor | None]], inputs: torch.Tensor, labels: torch.Tensor) -> list:
        """One step of every member among `learners` (from its `rows` mask when given); returns the others.
        A member not among them this minibatch (no rows of its own) does not move."""
        n, members, classes = len(labels), len(self.runs), self.classes
        columns, rest, ones = [None] * members, [], torch.ones(n, device=inputs.device)
        for run, rows in learners:
            index = self.member.get(id(run))
            if index is None:
                rest.append((run, rows))
            else:
                columns[index] = ones if rows is None else rows.to(ones.dtype)
        row_weights = torch.stack([torch.zeros_like(ones) if column is None else column for column in columns], 1)
        counts = row_weights.sum(0)
        (weights, weight_velocity), (biases, bias_velocity) = self.stacked
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            scores = torch.nn.functional.linear(inputs, weights, biases)
        per_model = scores.float().view(n, members, classes)
        model_losses, score_gradients = [], torch.empty_like(per_model)
        for loss, indices in self.loss_members:
            whole = len(indices) == members
            group, chosen = (per_model, row_weights) if whole else (per_model[:, indices], row_weights[:, indices])
            own_rows = counts[indices].clamp(min=1)  # each model's mean is over its own rows
            # the gradient of each model's mean loss, written out (models.losses), not through autograd
            example_losses, gradients = EXAMPLE_LOSSES_AND_GRADIENTS[loss](group, labels[:, None].expand(n, len(indices)), (1 / own_rows) * chosen)
            model_losses.append((indices, (example_losses * chosen).sum(0) / own_rows))
            if whole:
                score_gradients = gradients
            else:
                score_gradients[:, indices] = gradients
        score_gradients = score_gradients.reshape(n, members * classes)
        with torch.no_grad():
            with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                weight_gradients = score_gradients.T @ inputs
            weight_gradients = weight_gradients.float().addcmul_(weights, self.l2)
            if self.has_l1:
                weight_gradients.addcmul_(weights.sign(), self.l1)
            idle = counts == 0
            kept = [tensor.clone() for tensor in (weights, weight_velocity, biases, bias_velocity)] if bool(idle.any()) else None
            for parameter, velocity, gradient, rate, momentum in (
                (weights, weight_velocity, weight_gradients, self.rate, self.momentum),
                (biases, bias_velocity, score_gradients.sum(0), self.rate[:, 0], self.momentum[:, 0]),
            ):
                if self.nesterov:
                    parameter.addcmul_(velocity, momentum, value=-1)
                velocity.mul_(momentum).addcmul_(gradient, rate, value=-1)
                if self.nesterov:
                    parameter.addcmul_(velocity, 1 + momentum)
                else:
                    parameter.add_(velocity)
            if kept is not None:  # members with no rows in this minibatch take no step
                still = idle.repeat_interleave(classes)
                for tensor, before in zip((weights, weight_velocity, biases, bias_velocity), kept):
                    tensor[still] = before[still]
            for indices, losses in model_losses:
                self.total_loss[indices] += losses.detach() * counts[indices]
            # max's indices are argmax's (the first of equal scores), in a third of argmax's time on ten classes
            self.correct += ((per_model.detach().max(-1).indices == labels[:, None]) & (row_weights > 0)).sum(0)
        return rest

    def end_epoch(self) -> None:
        """Hands each run its epoch's summed loss and correct answers, and its weights and velocities back
        in storage of its own: a model left holding views of the stack would save (torch.export) every
        member's weights beside its own. Linear weights are small; the next epoch stacks them again."""
        for index, run in enumerate(self.runs):
            run.total_loss, run.correct = self.total_loss[index], self.correct[index]
            for tensor in (*run.parameters[:2], *run.velocities[:2]):
                tensor.data = tensor.data.clone()


def best_record(history: list[EpochRecord]) -> EpochRecord:
    """The first record with the highest validation accuracy (the last one when there is no validation)."""
    if math.isnan(history[0].val_accuracy):
        return history[-1]
    return max(history, key=lambda record: (record.val_accuracy, -record.epoch))


def best_epoch(history: list[EpochRecord]) -> int:
    """best_record's epoch; 0 before the first epoch."""
    return best_record(history).epoch if history else 0


def kept_record(history: list[EpochRecord], keep: str) -> EpochRecord:
    """The record whose weights a run with this `keep` ended with (SGD's train(), L-BFGS's fit_lbfgs)."""
    return best_record(history) if keep == "best_val" else history[-1]


def fit_standardization(batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per column, float32, from one streaming pass over (rows, d) batches of the train split.

    scikit-learn's StandardScaler semantics (its `partial_fit` algorithm, Chan, Golub & LeVeque's
    pairwise update, in float64): scale is the population std, and 1 for a column indistinguishable from
    a constant one, so a value a constant train column never took stays a modest number instead of
    becoming (value - mean) / 1e-6. Constant means sklearn's `_is_constant_feature` bound, or a spread
    below float32 resolution of the column's values (features are float32: such a spread is rounding).
    The result depends on the rows and on how they are cut into batches only in the last float64 bits.
    """
    return mean_and_scale(*column_moments(batches))


def column_moments(batches: Iterable[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """(row count, float64 mean, float64 sum of squared deviations) of each column, batch by batch
    (Chan, Golub & LeVeque's pairwise update)."""
    count, mean, squares = 0, None, None
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim != 2 or (mean is not None and batch.shape[1] != len(mean)):
            raise ValueError(f"standardization takes (rows, {len(mean) if mean is not None else 'd'}) batches; got shape {batch.shape}")
        if len(batch) == 0:
            continue
        batch_mean = batch.mean(0, dtype=np.float64)
        batch_squares = np.square(batch - batch_mean).sum(0)  # float64: the batch's dtype is promoted
        if mean is None:
            count, mean, squares = len(batch), batch_mean, batch_squares
            continue
        count, mean, squares = pooled_moments(count, mean, squares, len(batch), batch_mean, batch_squares)
    if mean is None:
        raise ValueError("standardization needs at least one train row")
    return count, mean, squares


def pooled_moments(count: int, mean, squares, other_count: int, other_mean, other_squares) -> tuple[int, np.ndarray, np.ndarray]:
    """The moments of two groups of rows together, from each group's (count, mean, squared deviations)."""
    total = count + other_count
    delta = other_mean - mean
    return total, mean + delta * (other_count / total), squares + other_squares + np.square(delta) * (count * other_count / total)


def mean_and_scale(count: int, mean: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fit_standardization's (mean, scale), float32, from float64 moments; constant columns scale 1."""
    variance = squares / count
    if not (np.isfinite(mean).all() and np.isfinite(variance).all()):
        bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(variance)))
        raise ValueError(f"train rows hold NaN or infinite values in {len(bad)} column(s) (first: {bad[:5].tolist()}); no statistics can standardize them")
    scale = np.sqrt(variance)
    scale[constant_columns(variance, mean, count)] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def constant_columns(variance: np.ndarray, mean: np.ndarray, count: int) -> np.ndarray:
    """Columns whose variance is rounding, not signal: scikit-learn's float64 bound, or below float32's."""
    eps64 = np.finfo(np.float64).eps
    sklearn_bound = count * eps64 * variance + (count * mean * eps64) ** 2
    float32_resolution = (np.finfo(np.float32).eps * np.abs(mean)) ** 2
    return (variance <= sklearn_bound) | (variance <= float32_resolution)


def row_batches(rows: np.ndarray, batch_size: int = 4096) -> Iterator[np.ndarray]:
    """Consecutive (batch_size, d) slices of an array or memmap: one read of a batch at a time."""
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


def fit_channel_standardization(batches: Iterable[np.ndarray], image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of each colour channel over all pixels of the train rows, tiled to the row length.

    For raw-pixel rows (H * W * C per row): the same statistics at every position keep flips and shifts
    exact. One streaming pass, with `fit_standardization`'s semantics per channel.
    """
    channels = image_shape[-1]
    positions = image_shape[0] * image_shape[1]
    # each column's moments (a contiguous pass), then a channel's columns pooled: the moments of all its
    # pixels, in a third of the time of reducing an (n * H * W, 3) view
    count, mean, squares = column_moments(batches)
    column_mean, column_squares = mean.reshape(positions, channels), squares.reshape(positions, channels)
    channel_mean = column_mean.mean(0)
    channel_squares = column_squares.sum(0) + count * np.square(column_mean - channel_mean).sum(0)
    mean, scale = mean_and_scale(count * positions, channel_mean, channel_squares)
    return np.tile(mean, positions), np.tile(scale, positions)

