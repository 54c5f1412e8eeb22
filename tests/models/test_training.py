from __future__ import annotations

import numpy as np
import pytest
import torch

from models.augment import horizontal_flip
from models.losses import softmax_loss
from models.mlp import ACTIVATIONS, MLP, MLPConfig
from models.training import (
    Adam,
    TrainConfig,
    TrainingFailed,
    best_epoch,
    can_train_together,
    choose_device,
    evaluate,
    fit_channel_standardization,
    fit_standardization,
    kept_record,
    learn_minibatch,
    nesterov_step,
    row_batches,
    sgd_momentum_step,
    train,
    train_together,
)


ROUNDING = {"rtol": 1e-4, "atol": 1e-6}  # linear models that learn together: float32 rounding apart from alone


def assert_same_history(ours, theirs) -> None:
    """Epoch records equal, their training losses to float32 rounding (see LinearStack)."""
    assert [(r.epoch, r.train_accuracy, r.val_accuracy, r.learning_rate) for r in ours] == [
        (r.epoch, r.train_accuracy, r.val_accuracy, r.learning_rate) for r in theirs
    ]
    np.testing.assert_allclose([r.train_loss for r in ours], [r.train_loss for r in theirs], rtol=ROUNDING["rtol"])


def assert_same_weights(ours, theirs, exactly: bool = False) -> None:
    """Two models' (or lists of tensors') weights: bit for bit, or to float32 rounding."""
    ours, theirs = (list(m.parameters()) if isinstance(m, torch.nn.Module) else list(m) for m in (ours, theirs))
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        torch.testing.assert_close(mine.detach(), other.detach(), **({"rtol": 0, "atol": 0} if exactly else ROUNDING))


def separable_blobs(n_per_class=60, n_classes=3, dim=5, seed=0):
    generator = np.random.default_rng(seed)
    centers = generator.normal(0, 10, (n_classes, dim))
    x = np.concatenate([c + generator.normal(0, 0.5, (n_per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(n_classes), n_per_class)
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_linear_model_separates_a_separable_set(loss):
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3))
    train(model, TrainConfig(loss=loss, epochs=20, batch_size=32, learning_rate=0.01), x, y, x, y, progress=False)
    assert evaluate(model, x, y) == 1.0


def test_linear_classifier_is_the_mlp_without_hidden_layers():
    model = MLP(MLPConfig(input_dim=5, n_classes=3))
    assert model.n_parameters() == 5 * 3 + 3


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_one_step_lowers_the_loss(activation):
    x, y = separable_blobs()
    torch.manual_seed(0)
    model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[16], activation=activation))
    parameters = list(model.parameters())
    before = softmax_loss(model(x), y)
    gradients = torch.autograd.grad(before, parameters)
    with torch.no_grad():
        sgd_momentum_step(parameters, gradients, [torch.zeros_like(p) for p in parameters], 0.05, 0.9)
    assert softmax_loss(model(x), y).item() < before.item()


def test_momentum_step_follows_the_lecture_formula():
    weight = torch.tensor([1.0])
    velocity = torch.tensor([0.5])
    sgd_momentum_step([weight], [torch.tensor([2.0])], [velocity], learning_rate=0.1, momentum=0.9)
    assert velocity.item() == pytest.approx(0.9 * 0.5 - 0.1 * 2.0)
    assert weight.item() == pytest.approx(1.0 + 0.9 * 0.5 - 0.1 * 2.0)


def test_same_seed_same_figures():
    x, y = separable_blobs(seed=1)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8]))
        history = train(model, TrainConfig(epochs=3, seed=7), x, y, x, y, progress=False)
        results.append([(r.train_loss, r.val_accuracy) for r in history])
    assert results[0] == results[1]


