"""The lecture's classification losses and weight penalties, as small pure functions of scores."""
from __future__ import annotations

import torch


def svm_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Multiclass SVM (Weston & Watkins 1999; cs231n): mean over examples of sum_{j != y} max(0, s_j - s_y + margin).

    scores : (n, C) float; labels : (n,) int64.
    """
    correct = scores.gather(1, labels[:, None])
    margins = (scores - correct + margin).clamp(min=0)
    margins = margins.scatter(1, labels[:, None], 0.0)
    return margins.sum(1).mean()


def softmax_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax: mean of log(sum_j exp s_j) - s_y, computed stably."""
    return (torch.logsumexp(scores, 1) - scores.gather(1, labels[:, None]).squeeze(1)).mean()


def weight_penalty(weights: list[torch.Tensor], kind: str) -> torch.Tensor:
    """Sum of squared weights (L2) or absolute weights (L1) over the weight matrices (never the biases)."""
    if kind == "l2":
        return sum((w**2).sum() for w in weights)
    if kind == "l1":
        return sum(w.abs().sum() for w in weights)
    raise ValueError(f"regularization must be 'l2' or 'l1'; got {kind!r}")


LOSSES = {"svm": svm_loss, "softmax": softmax_loss}
