"""How far two ways of training the same linear models end apart: float32 rounding, not a different model.

Linear models that learn together share one matrix product (models.training.LinearStack), which
sums in another order than each model's own, so the benchmarks that time "together" against "alone"
check agreement to a tolerance instead of bit for bit.
"""
from __future__ import annotations

import torch

LIMIT = 1e-3  # of the largest weight: rounding over a few epochs stays orders of magnitude below


def largest_difference(ours, theirs) -> float:
    """The largest difference between two models' (or lists of tensors') weights, over the largest weight."""
    ours, theirs = (list(m.parameters()) if isinstance(m, torch.nn.Module) else list(m) for m in (ours, theirs))
    return max(float((a.detach() - b.detach()).abs().max() / b.detach().abs().max().clamp(min=1e-30)) for a, b in zip(ours, theirs))


def check_agreement(what: str, difference: float) -> str:
    """A phrase for the report; exits with a message when the two ways are further apart than rounding."""
    if not difference <= LIMIT:
        raise SystemExit(f"{what} differs between the two ways by {difference:.1e} of the largest weight (more than {LIMIT:g})")
    return f"largest weight difference {difference:.1e} of the largest weight"
