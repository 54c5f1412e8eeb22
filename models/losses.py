"""The lecture's classification losses and weight penalties, as small pure functions of scores."""
from __future__ import annotations

import torch


def svm_losses(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Multiclass SVM (Weston & Watkins 1999; cs231n) of each example: sum_{j != y} max(0, s_j - s_y + margin).

    scores : (..., C) float, classes on the last axis; labels : scores.shape[:-1] int64.
    """
    correct = scores.gather(-1, labels[..., None])
    margins = (scores - correct + margin).clamp(min=0)
    margins = margins.scatter(-1, labels[..., None], 0.0)
    return margins.sum(-1)


def squared_hinge_losses(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One-vs-rest L2-SVM of each example: sum_j max(0, 1 - t_j s_j)^2, t_y = +1, t_j = -1 otherwise.

    The linear SVM of Coates, Lee & Ng (2011) and the default of scikit-learn's LinearSVC: each class
    its own binary SVM, the squared hinge smooth enough for SGD to converge on thousands of features.
    """
    targets = torch.full_like(scores, -1.0).scatter_(-1, labels[..., None], 1.0)
    return (1 - targets * scores).clamp(min=0).square().sum(-1)


def softmax_losses(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax of each example: log(sum_j exp s_j) - s_y, computed stably."""
    return torch.logsumexp(scores, -1) - scores.gather(-1, labels[..., None]).squeeze(-1)


def svm_losses_and_gradients(scores: torch.Tensor, labels: torch.Tensor, upstream: torch.Tensor, margin: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(svm_losses, upstream * their gradient with respect to the scores), the gradient written out in
    autograd's own operations (a margin of exactly 0 counts, as clamp's gradient does): linear models'
    steps skip building and walking a graph for a few small tensors. upstream : scores.shape[:-1]."""
    correct = scores.gather(-1, labels[..., None])
    margins = scores - correct + margin
    active = (margins >= 0).scatter_(-1, labels[..., None], False)
    losses = margins.clamp(min=0).scatter_(-1, labels[..., None], 0.0).sum(-1)
    gradients = upstream[..., None] * active
    return losses, gradients.scatter_add_(-1, labels[..., None], (-gradients).sum(-1, keepdim=True))


def squared_hinge_losses_and_gradients(scores: torch.Tensor, labels: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared_hinge_losses, upstream * their gradient): d/ds_j max(0, 1 - t_j s_j)^2 = -t_j 2 max(0, 1 - t_j s_j)."""
    targets = torch.full_like(scores, -1.0).scatter_(-1, labels[..., None], 1.0)
    slack = (1 - targets * scores).clamp_(min=0)
    losses = slack.square().sum(-1)
    return losses, (slack.mul_(2) * upstream[..., None]).mul_(targets).neg_()


def softmax_losses_and_gradients(scores: torch.Tensor, labels: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax_losses, upstream * their gradient): the softmax, less one at the label."""
    normalizer = torch.logsumexp(scores, -1, keepdim=True)
    losses = normalizer.squeeze(-1) - scores.gather(-1, labels[..., None]).squeeze(-1)
    gradients = (scores - normalizer).exp_().mul_(upstream[..., None])
    return losses, gradients.scatter_add_(-1, labels[..., None], -upstream[..., None])


def svm_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The mean of svm_losses over the examples: scores (n, C), labels (n,)."""
    return svm_losses(scores, labels, margin).mean()


def squared_hinge_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean of squared_hinge_losses over the examples."""
    return squared_hinge_losses(scores, labels).mean()


def softmax_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean of softmax_losses over the examples."""
    return softmax_losses(scores, labels).mean()


def weight_penalty(weights: list[torch.Tensor], kind: str) -> torch.Tensor:
    """Sum of squared weights (L2) or absolute weights (L1) over the weight matrices (never the biases)."""
    if kind == "l2":
        return sum((w**2).sum() for w in weights)
    if kind == "l1":
        return sum(w.abs().sum() for w in weights)
    raise ValueError(f"regularization must be 'l2' or 'l1'; got {kind!r}")


@torch.no_grad()
def add_penalty_gradient(gradient: torch.Tensor, weight: torch.Tensor, kind: str, strength: float) -> None:
    """gradient += strength * d weight_penalty / d weight, in place (2 W for L2, sign(W) for L1).

    Written out rather than differentiated: autograd of the penalty costs three extra passes over
    every weight matrix per minibatch, a sixth of an MLP step on CPU.
    """
    if kind == "l2":
        gradient.add_(weight, alpha=2 * strength)
    elif kind == "l1":
        gradient.add_(weight.sign(), alpha=strength)
    else:
        raise ValueError(f"regularization must be 'l2' or 'l1'; got {kind!r}")


LOSSES = {"svm": svm_loss, "squared_hinge": squared_hinge_loss, "softmax": softmax_loss}
EXAMPLE_LOSSES = {"svm": svm_losses, "squared_hinge": squared_hinge_losses, "softmax": softmax_losses}  # per example, any leading axes
EXAMPLE_LOSSES_AND_GRADIENTS = {"svm": svm_losses_and_gradients, "squared_hinge": squared_hinge_losses_and_gradients, "softmax": softmax_losses_and_gradients}
