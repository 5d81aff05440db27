"""Kinematic spot patterns: excitation errors, relrod shape factors, excited spots.

Geometry (frames in :mod:`edorient.conventions`): the incident wave vector is
``k0 = -(1/λ) e_z``, so the Ewald sphere has its centre at ``+e_z/λ`` and passes through the
origin. For a reciprocal vector ``g`` in the lab frame the excitation error is

.. math:: s_g = g_z - \\lambda |g|^2 / 2

(positive inside the sphere; exact for the sphere's distance along z to first order in λ g).
Zero-order Laue-zone spots have ``g_z = 0`` and ``s = -λ g²/2``; higher-order zones appear
where ``g_z ≈ λ g²/2`` -- both follow from this one formula.

The spot intensity is ``|F_g|²`` times the shape factor of a slab of thickness ``t``:
``sinc²(t s)`` (``np.sinc``, the exact kinematic result), or its Gaussian approximation
``exp(-π (t s)²)`` that has the same peak and the same integral over s but no subsidiary
minima. Detector positions are the lab (x, y) components of ``g`` (Å⁻¹).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edorient.conventions import SPOT_SCALE
from edorient.errors import EdorientError
from edorient.physics.reflections import Reflections

ShapeFactor = Literal["sinc2", "gaussian"]
SHAPES = ("sinc2", "gaussian")


def excitation_errors(g_lab: np.ndarray, wavelength: float) -> np.ndarray:
    """Excitation errors s (Å⁻¹) of lab-frame reciprocal vectors ``g_lab`` (..., 3)."""
    g_lab = np.asarray(g_lab, dtype=float)
    return g_lab[..., 2] - 0.5 * wavelength * np.sum(g_lab * g_lab, axis=-1)


def shape_factor(s: np.ndarray, thickness: float, shape: ShapeFactor = "sinc2") -> np.ndarray:
    """Relrod shape factor (1 at s = 0) of a slab ``thickness`` Å thick.

    Examples
    --------
    >>> float(shape_factor(np.array(0.0), 100.0))
    1.0
    >>> round(float(shape_factor(np.array(0.01), 100.0)), 12)  # first zero at s = 1/t
    0.0
    """
    if shape == "sinc2":
        return np.sinc(thickness * np.asarray(s)) ** 2
    if shape == "gaussian":
        return np.exp(-np.pi * (thickness * np.asarray(s)) ** 2)
    raise EdorientError(f"unknown shape factor {shape!r}: choose one of {', '.join(SHAPES)}")


@dataclass(frozen=True, eq=False)
class Spots:
    """Excited spots of one orientation.

    Attributes
    ----------
    index
        Rows of the :class:`Reflections` they come from, (k,).
    hkl
        Miller indices, (k, 3).
    position
        Detector-plane position (gx, gy) in Å⁻¹, lab frame, (k, 2).
    g, d
        |g| (Å⁻¹) and d (Å), (k,).
    s
        Excitation error (Å⁻¹), (k,).
    intensity
        Peak intensity relative to the direct beam (= 1), (k,).
    """

    index: np.ndarray
    hkl: np.ndarray
    position: np.ndarray
    g: np.ndarray
    d: np.ndarray
    s: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def spot_intensities(
    reflections: Reflections,
    rotations: np.ndarray,
    wavelength: float,
    thickness: float,
    shape: ShapeFactor = "sinc2",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, excitation errors and intensities of every reflection, for many orientations.

    Parameters
    ----------
    reflections
        From :func:`edorient.physics.reflections.compute_reflections`.
    rotations
        (n, 3, 3) or (3, 3): crystal -> lab rotations.
    wavelength
        Electron wavelength (Å).
    thickness
        Specimen thickness (Å).
    shape
        ``"sinc2"`` or ``"gaussian"``.

    Returns
    -------
    position, s, intensity
        (n, K, 2) Å⁻¹, (n, K) Å⁻¹, (n, K) relative to the direct beam, with K reflections.
    """
    R = np.asarray(rotations, dtype=float)
    single = R.ndim == 2
    R = R[None] if single else R
    if R.shape[-2:] != (3, 3):
        raise EdorientError(f"rotations must have shape (n, 3, 3), got {np.asarray(rotations).shape}")
    # Speed (benchmarks/bench_simulator.py): |g|² is rotation-invariant, so s needs only the
    # lab z row of R (one small BLAS product), and (x, y) come straight out as (n, K, 2).
    gv = reflections.g_vectors
    position = np.matmul(gv, R[:, :2, :].transpose(0, 2, 1))
    s = R[:, 2, :] @ gv.T
    s -= 0.5 * wavelength * np.sum(gv * gv, axis=-1)
    f2 = reflections.intensity
    rel = SPOT_SCALE * f2 / f2.max() if len(f2) else f2
    if shape == "sinc2":
        intensity = _sinc2(thickness * s)
        intensity *= rel[None, :]
    else:
        intensity = rel[None, :] * shape_factor(s, thickness, shape)
    if single:
        return position[0], s[0], intensity[0]
    return position, s, intensity


def _sinc2(x: np.ndarray) -> np.ndarray:
    """``np.sinc(x) ** 2`` to float32 relative precision (<= 3e-7), about 4x faster.

    float64 ``sin`` is scalar libm (~25 ns a value) and dominated ``spot_intensities``.
    ``sin²(π x) = sin²(π r)`` with ``r = x - rint(x)`` in [-1/2, 1/2] (exact in float64); on
    that range ``sin`` is well conditioned, so the SIMD float32 ``sin`` of ``π r`` is good to
    float32 rounding, and the division by ``(π x)²`` stays float64.
    """
    x = np.asarray(x, dtype=float)
    r = x - np.rint(x)
    r *= np.pi
    sr = np.sin(r.astype(np.float32)).astype(np.float64)
    tiny = np.abs(x) < 1e-30  # sinc² = 1 to float64 precision; float32 would underflow
    sr /= np.pi * np.where(tiny, 1.0, x)
    sr *= sr
    sr[tiny] = 1.0
    return sr


def kinematic_spots(
    reflections: Reflections,
    rotation: np.ndarray,
    wavelength: float,
    thickness: float,
    shape: ShapeFactor = "sinc2",
    min_intensity: float = 1e-4,
) -> Spots:
    """The excited spots of one orientation: those with intensity >= ``min_intensity``.

    ``min_intensity`` is relative to the direct beam (peak 1).
    """
    position, s, intensity = spot_intensities(reflections, rotation, wavelength, thickness, shape)
    keep = np.flatnonzero(intensity >= min_intensity)
    return Spots(
        index=keep,
        hkl=reflections.hkl[keep],
        position=position[keep],
        g=reflections.g[keep],
        d=reflections.d[keep],
        s=s[keep],
        intensity=intensity[keep],
    )
