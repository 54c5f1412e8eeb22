from dataclasses import replace

import pytest
import torch

from models.mlp import MLPConfig
from models.search import (
    HUGE_FEATURE,
    SearchSpace,
    candidates,
    diagnose,
    refit,
    refit_many,
    run_trial,
    search,
    search_and_refit,
    search_and_refit_many,
    search_many,
)
from models.training import TrainConfig, TrainingFailed, evaluate
from tests.models.test_training import assert_same_history, assert_same_weights, separable_blobs

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


CPU = torch.device("cpu")


def lone_candidate(**settings) -> tuple:
    (candidate,) = candidates(SearchSpace([0.01], [0.0], [[8]], [6]), replace(BASE, **settings), BASE_MODEL, "grid", 1, 0)
    return candidate


def train_and_val() -> tuple:
    """Separable blobs, every fifth row held out for validation."""
    x, y = separable_blobs(n_per_class=50)
    held_out = torch.arange(len(x)) % 5 == 0
    return x[~held_out], y[~held_out], x[held_out], y[held_out]


def weights(model) -> list:
    return [parameter.detach().clone() for parameter in model.parameters()]


def test_a_lone_candidate_searched_with_its_refit_is_the_trial_search_gives_and_a_twin_that_retraces_it():
    x, y, val_x, val_y = train_and_val()
    candidate = lone_candidate()
    alone, _ = search([candidate], x, y, val_x, val_y, CPU, progress=False)
    # refit rows with no validation rows in them: the twin sees the trial's minibatches
    trial, trials, twin = search_and_refit(candidate, x, y, x, y, val_x, val_y, CPU, progress=False)
    assert trials == [trial] and trial.best_epoch == alone.best_epoch < 6
    assert_same_history(trial.history, alone.history)  # the trial and its twin learn from one product: to rounding
    assert_same_weights(trial.model, alone.model)
    assert_same_weights(twin, trial.model)  # kept at the trial's epoch, not the last


