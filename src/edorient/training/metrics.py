"""Metrics logged per epoch (eq. 3.1-3.3 and the angular error).

- ``mae_1``, ``mae_2`` (and ``sigma_1``, ``sigma_2``): eq. 3.2 between the predictions and
  the targets in the thesis order (head 1 vs A, head 2 vs B), as the thesis computed. The loop
  passes the raw head outputs for the thesis and order-free losses, and the normalised,
  sector-reduced ones for the symmetry-aware losses (:func:`~edorient.training.losses.postprocess`).
- ``sum_mae``: ``mae_1 + mae_2``, the thesis' model-selection criterion.
- ``mae_of``: order-free MAE, the mean eq. 3.2 error per grain under the better assignment
  of heads to {A, B} per sample.
- ``median_angle_deg``: median over grains of the symmetric angle (Laue group) between the
  normalised prediction and the target, order-free (assignment with the smaller angle sum).
"""

from __future__ import annotations

import torch

from edorient.training.losses import order_free_min
from edorient.training.symmetry import laue_4mmm_ops, symmetric_angle

__all__ = ["METRIC_NAMES", "epoch_metrics"]

METRIC_NAMES = ("mae_1", "sigma_1", "mae_2", "sigma_2", "sum_mae", "mae_of", "median_angle_deg")


@torch.no_grad()
def epoch_metrics(pred: torch.Tensor, target: torch.Tensor, ops: torch.Tensor | None = None) -> dict[str, float]:
    """Metrics of (N, n_grains, 3) predictions against targets.

    Examples
    --------
    >>> t = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]]])
    >>> m = epoch_metrics(t.flip(1), t)   # heads swapped: thesis MAE 2+2, order-free 0
    >>> m["mae_1"], m["mae_2"], m["mae_of"], m["median_angle_deg"]
    (2.0, 2.0, 0.0, 0.0)
    """
    ops = laue_4mmm_ops() if ops is None else ops
    pred, target = pred.double(), target.double()
    n = target.shape[1]
    out: dict[str, float] = {}
    a = (pred - target).abs().sum(-1)  # (N, n) in the thesis order
    for k in range(n):
        out[f"mae_{k + 1}"] = float(a[:, k].mean())
        out[f"sigma_{k + 1}"] = float(a[:, k].std(unbiased=False))
    out["sum_mae"] = sum(out[f"mae_{k + 1}"] for k in range(n))
    cost = (pred[:, :, None, :] - target[:, None, :, :]).abs().sum(-1)
    out["mae_of"] = float(order_free_min(cost)[0].mean() / n)
    ang = symmetric_angle(pred[:, :, None, :], target[:, None, :, :], ops.double(), degrees=True)
    _, swapped = order_free_min(ang)
    if n == 2:
        per = torch.where(swapped[:, None], torch.stack([ang[:, 0, 1], ang[:, 1, 0]], 1), torch.stack([ang[:, 0, 0], ang[:, 1, 1]], 1))
    else:
        per = ang[:, 0, :1]
    out["median_angle_deg"] = float(per.flatten().quantile(0.5))  # torch.median takes the lower middle
    return out