def test_regularization_shrinks_the_weights_it_penalizes_and_leaves_biases():
    x, y = separable_blobs()
    norms = {}
    for strength in (0.0, 0.5):
        torch.manual_seed(0)
        model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8]))
        config = TrainConfig(epochs=20, batch_size=16, reg_strength=strength, learning_rate=0.01)
        train(model, config, x, y, x[:0], y[:0], progress=False)  # no validation rows: the last epoch is kept
        norms[strength] = (sum(w.norm().item() for w in model.weight_matrices()), model.layers[-1].bias.norm().item())
    assert norms[0.5][0] < 0.5 * norms[0.0][0]
    assert norms[0.5][1] > 0.5 * norms[0.0][1]


def test_bf16_precision_trains_to_the_same_accuracy_and_repeats_exactly():
    x, y = separable_blobs(seed=2)
    runs = []
    for precision in ("fp32", "bf16", "bf16"):
        torch.manual_seed(0)
        model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[16]))
        history = train(model, TrainConfig(epochs=10, precision=precision, learning_rate=0.01), x, y, x, y, progress=False)
        assert next(model.parameters()).dtype == torch.float32  # autocast: the weights stay float32
        runs.append([(r.train_loss, r.val_accuracy) for r in history])
    assert runs[0][-1][1] == runs[1][-1][1] == 1.0
    assert runs[0] != runs[1]  # bf16 products really ran
    assert runs[1] == runs[2]


def test_divergence_is_reported_not_hidden():
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8]))
    with pytest.raises(TrainingFailed, match="learning_rate") as failed:
        train(model, TrainConfig(epochs=3, learning_rate=1e12, momentum=0.0), x * 1e6, y, x, y, progress=False)
    assert isinstance(failed.value, FloatingPointError)  # what code that catches divergence already catches
    assert failed.value.reason == "training diverged at epoch 2 with learning_rate 1e+12" and failed.value.fix == "lower learning_rate"


def test_standardization_uses_train_statistics_and_survives_constant_columns():
    train_features = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    mean, std = fit_standardization(row_batches(train_features))
    np.testing.assert_allclose(mean, [2.0, 5.0])
    assert np.isfinite((train_features - mean) / std).all()


def test_a_value_a_constant_train_column_never_took_stays_modest():
    # issue #13: empty colour bins on train, filled on mirrored/val/test rows, became 1e5 and more
    generator = np.random.default_rng(0)
    train_features = generator.normal(0.3, 0.1, (500, 4)).astype(np.float32)
    train_features[:, 1] = 0.0  # constant
    train_features[:, 2] = (0.7 + generator.normal(0, 1e-9, 500)).astype(np.float32)  # near-constant: float32 rounding
    train_features = train_features.astype(np.float64)
    train_features[:, 3] = 0.7 + generator.normal(0, 1e-9, 500)  # float64 noise below float32 resolution
    assert train_features[:, 3].std() > 0
    mean, scale = fit_standardization(row_batches(train_features, 64))
    np.testing.assert_array_equal(scale[1:], 1.0)
    unseen = np.array([[0.3, 0.25, 0.9, 0.1]], np.float32)  # a mirrored or test row with values there
    standardized = (unseen - mean) / scale
    assert np.isfinite(standardized).all() and np.abs(standardized).max() < 2


def test_standardization_equals_scikit_learn_standard_scaler():
    from sklearn.preprocessing import StandardScaler

    generator = np.random.default_rng(1)
    features = (generator.normal(0, 1, (300, 6)) * [1, 10, 1e-3, 100, 0.5, 2] + [0, 5, 1, -50, 3, 1e3]).astype(np.float32)
    features[:, 4] = 3.0
    scaler = StandardScaler().fit(features)
    mean, scale = fit_standardization(row_batches(features))
    np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(scale, scaler.scale_, rtol=1e-5)


def test_streaming_standardization_equals_one_pass_over_the_whole_array():
    features = np.random.default_rng(2).uniform(-3, 8, (1000, 5)).astype(np.float32)
    whole = fit_standardization([features])
    for batch_size in (1, 7, 333, 1000):
        streamed = fit_standardization(row_batches(features, batch_size))
        np.testing.assert_allclose(streamed[0], whole[0], rtol=1e-6)
        np.testing.assert_allclose(streamed[1], whole[1], rtol=1e-6)


