"""Training losses, by name (a registry).

All take predictions and targets of shape (B, n_grains, 3), target[:, 0] = grain A and
target[:, 1] = grain B (the thesis order), and return a scalar.

- ``thesis``: eq. 3.2 per head, ``mean_b sum_c |p - t|``, summed over the heads in the thesis
  order (Keras' two MAE losses: Keras' "mae" divides by 3 as well; a constant factor).
- ``order-free``: the same, minimised per sample over the two assignments of heads to {A, B}.
- ``symmetry``: predictions normalised and reduced to the fundamental sector of the Laue group
  first, then the order-free eq. 3.2 error.
- ``symmetry-angular``: the order-free symmetric angle (radians) between prediction and target.
"""

from __future__ import annotations

import torch
from torch import nn

from edorient.errors import EdorientError
from edorient.training.symmetry import laue_4mmm_ops, reduce_to_sector, symmetric_angle

__all__ = ["LOSSES", "available_losses", "build_loss", "order_free_min", "postprocess"]


def _l1(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 3.2 per sample: |dx| + |dy| + |dz| over the last axis."""
    return (p - t).abs().sum(-1)


def order_free_min(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample minimum over head-to-grain assignments.

    ``cost[b, i, j]`` is the error of head ``i`` against grain ``j`` (n = 1 or 2). Returns the
    summed cost of the best assignment (B,) and whether the heads were swapped (B,) bool.
    """
    n = cost.shape[-1]
    if n == 1:
        return cost[:, 0, 0], torch.zeros(cost.shape[0], dtype=torch.bool, device=cost.device)
    straight = cost[:, 0, 0] + cost[:, 1, 1]
    swapped = cost[:, 0, 1] + cost[:, 1, 0]
    return torch.minimum(straight, swapped), swapped < straight


class _Loss(nn.Module):
    def __init__(self, ops: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("ops", laue_4mmm_ops() if ops is None else torch.as_tensor(ops, dtype=torch.float32))


class ThesisLoss(_Loss):
    """Sum over heads of the per-head MAE (eq. 3.2), head k against grain k."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _l1(pred, target).mean(0).sum()


class OrderFreeLoss(_Loss):
    """The thesis loss under the better of the two head-to-grain assignments, per sample."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cost = _l1(pred[:, :, None, :], target[:, None, :, :])  # (B, heads, grains)
        return order_free_min(cost)[0].mean()


class SymmetryLoss(_Loss):
    """Normalise, reduce to the fundamental sector, then the order-free eq. 3.2 error."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = reduce_to_sector(nn.functional.normalize(pred.float(), dim=-1, eps=1e-6), self.ops)
        t = reduce_to_sector(target.float(), self.ops)
        cost = _l1(p[:, :, None, :], t[:, None, :, :])
        return order_free_min(cost)[0].mean()


class SymmetryAngularLoss(_Loss):
    """Order-free symmetric angle in radians (sum over the grains, mean over the batch)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cost = symmetric_angle(pred.float()[:, :, None, :], target.float()[:, None, :, :], self.ops)
        return order_free_min(cost)[0].mean()


#: name -> loss class (constructed with the Laue operations, default 4/mmm).
LOSSES: dict[str, type[_Loss]] = {
    "thesis": ThesisLoss,
    "order-free": OrderFreeLoss,
    "symmetry": SymmetryLoss,
    "symmetry-angular": SymmetryAngularLoss,
}


def available_losses() -> list[str]:
    """The registered loss names."""
    return list(LOSSES)


def build_loss(name: str, ops: torch.Tensor | None = None) -> nn.Module:
    """The loss ``name`` for the Laue group with operations ``ops`` (default 4/mmm)."""
    if name not in LOSSES:
        raise EdorientError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name](ops)


def postprocess(loss: str, pred: torch.Tensor, ops: torch.Tensor | None = None) -> torch.Tensor:
    """The prediction a model trained with ``loss`` makes from its raw output.

    The symmetry-aware losses only see the direction up to the Laue group, so their models'
    predictions are the normalised outputs reduced to the fundamental sector; the thesis and
    order-free losses use the raw outputs (as the thesis did).
    """
    if loss in ("symmetry", "symmetry-angular"):
        ops = laue_4mmm_ops() if ops is None else ops
        return reduce_to_sector(nn.functional.normalize(pred.float(), dim=-1, eps=1e-6), ops)
    return pred
