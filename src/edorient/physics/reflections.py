"""Reflections of a crystal: hkl, g, d and the kinematic structure factor (numpy only).

.. math::

    F_g = \\sum_j o_j\\, f^e_j(g)\\, e^{-B_j s^2}\\, e^{2\\pi i\\, \\mathbf{h}\\cdot\\mathbf{r}_j},
    \\qquad s = g / 2 = \\sin\\theta / \\lambda

with electron scattering factors :math:`f^e` (Å) from Lobato & Van Dyck (2014), see
:mod:`edorient.physics.scattering`. Systematic absences are not listed anywhere: they are the
reflections whose structure factor vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edorient.errors import EdorientError
from edorient.physics.crystal import Crystal
from edorient.physics.scattering import electron_scattering_factor

#: |F|² below this fraction of the largest |F|² counts as a systematic absence.
ABSENCE_TOLERANCE: float = 1e-8


@dataclass(frozen=True, eq=False)
class Reflections:
    """Reflections of one crystal (no 000), sorted by increasing g.

    Attributes
    ----------
    hkl
        Miller indices, (n, 3) int.
    g_vectors
        Reciprocal vectors in the crystal Cartesian frame (Å⁻¹, no 2π), (n, 3).
    g
        Lengths |g| = 1/d (Å⁻¹), (n,).
    d
        Interplanar spacings (Å), (n,).
    F
        Structure factors (Å, complex), (n,).
    """

    hkl: np.ndarray
    g_vectors: np.ndarray
    g: np.ndarray
    d: np.ndarray
    F: np.ndarray

    @property
    def intensity(self) -> np.ndarray:
        """|F|² (Å²)."""
        return np.abs(self.F) ** 2

    def __len__(self) -> int:
        return len(self.g)


def structure_factors(crystal: Crystal, hkl: np.ndarray) -> np.ndarray:
    """Kinematic structure factors F (Å, complex) of reflections ``hkl`` (n, 3).

    Examples
    --------
    A cubic cell with one atom at the origin has ``F = f_e(g)`` for every reflection.
    """
    hkl = np.atleast_2d(np.asarray(hkl, dtype=float))
    g_len = np.linalg.norm(hkl @ crystal.reciprocal_matrix.T, axis=-1)  # (n,)
    species = np.unique(crystal.numbers)
    fe = {int(z): electron_scattering_factor(int(z), g_len) for z in species}  # each (n,)
    s2 = (g_len / 2.0) ** 2
    phase = np.exp(2j * np.pi * (hkl @ crystal.frac.T))  # (n, atoms)
    weight = np.stack(
        [fe[int(z)] * o * np.exp(-b * s2) for z, o, b in zip(crystal.numbers, crystal.occupancy, crystal.b_iso)],
        axis=-1,
    )  # (n, atoms)
    return np.sum(weight * phase, axis=-1)


def compute_reflections(crystal: Crystal, g_max: float, drop_absent: bool = True) -> Reflections:
    """Every reflection with 0 < |g| <= ``g_max`` (Å⁻¹), with its structure factor.

    Parameters
    ----------
    crystal
        The crystal.
    g_max
        Largest |g| = 1/d_min (Å⁻¹).
    drop_absent
        Drop reflections whose |F|² is below :data:`ABSENCE_TOLERANCE` times the largest.
    """
    if not np.isfinite(g_max) or g_max <= 0:
        raise EdorientError(f"g_max must be a positive number of 1/Å, got {g_max!r}")
    A = crystal.direct_matrix
    # |h| = |g . a| <= g_max |a|, and likewise for k, l.
    lim = np.floor(g_max * np.linalg.norm(A, axis=0)).astype(int)
    if np.prod(2 * lim + 1) > 5e7:
        raise EdorientError(f"g_max = {g_max} 1/Å gives too many reflections; use a smaller g_max")
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in lim], indexing="ij")
    hkl = np.stack([x.ravel() for x in grids], axis=-1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g_vec = hkl @ crystal.reciprocal_matrix.T
    g_len = np.linalg.norm(g_vec, axis=1)
    keep = g_len <= g_max * (1 + 1e-12)
    hkl, g_vec, g_len = hkl[keep], g_vec[keep], g_len[keep]
    F = structure_factors(crystal, hkl)
    if drop_absent and len(F):
        I = np.abs(F) ** 2
        present = I > ABSENCE_TOLERANCE * I.max()
        hkl, g_vec, g_len, F = hkl[present], g_vec[present], g_len[present], F[present]
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], np.round(g_len, 9)))
    return Reflections(
        hkl=hkl[order].astype(int),
        g_vectors=g_vec[order],
        g=g_len[order],
        d=1.0 / g_len[order],
        F=F[order],
    )