def test_channel_standardization_gives_a_constant_channel_scale_one():
    images = np.random.default_rng(3).uniform(0, 1, (10, 2, 2, 3)).astype(np.float32)
    images[..., 2] = 0.5
    mean, scale = fit_channel_standardization(row_batches(images.reshape(10, -1), 3), (2, 2, 3))
    np.testing.assert_array_equal(scale.reshape(4, 3)[:, 2], 1.0)
    np.testing.assert_allclose(mean.reshape(4, 3)[:, 2], 0.5)


@pytest.mark.parametrize("bad", [dict(learning_rate=-1.0), dict(reg_strength=-0.1), dict(loss="hinge"), dict(momentum=1.0), dict(epochs=0), dict(precision="fp16")])
def test_impossible_training_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_cpu_can_be_forced():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda")


def test_nesterov_step_follows_the_cs231n_formula():
    weight, velocity = torch.tensor([1.0]), torch.tensor([0.5])
    nesterov_step([weight], [torch.tensor([2.0])], [velocity], learning_rate=0.1, momentum=0.9)
    new_velocity = 0.9 * 0.5 - 0.1 * 2.0
    assert velocity.item() == pytest.approx(new_velocity)
    assert weight.item() == pytest.approx(1.0 - 0.9 * 0.5 + 1.9 * new_velocity)


def test_adam_matches_torch_adam_without_weight_decay():
    torch.manual_seed(0)
    ours, reference = torch.randn(4, 3), None
    reference = ours.clone().requires_grad_(True)
    adam = Adam([ours], beta1=0.9)
    torch_adam = torch.optim.Adam([reference], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for step in range(5):
        gradient = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        adam.step([ours], [gradient], learning_rate=0.01)
        reference.grad = gradient.clone()
        torch_adam.step()
    torch.testing.assert_close(ours, reference.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_every_optimizer_separates_a_separable_set(optimizer):
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3))
    rate = 0.05 if optimizer == "adam" else 0.01
    train(model, TrainConfig(optimizer=optimizer, epochs=20, batch_size=32, learning_rate=rate), x, y, x, y, progress=False)
    assert evaluate(model, x, y) == 1.0


def test_early_stopping_ends_after_patience_epochs_without_improvement():
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3))
    # the set is separated within an epoch or two; validation accuracy cannot improve past 1.0
    history = train(model, TrainConfig(epochs=50, patience=3, batch_size=32, learning_rate=0.01), x, y, x, y, progress=False)
    assert len(history) == best_epoch(history) + 3 < 50


def test_keep_last_ends_with_the_last_epochs_weights_whatever_validation_says():
    x, y = separable_blobs()
    wrong = (y + 1) % 3  # validation labels no model can fit: its best epoch on them is an early one
    runs = {}
    for keep in ("best_val", "last"):
        model = MLP(MLPConfig(input_dim=5, n_classes=3))
        history = train(model, TrainConfig(epochs=6, batch_size=32, learning_rate=0.01, keep=keep), x, y, x, wrong, progress=False)
        runs[keep] = (model, history)
    last_model, last_history = runs["last"]
    assert evaluate(last_model, x, wrong) == last_history[-1].val_accuracy
    assert best_epoch(last_history) < 6 and kept_record(last_history, "last").epoch == 6 and kept_record(last_history, "best_val").epoch == best_epoch(last_history)
    assert evaluate(runs["best_val"][0], x, wrong) == max(record.val_accuracy for record in runs["best_val"][1])
    with pytest.raises(ValueError, match="keep must be one of best_val, last"):
        TrainConfig(keep="final")


def test_without_validation_rows_the_last_epoch_is_kept():
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3))
    history = train(model, TrainConfig(epochs=4, batch_size=32, learning_rate=0.01), x, y, x[:0], y[:0], progress=False)
    assert len(history) == 4 and best_epoch(history) == 4
    assert evaluate(model, x, y) == 1.0


