"""The toy problems: the facts the studies' reports state, on the pipeline's own MLP and train()."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models import toy
from models.mlp import MLP, MLPConfig


@pytest.fixture(autouse=True)
def one_thread():
    """These problems are tiny: on a shared CPU, torch's thread pool costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_an_mlp_without_activation_is_the_product_of_its_weight_matrices():
    torch.manual_seed(0)
    model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[7, 4], activation="none"))
    weight, bias = toy.collapsed_linear(model)
    x = torch.randn(20, 5)
    assert weight.shape == (3, 5)
    torch.testing.assert_close(model(x), x @ weight.T + bias)


def test_collapsed_linear_does_not_hold_with_a_nonlinearity():
    torch.manual_seed(0)
    model = MLP(MLPConfig(input_dim=5, n_classes=3, hidden_sizes=[7], activation="relu"))
    weight, bias = toy.collapsed_linear(model)
    x = torch.randn(50, 5)
    assert (model(x) - (x @ weight.T + bias)).abs().max() > 1e-2


def test_two_circles_are_not_linearly_separable():
    x, y = toy.two_circles(n=200)
    assert toy.fit(x, y, [], epochs=60, batch_size=100).train_accuracy < 0.65


def test_softmax_runs_from_five_seeds_end_at_nearly_the_same_loss():
    x, y = toy.two_spirals(n=200)
    fits = [toy.fit(x, y, [], epochs=80, batch_size=100, seed=seed) for seed in range(5)]
    losses = [fit.final_loss for fit in fits]
    assert np.ptp(losses) < 1e-3 * min(losses)


def test_the_linear_models_loss_is_convex_along_the_line_between_two_solutions():
    x, y = toy.two_spirals(n=200)
    a, b = (toy.fit(x, y, [], epochs=20, batch_size=100, seed=seed).model for seed in (0, 1))
    steps = np.linspace(-1, 2, 31)
    values = toy.loss_along_line(a, b, x, y, steps, "softmax", 1e-4)
    assert np.diff(values, 2).min() > -1e-6  # second differences of a convex function are >= 0
    assert np.isclose(values[10], toy.objective(a, x, y, "softmax", 1e-4))  # t = 0 is solution a, t = 1 solution b
    assert np.isclose(values[20], toy.objective(b, x, y, "softmax", 1e-4))


def test_a_relu_sum_is_an_mlp_and_its_error_falls_with_width():
    target = lambda t: np.sin(2 * t)  # noqa: E731
    grid = np.linspace(-3, 3, 101)
    errors = []
    for width in (2, 8, 32):
        fit = toy.fit_relu_sum(target, width, -3, 3)
        with torch.no_grad():
            as_mlp = fit.as_mlp()(torch.from_numpy(grid.astype(np.float32))[:, None])[:, 0].numpy()
        np.testing.assert_allclose(as_mlp, fit(grid), atol=1e-4)
        assert fit.units(grid).shape == (width, len(grid))
        errors.append(np.abs(fit(grid) - target(grid)).max())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05


def test_a_relu_sum_with_knots_at_the_kinks_fits_a_piecewise_linear_function_exactly():
    target = lambda t: np.abs(t) + np.maximum(t - 1, 0)  # noqa: E731  kinks at 0 and 1, knots at -2, -1, 0, 1
    fit = toy.fit_relu_sum(target, 4, -2, 2)
    grid = np.linspace(-2, 2, 41)
    np.testing.assert_allclose(fit(grid), target(grid), atol=1e-9)
