from __future__ import annotations

import numpy as np
import pytest
import torch

from models.losses import softmax_loss
from models.mlp import ACTIVATIONS, MLP, MLPConfig
from models.training import TrainConfig, choose_device, evaluate, sgd_momentum_step, standardization, train


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


def test_divergence_is_reported_not_hidden():
    x, y = separable_blobs()
    model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[8]))
    with pytest.raises(FloatingPointError, match="learning_rate"):
        train(model, TrainConfig(epochs=3, learning_rate=1e12, momentum=0.0), x * 1e6, y, x, y, progress=False)


def test_standardization_uses_train_statistics_and_survives_constant_columns():
    train_features = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    mean, std = standardization(train_features)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    assert np.isfinite((train_features - mean) / std).all()


@pytest.mark.parametrize("bad", [dict(learning_rate=-1.0), dict(reg_strength=-0.1), dict(loss="hinge"), dict(momentum=1.0), dict(epochs=0)])
def test_impossible_training_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_cpu_can_be_forced():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda")