def test_batchnorm_adds_a_normalization_layer_per_hidden_layer():
    plain = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8, 4]))
    normed = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8, 4], batchnorm=True))
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in normed.modules()) == 2
    assert normed.n_parameters() == plain.n_parameters() + 2 * (8 + 4)


def test_channel_standardization_is_the_same_at_every_pixel():
    images = np.random.default_rng(0).uniform(0, 1, (20, 4, 4, 3)).astype(np.float32)
    mean, std = fit_channel_standardization(row_batches(images.reshape(20, -1)), (4, 4, 3))
    assert mean.shape == (48,)
    np.testing.assert_allclose(mean.reshape(16, 3), np.broadcast_to(images.reshape(-1, 3).mean(0), (16, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.reshape(16, 3)[0], images.reshape(-1, 3).std(0), rtol=1e-4)


def _state(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_models_trained_together_end_as_each_trained_alone():
    """One read of each minibatch feeds every model: same flips, same updates, same early stop, same failure;
    the MLP bit for bit, the linear models (one product for all of them) to float32 rounding."""
    x, y = separable_blobs(n_per_class=40, dim=12)
    flip = horizontal_flip((2, 2, 3))  # 12 columns as 2x2 RGB images: a random augmentation to share
    configs = [
        TrainConfig(learning_rate=0.01, epochs=6, batch_size=32),
        TrainConfig(loss="svm", learning_rate=0.003, epochs=9, batch_size=32, patience=2, optimizer="nesterov"),
        TrainConfig(learning_rate=1e30, epochs=6, batch_size=32),  # diverges
        TrainConfig(learning_rate=0.01, epochs=4, batch_size=32, regularization="l1", reg_strength=0.01, keep="last"),
    ]
    architectures = [[], [], [], [8]]
    alone = []
    for config, hidden in zip(configs, architectures):
        torch.manual_seed(0)
        model = MLP(MLPConfig(12, 3, hidden))
        try:
            alone.append((train(model, config, x, y, x[:50], y[:50], progress=False, augment=flip), _state(model)))
        except TrainingFailed as failure:
            alone.append((str(failure), None))
    models = []
    for hidden in architectures:
        torch.manual_seed(0)
        models.append(MLP(MLPConfig(12, 3, hidden)))
    together = train_together(models, configs, x, y, x[:50], y[:50], progress=False, augment=flip)
    assert str(together[2]) == alone[2][0] and isinstance(together[2], TrainingFailed)
    for index in (0, 1, 3):
        history, state = alone[index]
        exactly = index == 3
        if exactly:
            assert together[index] == history
        assert_same_history(together[index], history)
        assert_same_weights(models[index].state_dict().values(), state.values(), exactly)
    assert len(together[1]) < 9  # early stopping happened, while the others went on


def test_linear_models_trained_stacked_end_with_weights_of_their_own():
    """During training a stacked model's weights are views of the stack; a model that keeps them would
    save (torch.export, state dicts) every other member's weights beside its own."""
    x, y = separable_blobs(n_per_class=20, dim=12)
    models = [MLP(MLPConfig(12, 3)) for _ in range(3)]
    configs = [TrainConfig(learning_rate=rate, epochs=2, batch_size=16) for rate in (0.001, 0.01, 0.1)]
    train_together(models, configs, x, y, x[:10], y[:10], progress=False)
    for model in models:
        for parameter in model.parameters():
            assert parameter.untyped_storage().nbytes() == parameter.numel() * parameter.element_size()
    assert models[0].weight_matrices()[0].data_ptr() != models[1].weight_matrices()[0].data_ptr()


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov"])
def test_stacked_linear_models_take_each_its_own_steps(optimizer):
    """LinearStack against each model's own products and update: losses, penalties (L2 and L1), masked
    rows, a member with no rows (it must not move) and one gone infinite, to float32 rounding."""
    from models.training import LinearStack, _Run

    x, y = separable_blobs(n_per_class=30, dim=12)
    configs = [
        TrainConfig(loss="squared_hinge", learning_rate=0.01, optimizer=optimizer),
        TrainConfig(loss="svm", learning_rate=0.003, optimizer=optimizer, regularization="l1", reg_strength=0.01),
        TrainConfig(learning_rate=0.01, optimizer=optimizer, momentum=0.5),
        TrainConfig(learning_rate=0.01, optimizer=optimizer),
        TrainConfig(learning_rate=0.01, optimizer=optimizer),
    ]
    in_train = torch.arange(len(y)) % 3 != 0

    def runs():
        built = []
        for config in configs:
            torch.manual_seed(0)
            run = _Run(MLP(MLPConfig(12, 3)), config, config.epochs, torch.device("cpu"))
            run.start_epoch(0)
            built.append(run)
        with torch.no_grad():
            built[4].parameters[0][0, 0] = float("inf")
        return built

    stacked, apart = runs(), runs()
    stack = LinearStack.of(stacked)
    assert stack is not None and len(stack.runs) == 5
    for step in range(4):
        # model 3 sits out the even minibatches, as a run does when a minibatch holds none of its rows
        chosen = [0, 1, 2, 4] if step % 2 == 0 else [0, 1, 2, 3, 4]
        masks = {1: in_train, 2: in_train}
        assert stack.learn([(stacked[i], masks.get(i)) for i in chosen], x, y) == []
        learn_minibatch([(apart[i], masks.get(i)) for i in chosen], x, y)
    stack.end_epoch()
    for ours, theirs in zip(stacked[:4], apart[:4]):
        assert_same_weights(ours.parameters, theirs.parameters)
        assert torch.isfinite(ours.parameters[0]).all() and int(ours.correct) == int(theirs.correct)
        torch.testing.assert_close(ours.total_loss, theirs.total_loss, **ROUNDING)
    assert not torch.isfinite(stacked[4].total_loss) and not torch.isfinite(apart[4].total_loss)
    assert_same_weights(stacked[0].model, apart[0].model)  # the models' own parameters are the stack's views


@pytest.mark.parametrize(
    ("configs", "dropouts"),
    [
        ([TrainConfig(seed=0), TrainConfig(seed=1)], [0.0, 0.0]),
        ([TrainConfig(batch_size=32), TrainConfig(batch_size=64)], [0.0, 0.0]),
        ([TrainConfig(), TrainConfig()], [0.0, 0.5]),
    ],
    ids=["two seeds", "two batch sizes", "dropout"],
)
def test_models_that_would_not_see_the_same_minibatches_do_not_train_together(configs, dropouts):
    model_configs = [MLPConfig(5, 3, [4], dropout=dropout) for dropout in dropouts]
    assert not can_train_together(configs, model_configs)
    x, y = separable_blobs()
    with pytest.raises(ValueError, match="one seed and batch size and no dropout"):
        train_together([MLP(config) for config in model_configs], configs, x, y, x, y, progress=False)


def test_one_model_with_dropout_trains_alone_and_repeats_exactly():
    """Dropout only keeps several models from training together; one model always can."""
    x, y = separable_blobs()
    config = TrainConfig(epochs=3, batch_size=32, learning_rate=0.01)
    assert can_train_together([config], [MLPConfig(5, 3, [8], dropout=0.5)])
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP(MLPConfig(5, 3, [8], dropout=0.5))
        runs.append((train(model, config, x, y, x, y, progress=False), _state(model)))
    assert len(runs[0][0]) == 3 and runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][name], runs[1][1][name]) for name in runs[0][1])


