"""Laue-group symmetry in torch: fundamental-sector reduction and the symmetric angle.

The numpy reference is :class:`edorient.physics.symmetry.LaueGroup`; this module works on any
Laue group given its operations as an (m, 3, 3) tensor (Cartesian, acting on column vectors),
so a loss can be differentiated through it. The sector is the Dirichlet cell around
:data:`edorient.conventions.SECTOR_REFERENCE` (see :mod:`edorient.conventions`): the
representative of ``v`` is ``g* v`` with ``g* = argmax_g (g v) . ref``. The argmax is piecewise
constant, so the gradient flows through the selected ``g* v``.
"""

from __future__ import annotations

import numpy as np
import torch

from edorient.conventions import SECTOR_REFERENCE

__all__ = ["as_ops_tensor", "laue_4mmm_ops", "reduce_to_sector", "symmetric_angle"]


def laue_4mmm_ops(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 16 operations of Laue group 4/mmm (anatase), from :func:`edorient.physics.symmetry.laue_group`.

    Examples
    --------
    >>> ops = laue_4mmm_ops()
    >>> tuple(ops.shape), bool(torch.equal(ops[0], torch.eye(3)))
    ((16, 3, 3), True)
    """
    from edorient.physics.symmetry import laue_group

    return as_ops_tensor(laue_group("4/mmm"), dtype=dtype)


def as_ops_tensor(ops, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Operations as an (m, 3, 3) tensor: from a tensor, an array, or an object with ``.ops``."""
    ops = getattr(ops, "ops", ops)
    t = torch.as_tensor(np.array(ops) if not isinstance(ops, torch.Tensor) else ops, dtype=dtype)
    if t.ndim != 3 or t.shape[1:] != (3, 3):
        raise ValueError(f"Laue operations must have shape (m, 3, 3), got {tuple(t.shape)}")
    return t


def _ref(like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(SECTOR_REFERENCE, dtype=like.dtype, device=like.device)


def reduce_to_sector(v: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
    """The fundamental-sector representative ``g* v`` of each (..., 3) vector ``v``.

    Examples
    --------
    >>> v = torch.tensor([[0.0, -1.0, -1.0]]) / 2 ** 0.5
    >>> [round(float(x), 4) for x in reduce_to_sector(v, laue_4mmm_ops())[0]]
    [0.7071, 0.0, 0.7071]
    """
    ops = ops.to(dtype=v.dtype, device=v.device)
    gv = torch.einsum("mij,...j->...mi", ops, v)  # (..., m, 3)
    k = (gv @ _ref(v)).argmax(dim=-1)  # (...)
    return torch.gather(gv, -2, k[..., None, None].expand(*k.shape, 1, 3)).squeeze(-2)


def symmetric_angle(a: torch.Tensor, b: torch.Tensor, ops: torch.Tensor, degrees: bool = False) -> torch.Tensor:
    """Smallest angle between directions ``a`` and ``b`` (..., 3) over the group (not normalised
    inputs are normalised; ``a`` and ``b`` broadcast). Uses ``atan2(|g a x b|, g a . b)``,
    accurate at small angles, with a finite gradient (zero at exactly zero angle).

    Examples
    --------
    >>> a = torch.tensor([1.0, 0.0, 0.0]); b = torch.tensor([0.0, -1.0, 0.0])
    >>> float(symmetric_angle(a, b, laue_4mmm_ops(), degrees=True))
    0.0
    """
    ops = ops.to(dtype=a.dtype, device=a.device)
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    ga = torch.einsum("mij,...j->...mi", ops, a)  # (..., m, 3)
    ga, bb = torch.broadcast_tensors(ga, b.unsqueeze(-2))
    sin = torch.linalg.vector_norm(torch.linalg.cross(ga, bb, dim=-1), dim=-1)
    cos = (ga * bb).sum(-1)
    ang = torch.atan2(sin, cos).min(dim=-1).values
    return torch.rad2deg(ang) if degrees else ang