def test_in_the_joint_pass_only_the_refit_learns_from_the_validation_rows():
    x, y, val_x, val_y = train_and_val()
    candidate = lone_candidate(keep="last")
    runs = [search_and_refit(candidate, x, y, torch.cat([x, rows]), torch.cat([y, val_y]), val_x, val_y, CPU, progress=False) for rows in (val_x, -val_x)]
    (first, _, first_refit), (second, _, second_refit) = runs
    assert first.history == second.history  # the trial never saw them
    for ours, theirs in zip(weights(first.model), weights(second.model)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert any(not torch.equal(ours, theirs) for ours, theirs in zip(weights(first_refit), weights(second_refit)))


def test_the_refit_in_the_joint_pass_is_the_refit_that_would_follow_the_search():
    x, y, val_x, val_y = train_and_val()
    candidate = lone_candidate(keep="last")  # kept at the last epoch: the refit after the search trains all of them
    rows, labels = torch.cat([x, val_x]), torch.cat([y, val_y])
    trial, _, twin = search_and_refit(candidate, x, y, rows, labels, val_x, val_y, CPU, progress=False)
    after, _ = refit(trial, rows, labels, CPU, progress=False)  # the same seed draws the same minibatches of the same rows
    for ours, theirs in zip(weights(twin), weights(after)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_a_refit_that_diverges_beside_a_converging_trial_fails_the_stage_naming_the_refit():
    x, y = separable_blobs(n_per_class=40)
    with pytest.raises(TrainingFailed, match="refit on train \+ validation diverged"):
        search_and_refit(only_rate(0.01)[0], x, y, torch.cat([x, x * 1e20]), torch.cat([y, y]), x, y, CPU, progress=False)


# squared hinge grows with the margin violated, so a step too long diverges (on these blobs: from 1)
HINGE = TrainConfig(batch_size=32, loss="squared_hinge")


def only_rate(rate: float) -> list:
    return candidates(SearchSpace([rate], [0.0], [[]], [4]), HINGE, BASE_MODEL, "grid", 1, 0)


def test_when_every_rate_diverges_the_search_backs_off_to_a_tenth_then_a_hundredth_of_the_smallest(capsys):
    x, y = separable_blobs(n_per_class=40)
    best, trials = search(only_rate(10.0), x, y, x, y, torch.device("cpu"), progress=False)  # 10 and 1 diverge here, 0.1 does not
    assert [(t.config.learning_rate, t.learning_rate_divisor) for t in trials] == [(pytest.approx(0.1), 100)]
    assert best.val_accuracy == 1.0
    printed = capsys.readouterr().out
    assert "backing off to 1 (the smallest / 10)" in printed and "backing off to 0.1 (the smallest / 100)" in printed


def test_a_search_that_converges_does_not_back_off(capsys):
    x, y = separable_blobs(n_per_class=40)
    _, trials = search(only_rate(0.01), x, y, x, y, torch.device("cpu"), progress=False)
    assert [t.learning_rate_divisor for t in trials] == [1]
    assert "backing off" not in capsys.readouterr().out


def test_a_search_that_diverges_after_backing_off_names_the_rates_and_a_lower_one():
    x, y = separable_blobs(n_per_class=40)
    with pytest.raises(TrainingFailed) as failed:
        search(only_rate(1e6), x, y, x, y, torch.device("cpu"), progress=False)
    assert failed.value.reason == "training diverged for every learning rate tried (1e+06, 100000, 10000)"
    assert failed.value.fix == "lower learning_rates below 10000"


def test_huge_standardized_features_are_named_as_the_cause_not_the_learning_rate():
    x, y = separable_blobs(n_per_class=40)
    x[:, 3] *= 1e5  # what a column with almost no spread on train becomes once divided by its tiny std
    with pytest.raises(TrainingFailed) as failed:
        search(only_rate(1e6), x, y, x, y, torch.device("cpu"), progress=False)
    assert "reach |x| = " in failed.value.reason and "in 1 column (3)" in failed.value.reason
    assert "extractor's settings" in failed.value.fix and "learning_rates" not in failed.value.fix


def test_diagnose_finds_non_finite_values_huge_values_and_empty_classes_and_nothing_in_clean_data():
    x, y = separable_blobs(n_per_class=10)
    assert diagnose(x, y, 3, ["a", "b", "c"]) == []
    x[0, 1], x[5, 1], x[7, 4] = float("nan"), float("inf"), 2 * HUGE_FEATURE
    keep = y != 2
    problems = diagnose(x[keep], y[keep], 3, ["a", "b", "café"])
    causes = [cause for cause, _ in problems]
    assert causes[0] == "the training features hold 2 NaN or infinite values in 1 column (1)"
    assert causes[1].startswith(f"standardized training features reach |x| = {2 * HUGE_FEATURE:.3g} in 1 column (4)")
    assert causes[2] == "class 'café' has no training rows"
    assert all(fix for _, fix in problems)


def test_a_refit_that_diverges_fails_with_the_cause():
    x, y = separable_blobs(n_per_class=40)
    best, _ = search(only_rate(0.1), x, y, x, y, torch.device("cpu"), progress=False)
    huge = torch.cat([x, x[:1] * 1e6])  # validation rows far outside the train range join the refit
    with pytest.raises(TrainingFailed, match="the refit on train \\+ validation diverged with learning_rate 0.1: standardized"):
        refit(best, huge, torch.cat([y, y[:1]]), torch.device("cpu"), progress=False)


class MemoryMappedLike:
    """Rows read only through rows(indices), as from features memory-mapped on disk."""

    def __init__(self, array):
        self.array = array

    def __len__(self):
        return len(self.array)

    def rows(self, indices):
        return self.array[indices]


def test_diagnose_reads_a_row_source_as_it_reads_a_tensor():
    x, y = separable_blobs(n_per_class=2000)  # more rows than one chunk
    x[4500, 2] = float("nan")
    x[5900, 0] = 5 * HUGE_FEATURE
    assert diagnose(MemoryMappedLike(x.numpy()), y, 3) == diagnose(x, y, 3)
    assert [cause.split(" (")[0] for cause, _ in diagnose(x, y, 3)] == [
        "the training features hold 1 NaN or infinite value in 1 column",
        f"standardized training features reach |x| = {5 * HUGE_FEATURE:.3g} in 1 column",
    ]


def test_a_search_in_this_process_trains_its_trials_together_with_the_results_of_one_after_another():
    x, y = separable_blobs(n_per_class=40)
    space = SearchSpace(learning_rates=[0.001, 0.01, 1e30], reg_strengths=[0.0, 0.1], hidden_sizes=[[]], epochs=[3, 5])
    configs = candidates(space, BASE, BASE_MODEL, "grid", 12, 0)
    one_after_another = []

    def sequential(function, items, shared):
        one_after_another.append(len(items))
        return [function(shared, item) for item in items]

    apart = search(configs, x, y, x[:30], y[:30], torch.device("cpu"), progress=False, map_trials=sequential)
    together = search(configs, x, y, x[:30], y[:30], torch.device("cpu"), progress=False)
    assert one_after_another == [12]
    assert len(together[1]) == len(apart[1]) < 12  # trials at 1e30 diverged, the same ones either way
    for left, right in zip(together[1], apart[1]):
        assert_same_trial(left, right)
    assert together[0].config == apart[0].config


def test_a_search_over_dropout_models_trains_them_one_after_another_with_the_results_of_each_alone():
    x, y = separable_blobs(n_per_class=40)
    configs = candidates(SearchSpace([0.001, 0.01], [0.0], [[8]], [3]), BASE, replace(BASE_MODEL, dropout=0.3), "grid", 2, 0)
    _, trials = search(configs, x, y, x[:30], y[:30], torch.device("cpu"), progress=False)
    assert [trial.config.learning_rate for trial in trials] == [0.001, 0.01]
    for trial in trials:
        alone = run_trial((x, y, x[:30], y[:30], torch.device("cpu"), None, False), (trial.config, trial.model_config))
        assert alone.history == trial.history


def classifier_groups(rates: list[float]) -> list[list]:
    """An SVM's and a softmax's candidates over the same learning rates: what one linear stage searches."""
    space = SearchSpace(rates, [1e-3], [[]], [5])
    return [candidates(space, replace(BASE, loss=loss), BASE_MODEL, "grid", len(rates), 0) for loss in ("squared_hinge", "softmax")]


def assert_same_trial(ours, theirs) -> None:
    """The same trial to float32 rounding: linear models learning together share one product."""
    assert ours.config == theirs.config and ours.best_epoch == theirs.best_epoch
    assert_same_history(ours.history, theirs.history)
    assert_same_weights(ours.model, theirs.model)


def test_classifiers_searched_and_refit_together_end_as_each_would_alone():
    x, y, val_x, val_y = train_and_val()
    groups = classifier_groups([0.003, 0.03])
    together = search_many(groups, x, y, val_x, val_y, CPU, progress=False)
    alone = [search(group, x, y, val_x, val_y, CPU, progress=False) for group in groups]
    for (best, trials), (best_alone, trials_alone) in zip(together, alone):
        assert_same_trial(best, best_alone)
        assert len(trials) == len(trials_alone) == 2
        for trial, trial_alone in zip(trials, trials_alone):
            assert_same_trial(trial, trial_alone)
    refits = refit_many([best for best, _ in together], x, y, CPU, progress=False)
    for model, (best, _) in zip(refits, alone):  # each stopped at its own trial's best epoch
        assert_same_weights(model, refit(best, x, y, CPU, progress=False)[0])


def test_lone_candidates_of_two_classifiers_train_with_their_refits_in_one_pass_as_each_would_alone():
    x, y, val_x, val_y = train_and_val()
    rows, labels = torch.cat([x, val_x]), torch.cat([y, val_y])
    lone = [group[0] for group in classifier_groups([0.01])]
    together = search_and_refit_many([[candidate] for candidate in lone], x, y, rows, labels, val_x, val_y, CPU, progress=False)
    for (trial, trials, twin), candidate in zip(together, lone):
        alone, _, alone_twin = search_and_refit(candidate, x, y, rows, labels, val_x, val_y, CPU, progress=False)
        assert trials == [trial]
        assert_same_trial(trial, alone)
        assert_same_weights(twin, alone_twin)


def test_each_classifier_keeps_the_refit_of_its_best_trial_from_one_pass_over_all_candidates():
    x, y, val_x, val_y = train_and_val()
    rows, labels = torch.cat([x, val_x]), torch.cat([y, val_y])
    groups = [[(replace(config, keep="last"), model) for config, model in group] for group in classifier_groups([1e-6, 0.1])]
    outcomes = search_and_refit_many(groups, x, y, rows, labels, val_x, val_y, CPU, progress=False)
    for (best, trials, twin), group in zip(outcomes, groups):
        lone = [search_and_refit(candidate, x, y, rows, labels, val_x, val_y, CPU, progress=False) for candidate in group]
        for trial, (alone, _, _) in zip(trials, lone):
            assert_same_trial(trial, alone)  # each trial as it would train beside its own refit alone
        assert [trial.config for trial in trials] == [config for config, _ in group]
        assert best is trials[1] and best.val_accuracy > trials[0].val_accuracy  # 1e-6 barely moves from its first weights
        assert_same_weights(twin, refit(best, rows, labels, CPU, progress=False)[0])  # kept at the last epoch: the refit after the search


def test_candidates_and_their_refits_trained_through_a_map_end_as_in_one_pass():
    x, y, val_x, val_y = train_and_val()
    rows, labels = torch.cat([x, val_x]), torch.cat([y, val_y])
    groups, seen = classifier_groups([1e-6, 0.1]), []

    def one_by_one(function, items, *, shared):  # what a Ray task per candidate does, here
        seen.extend(items)
        return [function(shared, item) for item in items]

    mapped = search_and_refit_many(groups, x, y, rows, labels, val_x, val_y, CPU, progress=False, map_trials=one_by_one)
    together = search_and_refit_many(groups, x, y, rows, labels, val_x, val_y, CPU, progress=False)
    assert seen == [candidate for group in groups for candidate in group]
    for (best, trials, twin), (best_together, trials_together, twin_together) in zip(mapped, together):
        assert_same_trial(best, best_together)
        assert len(trials) == len(trials_together) == 2
        assert_same_weights(twin, twin_together)


def test_a_diverging_rate_drops_out_of_its_group_and_the_others_choose():
    x, y = separable_blobs(n_per_class=40)
    group = candidates(SearchSpace([0.01, 1e12], [0.0], [[]], [4]), HINGE, BASE_MODEL, "grid", 2, 0)
    ((best, trials, twin),) = search_and_refit_many([group], x, y, x, y, x, y, CPU, progress=False)
    assert [trial.config.learning_rate for trial in trials] == [0.01] and best is trials[0]
    assert all(torch.isfinite(parameter).all() for parameter in twin.parameters())


def test_a_classifier_that_diverges_fails_alone_and_the_other_trains():
    x, y = separable_blobs(n_per_class=40)
    diverging = only_rate(1e12)  # the squared hinge overshoots at every back-off of this rate
    converging = candidates(SearchSpace([0.01], [0.0], [[]], [4]), BASE, BASE_MODEL, "grid", 1, 0)
    failed, (best, trials) = search_many([diverging, converging], x, y, x, y, CPU, progress=False)
    assert isinstance(failed, TrainingFailed) and "diverged for every learning rate tried (1e+12, 1e+11, 1e+10)" in str(failed)
    assert_same_trial(best, search(converging, x, y, x, y, CPU, progress=False)[0])
    outcomes = search_and_refit_many([diverging, converging], x, y, x, y, x, y, CPU, progress=False)
    assert isinstance(outcomes[0], TrainingFailed) and not isinstance(outcomes[1], TrainingFailed)


def test_a_search_over_nothing_is_refused_by_name():
    from models.search import search

    x, y = torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least one configuration"):
        search([], x, y, x, y, torch.device("cpu"), progress=False)
