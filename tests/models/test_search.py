import pytest
import torch

from models.mlp import MLPConfig
from models.search import SearchSpace, candidates, refit, search
from models.training import TrainConfig, evaluate
from tests.models.test_training import separable_blobs

SPACE = SearchSpace(learning_rates=[0.001, 0.01], reg_strengths=[0.0, 1e-3], hidden_sizes=[[], [8]], epochs=[2, 4])
BASE, BASE_MODEL = TrainConfig(batch_size=32), MLPConfig(input_dim=5, n_classes=3)


def test_grid_tries_every_combination_once():
    points = candidates(SPACE, BASE, BASE_MODEL, "grid", budget=16, seed=0)
    keys = {(c.learning_rate, c.reg_strength, tuple(m.hidden_sizes), c.epochs) for c, m in points}
    assert len(points) == len(keys) == SPACE.size() == 16


def test_a_grid_larger_than_the_budget_is_refused():
    with pytest.raises(ValueError, match="budget"):
        candidates(SPACE, BASE, BASE_MODEL, "grid", budget=15, seed=0)


def test_random_search_draws_budget_distinct_points_the_same_for_the_same_seed():
    first = candidates(SPACE, BASE, BASE_MODEL, "random", budget=5, seed=1)
    assert len({(c.learning_rate, c.reg_strength, tuple(m.hidden_sizes), c.epochs) for c, m in first}) == 5
    assert first == candidates(SPACE, BASE, BASE_MODEL, "random", budget=5, seed=1)
    assert first != candidates(SPACE, BASE, BASE_MODEL, "random", budget=5, seed=2)


def test_search_keeps_the_trial_with_the_best_validation_accuracy():
    x, y = separable_blobs(n_per_class=40)
    space = SearchSpace(learning_rates=[1e-7, 0.01], reg_strengths=[0.0], hidden_sizes=[[]], epochs=[5])
    best, trials = search(candidates(space, BASE, BASE_MODEL, "grid", 2, 0), x, y, x, y, torch.device("cpu"), progress=False)
    assert len(trials) == 2
    assert best.config.learning_rate == 0.01 and best.val_accuracy == max(t.val_accuracy for t in trials) == 1.0
    assert 1 <= best.best_epoch <= 5 and best.history[best.best_epoch - 1].val_accuracy == best.val_accuracy


def test_refit_trains_the_chosen_settings_afresh_for_the_chosen_epochs():
    x, y = separable_blobs(n_per_class=40)
    space = SearchSpace(learning_rates=[0.01], reg_strengths=[0.0], hidden_sizes=[[8]], epochs=[6])
    best, _ = search(candidates(space, BASE, BASE_MODEL, "grid", 1, 0), x, y, x, y, torch.device("cpu"), progress=False)
    model, history = refit(best, x, y, torch.device("cpu"), progress=False)
    assert model is not best.model and model.config.hidden_sizes == [8]
    assert len(history) == best.best_epoch
    # same data, seed and rates as the trial: the refit retraces it epoch for epoch
    assert [r.train_loss for r in history] == pytest.approx([r.train_loss for r in best.history[: best.best_epoch]])
    assert evaluate(model, x, y) == best.val_accuracy