def test_batchnorm_trains_when_the_last_minibatch_would_hold_one_row():
    x, y = separable_blobs(n_per_class=11, dim=5)  # 33 rows: minibatches of 16, 16 and 1
    model = MLP(MLPConfig(5, 3, [8], batchnorm=True))
    history = train(model, TrainConfig(epochs=2, batch_size=16), x, y, x[:9], y[:9], progress=False)
    assert len(history) == 2 and np.isfinite(history[-1].train_loss)
    with pytest.raises(ValueError, match="batchnorm needs at least 2 training rows"):
        train(MLP(MLPConfig(5, 3, [8], batchnorm=True)), TrainConfig(epochs=1), x[:1], y[:1], x[:9], y[:9], progress=False)


def test_the_last_one_row_minibatch_is_kept_apart_without_batchnorm():
    from models.training import minibatch_bounds

    assert minibatch_bounds(33, 16, batchnorm=False) == [(0, 16), (16, 32), (32, 33)]
    assert minibatch_bounds(33, 16, batchnorm=True) == [(0, 16), (16, 33)]
    assert minibatch_bounds(32, 16, batchnorm=True) == [(0, 16), (16, 32)]


@pytest.mark.parametrize("labels, message", [
    (lambda y: y + 1, r"class indices 0\.\.2; got values from 1 to 3"),
    (lambda y: y - 1, r"class indices 0\.\.2; got values from -1 to 1"),
    (lambda y: y.float(), "labels must be a 1-D tensor of class indices"),
    (lambda y: y[:-1], "rows but there are"),
])
def test_labels_that_are_not_class_indices_are_refused_by_name(labels, message):
    x, y = separable_blobs()
    with pytest.raises(ValueError, match=message):
        train(MLP(MLPConfig(5, 3)), TrainConfig(epochs=1), x, labels(y), x[:9], y[:9], progress=False)


