"""The crystal: lattice, atoms in the conventional cell, Laue group (numpy only, no I/O).

Build one with :func:`edorient.structures.get_crystal` (built-in anatase or a CIF); this module
only holds the data and the lattice geometry. Frames and units: :mod:`edorient.conventions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edorient.physics.symmetry import LaueGroup


def direct_matrix(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Direct matrix (Å) with a, b, c as columns; a along x, b in the x-y plane.

    Angles in degrees.

    Examples
    --------
    >>> np.round(direct_matrix(3.0, 4.0, 5.0, 90, 90, 90), 6).tolist()
    [[3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 5.0]]
    """
    al, be, ga = np.radians([alpha, beta, gamma])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz2 = c**2 - cx**2 - cy**2
    if cz2 <= 0:
        from edorient.errors import EdorientError

        raise EdorientError(
            f"cell angles alpha={alpha}, beta={beta}, gamma={gamma} do not form a cell; check the CIF"
        )
    A = np.array(
        [
            [a, b * np.cos(ga), cx],
            [0.0, b * np.sin(ga), cy],
            [0.0, 0.0, np.sqrt(cz2)],
        ]
    )
    A[np.abs(A) < 1e-12] = 0.0
    return A


@dataclass(frozen=True, eq=False)
class Crystal:
    """A crystal structure in its conventional cell.

    Attributes
    ----------
    name
        Label, e.g. ``"anatase"``.
    cell
        ``(a, b, c, alpha, beta, gamma)`` in Å and degrees.
    symbols
        Element symbol of each atom of the full (symmetry-expanded) cell.
    numbers
        Atomic numbers, shape (n,).
    frac
        Fractional positions in [0, 1), shape (n, 3).
    occupancy
        Site occupancies, shape (n,).
    b_iso
        Isotropic Debye-Waller factors B (Å²), shape (n,); the structure factor uses
        ``exp(-B s²)`` with ``s = g / 2``.
    space_group
        Hermann-Mauguin symbol (extended, with origin choice where relevant).
    laue
        The Laue group, operations in the crystal Cartesian frame.
    notes
        What the reader assumed that the source did not say (e.g. a default B factor), shown
        in :meth:`summary` so that it reaches every output.
    """

    name: str
    cell: tuple[float, float, float, float, float, float]
    symbols: tuple[str, ...]
    numbers: np.ndarray
    frac: np.ndarray
    occupancy: np.ndarray
    b_iso: np.ndarray
    space_group: str
    laue: LaueGroup
    notes: tuple[str, ...] = ()
    _A: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_A", direct_matrix(*self.cell))

    @property
    def direct_matrix(self) -> np.ndarray:
        """Columns a, b, c in the crystal Cartesian frame (Å)."""
        return self._A.copy()

    @property
    def reciprocal_matrix(self) -> np.ndarray:
        """Columns a*, b*, c* (Å⁻¹, no 2π): ``g(hkl) = reciprocal_matrix @ hkl``."""
        return np.linalg.inv(self._A).T

    @property
    def volume(self) -> float:
        """Cell volume (Å³)."""
        return float(abs(np.linalg.det(self._A)))

    @property
    def cartesian(self) -> np.ndarray:
        """Atom positions in the crystal Cartesian frame (Å), shape (n, 3)."""
        return self.frac @ self._A.T

    def d_spacing(self, hkl) -> np.ndarray:
        """Interplanar spacing d (Å) of reflections ``hkl`` (..., 3)."""
        g = np.asarray(hkl, dtype=float) @ self.reciprocal_matrix.T
        return 1.0 / np.linalg.norm(g, axis=-1)

    def zone_axis_direction(self, uvw) -> np.ndarray:
        """Unit vector of zone axis ``[u v w]`` (= u a + v b + w c) in the crystal frame."""
        v = self._A @ np.asarray(uvw, dtype=float)
        return v / np.linalg.norm(v)

    @property
    def hexagonal_axes(self) -> bool:
        """Whether the cell has hexagonal axes (a = b, alpha = beta = 90°, gamma = 120°: the
        hexagonal and trigonal crystals, the latter in the hexagonal setting), where zone axes
        are also written with four Miller-Bravais indices (:func:`miller_bravais`)."""
        a, b, _, al, be, ga = self.cell
        return bool(abs(a - b) <= 1e-4 * a and abs(al - 90) < 1e-3 and abs(be - 90) < 1e-3 and abs(ga - 120) < 1e-3)

    def __len__(self) -> int:
        return len(self.symbols)

    def summary(self) -> dict:
        """A JSON-friendly description (for meta.json and resolved configs)."""
        return {
            "name": self.name,
            "cell": [float(x) for x in self.cell],
            "space_group": self.space_group,
            "laue_group": self.laue.name,
            "n_atoms": len(self),
            "formula": _formula(self.symbols, self.occupancy),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def miller_bravais(uvw) -> list[int]:
    """A zone axis ``[U V W]`` of hexagonal axes in the four Miller-Bravais indices ``[u v t w]``
    (``u = (2U - V) / 3``, ``v = (2V - U) / 3``, ``t = -(u + v)``, ``w = W``), as the smallest
    integers.

    >>> miller_bravais([1, 0, 0]), miller_bravais([1, 2, 0]), miller_bravais([0, 0, 1]), miller_bravais([1, 0, 1])
    ([2, -1, -1, 0], [0, 1, -1, 0], [0, 0, 0, 1], [2, -1, -1, 3])
    """
    import math

    U, V, W = (int(v) for v in uvw)
    out = [2 * U - V, 2 * V - U, -(U + V), 3 * W]
    g = math.gcd(*out) or 1
    return [v // g for v in out]


def from_miller_bravais(uvtw) -> list[int]:
    """The three-index zone axis ``[U V W] = [u - t, v - t, w]`` of Miller-Bravais ``[u v t w]``
    (which must have ``u + v + t = 0``), as the smallest integers; the inverse of
    :func:`miller_bravais`.

    >>> from_miller_bravais([2, -1, -1, 0]), from_miller_bravais([0, 1, -1, 0]), from_miller_bravais([2, -1, -1, 3])
    ([1, 0, 0], [1, 2, 0], [1, 0, 1])
    """
    import math

    from edorient.errors import EdorientError

    u, v, t, w = (int(x) for x in uvtw)
    if u + v + t != 0:
        raise EdorientError(f"the Miller-Bravais zone [{u} {v} {t} {w}] needs u + v + t = 0; check the indices")
    out = [u - t, v - t, w]
    g = math.gcd(*out) or 1
    return [x // g for x in out]


def _formula(symbols, occupancy) -> str:
    counts: dict[str, float] = {}
    for s, o in zip(symbols, occupancy):
        counts[s] = counts.get(s, 0.0) + float(o)
    return " ".join(f"{s}{round(n, 3):g}" for s, n in sorted(counts.items()))
