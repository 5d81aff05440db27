"""A tiny, fast stand-in for simulated diffraction images (tests and quick benchmarks).

Not physics: the reciprocal lattice of a body-centred tetragonal cell (anatase's a = 3.785 Å,
c = 9.514 Å, reflections with h + k + l even), the points within ``tol`` of the zero-order
Laue zone of the beam direction ``d``, projected on the plane normal to ``d`` (the smallest
rotation taking ``d`` to z), drawn as Gaussian spots with intensity falling with |g|, and the
display transform of :mod:`edorient.conventions`. It is a deterministic function of the seed,
so it serves tests that need images whose labels are learnable; the real simulator is
:mod:`edorient.render`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import Dataset

from edorient.conventions import DISPLAY_GAIN

__all__ = ["SyntheticDiffraction", "sector_directions"]


def sector_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random unit vectors in the 4/mmm sector ``x >= y >= 0, z >= 0`` (uniform on the sphere)."""
    v = np.abs(rng.normal(size=(n, 3)))
    v[:, :2] = np.sort(v[:, :2], axis=1)[:, ::-1]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _to_z(d: np.ndarray) -> np.ndarray:
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(d, z)
    s, c = np.linalg.norm(axis), float(d @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * K @ K


class SyntheticDiffraction(Dataset):
    """``n`` images of ``n_grains`` overlapping toy patterns; items (image (1,S,S), target (n_grains,3), id).

    Examples
    --------
    >>> ds = SyntheticDiffraction(4, size=32, seed=0)
    >>> x, y, i = ds[0]
    >>> tuple(x.shape), tuple(y.shape), bool(0 <= x.min() and x.max() <= 1)
    ((1, 32, 32), (2, 3), True)
    """

    def __init__(self, n: int, size: int = 64, n_grains: int = 2, seed: int = 0, g_edge: float = 1.2, tol: float = 0.02) -> None:
        rng = np.random.default_rng(seed)
        a, c = 3.785, 9.514
        hkl = np.array([p for p in itertools.product(range(-6, 7), range(-6, 7), range(-14, 15)) if sum(p) % 2 == 0 and any(p)], float)
        g = hkl / np.array([a, a, c])
        g = g[np.linalg.norm(g, axis=1) < g_edge]
        self.targets = np.stack([sector_directions(n, rng) for _ in range(n_grains)], axis=1).astype(np.float32)
        px = (np.arange(size) - size // 2) * (g_edge / (size // 2))
        sigma = 1.2 * g_edge / (size // 2)
        imgs = np.zeros((n, size, size), np.float32)
        for i in range(n):
            lin = np.zeros((size, size))
            for k in range(n_grains):
                R = _to_z(self.targets[i, k].astype(float))
                # a random in-plane rotation, as a real pattern has
                t = rng.uniform(0, 2 * np.pi)
                Rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
                gl = g @ (Rz @ R).T
                keep = np.abs(gl[:, 2]) < tol
                gx, gy = gl[keep, 0], gl[keep, 1]
                w = 0.5 * np.exp(-2.0 * (gx**2 + gy**2))
                ex = np.exp(-((px[None, :] - gx[:, None]) ** 2) / (2 * sigma**2))
                ey = np.exp(-((-px[:, None, None] - gy[None, None, :]) ** 2) / (2 * sigma**2))[:, 0, :]
                lin += (ey * w) @ ex / n_grains
            lin[size // 2, size // 2] += 1.0
            imgs[i] = np.clip(np.log1p(DISPLAY_GAIN * lin) / np.log1p(DISPLAY_GAIN), 0, 1)
        self.images = torch.from_numpy(imgs[:, None])
        self.targets_t = torch.from_numpy(self.targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets_t[i], torch.tensor(i)