def test_float64_features_and_int32_labels_train_as_float32_and_int64():
    x, y = separable_blobs()
    torch.manual_seed(0)
    ours = MLP(MLPConfig(5, 3))
    torch.manual_seed(0)
    theirs = MLP(MLPConfig(5, 3))
    train(ours, TrainConfig(epochs=2), x.double(), y.int(), x[:9].double(), y[:9].int(), progress=False)
    train(theirs, TrainConfig(epochs=2), x, y, x[:9], y[:9], progress=False)
    assert_same_weights(ours, theirs, exactly=True)


def test_no_training_rows_and_mismatched_arguments_are_refused():
    x, y = separable_blobs()
    with pytest.raises(ValueError, match="no training rows"):
        train(MLP(MLPConfig(5, 3)), TrainConfig(epochs=1), x[:0], y[:0], x[:9], y[:9], progress=False)
    with pytest.raises(ValueError, match="one config per model"):
        train_together([MLP(MLPConfig(5, 3))], [TrainConfig(), TrainConfig()], x, y, x, y, progress=False)
    with pytest.raises(ValueError, match="4 columns; the model takes 5"):
        train(MLP(MLPConfig(5, 3)), TrainConfig(epochs=1), x[:, :4], y, x[:9, :4], y[:9], progress=False)
    with pytest.raises(ValueError, match="stop_after must be at least 1"):
        train(MLP(MLPConfig(5, 3)), TrainConfig(epochs=1), x, y, x[:9], y[:9], progress=False, stop_after=0)


