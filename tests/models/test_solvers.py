"""The L-BFGS solver of the linear classifiers: streamed gradients, the optimum, the warm-started path."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from models.augment import MirroredImageRows
from models.losses import LOSSES, weight_penalty
from models.mlp import MLP, MLPConfig
from models.solvers import LBFGSConfig, fit_lbfgs, lbfgs_path, refit_lbfgs, streamed_objective
from models.training import TensorRows

CPU = torch.device("cpu")


def blobs(n: int = 120, dim: int = 6, classes: int = 3, seed: int = 0, spread: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian blobs: not separable, so the regularized optimum is finite and unique."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centers = torch.randn(classes, dim, generator=generator)
    return centers[labels] + spread * torch.randn(n, dim, generator=generator), labels


def linear_model(dim: int, classes: int, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(MLPConfig(dim, classes))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_the_streamed_gradient_is_the_full_batch_gradient(loss):
    features, labels = blobs(n=50)
    model = linear_model(6, 3)
    config = LBFGSConfig(loss=loss, reg_strength=0.01, chunk_rows=7)  # 50 rows: 7 chunks, the last of 1 row
    value, correct = streamed_objective(model, config, TensorRows(features), labels, CPU)
    streamed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    scores = model(features)
    full = LOSSES[loss](scores, labels) + 0.01 * weight_penalty(model.weight_matrices(), "l2")
    full.backward()
    assert value == pytest.approx(full.item(), rel=1e-5)
    assert correct == int((scores.argmax(1) == labels).sum())
    for ours, reference in zip(streamed, (p.grad for p in model.parameters())):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_softmax_reaches_scikit_learns_logistic_regression_optimum():
    """Our objective, mean cross-entropy + reg ||W||^2, is sklearn's C * sum + ||W||^2 / 2 divided by
    C n: the same minimum for C = 1 / (2 n reg); sklearn leaves the intercept unpenalized too."""
    features, labels = blobs(n=300)
    reg = 0.01
    model = linear_model(6, 3)
    config = LBFGSConfig(loss="softmax", reg_strength=reg, max_iterations=200, tolerance=1e-7)
    fit_lbfgs(model, config, features, labels, features[:0], labels[:0], CPU)
    reference = LogisticRegression(C=1 / (2 * len(labels) * reg), tol=1e-10, max_iter=10_000).fit(features.numpy(), labels.numpy())
    weights = model.weight_matrices()[0].detach().numpy()
    np.testing.assert_allclose(weights, reference.coef_, atol=2e-4)
    with torch.no_grad():
        ours = torch.softmax(model(features), 1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(features.numpy()), atol=2e-4)


def test_the_result_does_not_depend_on_the_chunk_size():
    features, labels = blobs(n=200)
    weights = []
    for chunk_rows in (13, 64, 1000):
        model = linear_model(6, 3)
        config = LBFGSConfig(loss="squared_hinge", reg_strength=1e-3, max_iterations=30, chunk_rows=chunk_rows)
        fit_lbfgs(model, config, features, labels, features[:0], labels[:0], CPU)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    for other in weights[1:]:
        torch.testing.assert_close(other, weights[0], rtol=1e-3, atol=1e-4)


def test_lbfgs_lowers_the_objective_below_where_it_started_and_records_its_iterations():
    features, labels = blobs(n=150)
    val_features, val_labels = blobs(n=60, seed=0)
    model = linear_model(6, 3)
    config = LBFGSConfig(reg_strength=1e-3, max_iterations=25, record_every=5, val_patience=0)
    start, _ = streamed_objective(model, config, features, labels, CPU)
    history = fit_lbfgs(model, config, features, labels, val_features, val_labels, CPU)
    assert [record.epoch for record in history] == [5 * (i + 1) for i in range(len(history))]
    assert history[-1].epoch <= 25 and history[-1].train_loss < start
    assert all(0 <= record.val_accuracy <= 1 for record in history)


def test_the_path_runs_the_largest_reg_strength_first_each_warm_started_from_the_last():
    features, labels = blobs(n=150)
    val_features, val_labels = blobs(n=60, seed=0)
    configs = [LBFGSConfig(reg_strength=strength, max_iterations=40, val_patience=0) for strength in (1e-4, 1.0, 1e-2)]
    best, trials = lbfgs_path(configs, MLPConfig(6, 3), features, labels, val_features, val_labels, CPU)
    assert [trial.config.reg_strength for trial in trials] == [1.0, 1e-2, 1e-4][: len(trials)] and len(trials) >= 2
    assert best.val_accuracy == max(trial.val_accuracy for trial in trials)
    # a cold start at 1e-2 takes more iterations than the warm start from 1.0's solution
    cold = fit_lbfgs(linear_model(6, 3), configs[2], features, labels, val_features, val_labels, CPU)
    warm_iterations = trials[1].history[-1].epoch
    assert warm_iterations < cold[-1].epoch
    # the heavier penalty leaves smaller weights
    norms = [trial.model.weight_matrices()[0].norm().item() for trial in trials]
    assert norms == sorted(norms) and norms[0] < norms[1]


def test_the_refit_starts_from_the_chosen_trials_weights_and_keeps_its_last():
    features, labels = blobs(n=150)
    val_features, val_labels = blobs(n=60, seed=0)
    best, _ = lbfgs_path([LBFGSConfig(reg_strength=1e-2, max_iterations=20, record_every=5)], MLPConfig(6, 3), features, labels, val_features, val_labels, CPU)
    both, both_labels = torch.cat([features, val_features]), torch.cat([labels, val_labels])
    model, history = refit_lbfgs(best, both, both_labels, CPU)
    assert history[-1].epoch <= best.best_epoch and np.isnan(history[-1].val_accuracy)
    assert model is not best.model
    start, _ = streamed_objective(best.model, best.config, both, both_labels, CPU)
    assert history[-1].train_loss <= start


def test_l1_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="solver: sgd for l1"):
        LBFGSConfig(regularization="l1")


def test_mirrored_image_rows_flip_each_image_left_to_right():
    images = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).view(2, 2, 3, 3)  # (n, H, W, C)
    rows = MirroredImageRows(TensorRows(images.reshape(2, -1)), (2, 3, 3))
    assert len(rows) == 2 and rows.dim == 18
    np.testing.assert_array_equal(rows.rows([1, 0]), images.flip(2)[[1, 0]].reshape(2, -1).numpy())


def test_the_path_stops_at_the_first_reg_strength_that_scores_below_the_one_before():
    """Validation rows that contradict the train rows: the less regularized, the worse the score."""
    features, labels = blobs(n=150)
    configs = [LBFGSConfig(reg_strength=strength, max_iterations=20) for strength in (10.0, 1e-1, 1e-2, 1e-3)]
    best, trials = lbfgs_path(configs, MLPConfig(6, 3), features, labels, features, (labels + 1) % 3, CPU)
    assert len(trials) < 4 and trials[-1].val_accuracy < trials[-2].val_accuracy
    assert best.val_accuracy == max(trial.val_accuracy for trial in trials)


def test_keep_last_runs_every_seed_to_one_minimum_past_the_best_validation_record():
    features, labels = blobs(n=150)
    config = LBFGSConfig(reg_strength=1e-2, max_iterations=500, keep="last")
    solutions = []
    for seed in range(3):
        model = linear_model(6, 3, seed=seed)
        history = fit_lbfgs(model, config, features, labels, features, (labels + 1) % 3, CPU)
        assert history[-1].epoch < 500  # converged: the gradient vanished, validation did not stop it
        # the weights and the predicted probabilities (softmax ignores a constant added to every class's bias)
        solutions.append((model.weight_matrices()[0].detach(), model(features).softmax(1).detach()))
    for weights, probabilities in solutions[1:]:
        torch.testing.assert_close(weights, solutions[0][0], atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(probabilities, solutions[0][1], atol=1e-4, rtol=1e-3)
    _, trials = lbfgs_path([config], MLPConfig(6, 3), features, labels, features, (labels + 1) % 3, CPU)
    assert trials[0].best_epoch == trials[0].history[-1].epoch


def test_lbfgs_stops_once_validation_accuracy_stops_improving():
    features, labels = blobs(n=150)
    config = LBFGSConfig(reg_strength=1e-4, max_iterations=200, record_every=1, val_patience=2, tolerance=0)
    history = fit_lbfgs(linear_model(6, 3), config, features, labels, features, (labels + 1) % 3, CPU)
    best = max(range(len(history)), key=lambda i: (history[i].val_accuracy, -i))
    assert len(history) - 1 - best == 2 and history[-1].epoch < 200
