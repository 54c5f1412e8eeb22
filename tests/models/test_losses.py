"""Losses and gradients against a naive loop over examples and against numerical gradients."""
from __future__ import annotations

import math

import pytest
import torch

from models.losses import add_penalty_gradient, softmax_loss, squared_hinge_loss, svm_loss, weight_penalty


def naive_svm_loss(scores, labels, margin=1.0):
    total = 0.0
    for row, label in zip(scores.tolist(), labels.tolist()):
        total += sum(max(0.0, row[j] - row[label] + margin) for j in range(len(row)) if j != label)
    return total / len(labels)


def naive_squared_hinge_loss(scores, labels):
    total = 0.0
    for row, label in zip(scores.tolist(), labels.tolist()):
        total += sum(max(0.0, 1 - (1 if j == label else -1) * s) ** 2 for j, s in enumerate(row))
    return total / len(labels)


def naive_softmax_loss(scores, labels):
    total = 0.0
    for row, label in zip(scores.tolist(), labels.tolist()):
        total += -math.log(math.exp(row[label]) / sum(math.exp(s) for s in row))
    return total / len(labels)


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (7,), generator=generator)
    return scores, labels


def test_svm_loss_matches_the_naive_loop(batch):
    scores, labels = batch
    assert svm_loss(scores, labels).item() == pytest.approx(naive_svm_loss(scores, labels))


def test_softmax_loss_matches_the_naive_loop(batch):
    scores, labels = batch
    assert softmax_loss(scores, labels).item() == pytest.approx(naive_softmax_loss(scores, labels))


def test_squared_hinge_loss_matches_the_naive_loop(batch):
    scores, labels = batch
    assert squared_hinge_loss(scores, labels).item() == pytest.approx(naive_squared_hinge_loss(scores, labels))


def test_squared_hinge_loss_is_zero_when_each_class_is_on_its_side_of_the_margin():
    scores = torch.tensor([[1.0, -1.0, -3.0], [-2.0, 1.5, -1.0]])
    assert squared_hinge_loss(scores, torch.tensor([0, 1])).item() == 0.0
    # labelled 1, the first row misses two margins by 2 each: (2^2 + 2^2) / 2 rows
    assert squared_hinge_loss(scores, torch.tensor([1, 1])).item() == pytest.approx(4.0)


def test_softmax_loss_is_stable_for_huge_scores():
    scores = torch.tensor([[1000.0, 0.0, -1000.0]])
    assert softmax_loss(scores, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(softmax_loss(scores, torch.tensor([2])).item())


def test_svm_loss_is_zero_when_every_margin_is_met():
    scores = torch.tensor([[5.0, 0.0, 3.9], [0.0, 2.0, 0.5]])
    assert svm_loss(scores, torch.tensor([0, 1])).item() == 0.0


def test_svm_gradient_has_the_lecture_form(batch):
    """d/ds_j = 1[margin_j > 0] for j != y, and d/ds_y = -sum of those, per example, over n."""
    scores, labels = batch
    scores = scores.clone().requires_grad_()
    svm_loss(scores, labels).backward()
    with torch.no_grad():
        active = ((scores - scores.gather(1, labels[:, None]) + 1) > 0).double()
        active[torch.arange(len(labels)), labels] = 0
        expected = active.clone()
        expected[torch.arange(len(labels)), labels] = -active.sum(1)
    torch.testing.assert_close(scores.grad, expected / len(labels))


@pytest.mark.parametrize("loss", [svm_loss, squared_hinge_loss, softmax_loss])
def test_gradients_match_numerical_differences(loss, batch):
    scores, labels = batch
    assert torch.autograd.gradcheck(lambda s: loss(s, labels), (scores.clone().requires_grad_(),))


@pytest.mark.parametrize("kind,expected", [("l2", 1 + 4 + 9 + 16), ("l1", 1 + 2 + 3 + 4)])
def test_weight_penalty(kind, expected):
    weights = [torch.tensor([[1.0, -2.0]]), torch.tensor([3.0, -4.0])]
    assert weight_penalty(weights, kind).item() == expected


def test_unknown_penalty_is_refused():
    with pytest.raises(ValueError, match="l2"):
        weight_penalty([torch.ones(2)], "l3")


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_penalty_gradient_written_out_equals_autograd_of_the_penalty(kind):
    weight = torch.tensor([[0.5, -2.0, 0.0], [3.0, -0.25, 1.5]], requires_grad=True)
    (expected,) = torch.autograd.grad(0.3 * weight_penalty([weight], kind), weight)
    gradient = torch.full_like(weight, 0.7)
    add_penalty_gradient(gradient, weight.detach(), kind, 0.3)
    assert torch.allclose(gradient, 0.7 + expected)


def test_penalty_gradient_of_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="l2"):
        add_penalty_gradient(torch.zeros(2), torch.ones(2), "l3", 0.1)


@pytest.mark.parametrize("name", ["svm", "squared_hinge", "softmax"])
def test_written_out_gradients_are_autograd_s_to_the_bit(name):
    """Linear models step from EXAMPLE_LOSSES_AND_GRADIENTS instead of autograd: the same losses and the
    same gradients, bit for bit, margins of exactly zero and tied scores included."""
    from models.losses import EXAMPLE_LOSSES, EXAMPLE_LOSSES_AND_GRADIENTS

    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        scores = (torch.randn(128, 4, 10, generator=generator) * 3).round(decimals=1)  # ties, margins of exactly 0
        labels = torch.randint(0, 10, (128, 4), generator=generator)
        upstream = torch.rand(128, 4, generator=generator) / 128
        tracked = scores.clone().requires_grad_()
        losses = EXAMPLE_LOSSES[name](tracked, labels)
        (expected,) = torch.autograd.grad((losses * upstream).sum(), tracked)
        written_losses, written = EXAMPLE_LOSSES_AND_GRADIENTS[name](scores, labels, upstream)
        assert torch.equal(written_losses, losses.detach())
        assert torch.equal(written, expected)
        assert (scores - scores.gather(-1, labels[..., None]) + 1 == 0).any() or name != "svm"  # the kink is exercised
