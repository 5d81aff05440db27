"""Electron scattering factors of neutral atoms (Lobato & Van Dyck 2014) and element look-up.

The electron scattering factor (first Born approximation, non-relativistic; multiply by the
relativistic factor ``gamma = 1 + E / (m c^2)`` where the simulator needs it) is

.. math::

    f_e(g) = \\sum_{i=1}^{5} a_i \\frac{2 + b_i g^2}{(1 + b_i g^2)^2}

with ``g = |g| = 1/d = 2 sin(theta) / lambda`` in Å⁻¹ (no 2π; the crystallographers'
``s = sin(theta)/lambda`` is ``g / 2``) and ``f_e`` in Å. The coefficients are those of
I. Lobato & D. Van Dyck, Acta Cryst. A70 (2014) 636-649 (see :mod:`edorient.physics._lobato`).

That the table expects ``g = 1/d`` (and not ``s = g/2`` or ``q = 2π/d``) follows from two of the
paper's exact constraints, which the table satisfies to ~1e-10:

- the Mott-Bethe high-angle limit ``f_e(g) -> Z / (2 π² a0 g²)`` (``a0`` the Bohr radius):
  each term tends to ``a_i / (b_i g²)`` and ``sum_i a_i / b_i = Z / (2 π² a0)``;
- hydrogen's ``f_e(0) = 2 sum_i a_i = a0`` exactly.

Only numpy; no I/O.
"""

from __future__ import annotations

import re

import numpy as np

from edorient.errors import EdorientError
from edorient.physics._lobato import LOBATO_A, LOBATO_B, SYMBOLS

__all__ = [
    "BOHR_RADIUS",
    "Z_MAX",
    "atomic_number",
    "electron_scattering_factor",
    "element_symbol",
]

#: Bohr radius a0 (Å), CODATA 2018.
BOHR_RADIUS: float = 0.529177210903
#: Largest atomic number in the table (Lr).
Z_MAX: int = len(SYMBOLS)

# Row 0 is a dummy so that the arrays are indexed by Z directly.
_A = np.vstack([np.zeros(5), np.asarray(LOBATO_A, dtype=float)])  # (Z_MAX + 1, 5), Å
_B = np.vstack([np.ones(5), np.asarray(LOBATO_B, dtype=float)])  # (Z_MAX + 1, 5), Å²
_Z_OF = {s.lower(): z for z, s in enumerate(SYMBOLS, start=1)}
# Symbol, optionally followed by an ionic charge ("O2-", "Ti4+", "Fe+3", "Cl-") or digits.
_LABEL = re.compile(r"^\s*([A-Za-z]{1,2})\s*(?:\d*[+-]?\d*)?\s*$")


def _check_z(Z) -> np.ndarray:
    """Z as an int array; EdorientError unless every entry is an integer in 1..Z_MAX."""
    arr = np.asarray(Z)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise EdorientError(f"Z must be integer atomic numbers 1..{Z_MAX}, got {Z!r}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise EdorientError(
                f"Z must be integer atomic numbers 1..{Z_MAX}, got {arr.tolist()}"
            )
    zi = arr.astype(np.int64)
    if zi.size and (zi.min() < 1 or zi.max() > Z_MAX):
        bad = sorted({int(z) for z in zi.ravel() if z < 1 or z > Z_MAX})
        raise EdorientError(
            f"atomic number(s) {bad} outside the Lobato table; use Z in 1..{Z_MAX}"
        )
    return zi


def electron_scattering_factor(Z, g):
    """Electron scattering factor ``f_e`` (Å) of a neutral atom, Lobato & Van Dyck (2014).

    Parameters
    ----------
    Z : int or array_like of int
        Atomic number(s), 1..103.
    g : float or array_like of float
        Magnitude of the scattering vector, ``g = 1/d = 2 sin(theta)/lambda`` in Å⁻¹ (no 2π;
        ``s = sin(theta)/lambda = g/2``). Must be finite; the sign is irrelevant (``f_e``
        depends on ``g²``).

    Returns
    -------
    float or numpy.ndarray
        ``f_e`` in Å, with the broadcast shape of ``Z`` and ``g`` (a Python float when both
        are scalars). Non-relativistic (rest-mass) values: multiply by ``gamma`` for the
        accelerating voltage.

    Raises
    ------
    EdorientError
        If a ``Z`` is not an integer in 1..103, if ``g`` is not finite, or if the shapes of
        ``Z`` and ``g`` do not broadcast.

    Notes
    -----
    ``f_e(g) = sum_i a_i (2 + b_i g²) / (1 + b_i g²)²``; ``f_e(0) = 2 sum_i a_i`` and
    ``f_e(g) -> Z / (2 π² a0 g²)`` for large ``g`` (Mott-Bethe).

    Examples
    --------
    >>> round(electron_scattering_factor(1, 0.0), 4)  # hydrogen: f_e(0) = a0
    0.5292
    >>> electron_scattering_factor([8, 22], [[0.0], [1.0]]).shape
    (2, 2)
    """
    zi = _check_z(Z)
    try:
        gg = np.asarray(g, dtype=float)
    except (TypeError, ValueError):
        raise EdorientError(f"g must be numbers (Å⁻¹), got {g!r}") from None
    if not np.all(np.isfinite(gg)):
        raise EdorientError(f"g must be finite numbers (Å⁻¹), got {gg.tolist()}")
    try:
        zb, g2 = np.broadcast_arrays(zi, gg * gg)
    except ValueError:
        raise EdorientError(
            f"shapes of Z {zi.shape} and g {gg.shape} do not broadcast; give matching shapes"
        ) from None
    a = _A[zb]  # (..., 5)
    bg2 = _B[zb] * g2[..., None]
    f = np.sum(a * (2.0 + bg2) / (1.0 + bg2) ** 2, axis=-1)
    if f.ndim == 0:
        return float(f)
    return f


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol.

    Parameters
    ----------
    symbol : str
        Element symbol in any case (``'Ti'``, ``'TI'``, ``'ti'``); an ionic charge or
        trailing digits (``'O2-'``, ``'Ti4+'``, ``'Fe+3'``, ``'Cl-'``) are stripped, so the
        neutral atom's number is returned.

    Returns
    -------
    int
        ``Z`` in 1..103.

    Raises
    ------
    EdorientError
        If ``symbol`` is not a string naming an element of the table.

    Examples
    --------
    >>> atomic_number("Ti"), atomic_number("O2-"), atomic_number("AU")
    (22, 8, 79)
    """
    if isinstance(symbol, str):
        m = _LABEL.match(symbol)
        if m is not None and m.group(1).lower() in _Z_OF:
            return _Z_OF[m.group(1).lower()]
    raise EdorientError(
        f"unknown element symbol {symbol!r}; give a symbol such as 'Ti' or 'O' (Z 1..{Z_MAX})"
    )


def element_symbol(Z: int) -> str:
    """Element symbol (``'Ti'``) of atomic number ``Z`` in 1..103.

    Raises
    ------
    EdorientError
        If ``Z`` is not an integer in 1..103.

    Examples
    --------
    >>> element_symbol(22)
    'Ti'
    """
    zi = _check_z(Z)
    if zi.ndim != 0:
        raise EdorientError(f"element_symbol takes one atomic number, got {np.asarray(Z).tolist()}")
    return SYMBOLS[int(zi) - 1]