@pytest.mark.parametrize("settings", [
    {"epochs": 2.5}, {"batch_size": 16.0}, {"epochs": True}, {"patience": 1.5},
    {"learning_rate": float("inf")}, {"reg_strength": float("nan")},
])
def test_settings_that_are_not_whole_or_finite_numbers_are_refused(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        TrainConfig(**settings)


def test_a_network_without_inputs_or_classes_is_refused():
    with pytest.raises(ValueError, match="input_dim and n_classes must be >= 1"):
        MLPConfig(input_dim=5, n_classes=0)


def test_standardization_refuses_non_finite_rows_and_mismatched_batches():
    rows = np.ones((4, 3), np.float32)
    rows[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 column\(s\) \(first: \[1\]\)"):
        fit_standardization([rows])
    with pytest.raises(ValueError, match=r"got shape \(2, 4\)"):
        fit_standardization([np.ones((2, 3)), np.ones((2, 4))])


def test_non_finite_features_are_named_not_taken_for_a_learning_rate_too_high():
    x, y = separable_blobs()
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="training features hold NaN or infinite values"):
        train(MLP(MLPConfig(5, 3)), TrainConfig(epochs=1), x, y, x[4:9], y[4:9], progress=False)


@pytest.mark.parametrize(
    "model, config",
    [
        (MLPConfig(12, 3, hidden_sizes=[16, 8]), TrainConfig(learning_rate=0.05, reg_strength=1e-2)),
        (MLPConfig(12, 3, hidden_sizes=[16], batchnorm=True, activation="tanh"), TrainConfig(learning_rate=0.05, momentum=0.0)),
        (MLPConfig(12, 3, hidden_sizes=[16], dropout=0.3), TrainConfig(learning_rate=0.05, reg_strength=0.0, loss="squared_hinge")),
    ],
)
def test_an_mlp_step_with_its_weight_gradients_fused_into_the_velocities_is_the_step_from_gradients(model, config):
    from models.training import _Run

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 12, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        run = _Run(MLP(model), config, 1, torch.device("cpu"))
        run.start_epoch(0)
        runs.append(run)
    fused, by_gradients = runs
    assert fused.fuses_its_steps
    moved = [p.detach().clone() for p in fused.parameters]
    for step in range(5):
        torch.manual_seed(step)  # dropout draws the same masks both ways
        fused.learn_fused(x[step * 8 : step * 8 + 8], y[step * 8 : step * 8 + 8])
        torch.manual_seed(step)
        by_gradients.learn_by_gradients(x[step * 8 : step * 8 + 8], y[step * 8 : step * 8 + 8])
    assert_same_weights(fused.parameters, by_gradients.parameters)
    assert_same_weights(fused.velocities, by_gradients.velocities)
    assert all(not torch.equal(before, after) for before, after in zip(moved, fused.parameters))  # every parameter stepped
    torch.testing.assert_close(fused.total_loss, by_gradients.total_loss, **ROUNDING)
    assert fused.correct == by_gradients.correct


@pytest.mark.parametrize(
    "model, config",
    [
        (MLPConfig(12, 3), TrainConfig()),  # linear models step in LinearStack
        (MLPConfig(12, 3, hidden_sizes=[8]), TrainConfig(precision="bf16")),
        (MLPConfig(12, 3, hidden_sizes=[8]), TrainConfig(regularization="l1")),
        (MLPConfig(12, 3, hidden_sizes=[8]), TrainConfig(optimizer="nesterov")),
        (MLPConfig(12, 3, hidden_sizes=[8]), TrainConfig(optimizer="adam")),
    ],
)
def test_other_models_and_updates_step_from_their_gradients(model, config):
    from models.training import _Run

    assert not _Run(MLP(model), config, 1, torch.device("cpu")).fuses_its_steps


def test_channel_standardization_pools_column_moments_as_one_pass_over_every_pixel_would():
    generator = np.random.default_rng(4)
    images = (generator.normal(0.4, 0.2, (97, 5, 3, 3)) + [0, 100, -3]).astype(np.float32)
    images[..., 1] += generator.normal(0, 1e-3, (97, 5, 3)).astype(np.float32)  # a small spread on a large mean
    mean, scale = fit_channel_standardization(row_batches(images.reshape(97, -1), 10), (5, 3, 3))
    every_pixel = fit_standardization(row_batches(images.reshape(-1, 3), 7))
    np.testing.assert_allclose(mean.reshape(15, 3), np.broadcast_to(every_pixel[0], (15, 3)), rtol=1e-6)
    np.testing.assert_allclose(scale.reshape(15, 3), np.broadcast_to(every_pixel[1], (15, 3)), rtol=1e-5)
