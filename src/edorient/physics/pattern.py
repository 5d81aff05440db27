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


def ewald_sag(g: np.ndarray, wavelength: float) -> np.ndarray:
    """``λ |g|² / 2`` (Å⁻¹) of reciprocal vectors ``g`` (..., 3): how far the Ewald sphere has
    fallen below the zero-order plane at ``|g|``, so that ``s = g_z - λ |g|² / 2``. It does not
    depend on the orientation, which is why the fast paths compute it once per reflection."""
    g = np.asarray(g, dtype=float)
    return 0.5 * wavelength * np.sum(g * g, axis=-1)


def excitation_errors(g_lab: np.ndarray, wavelength: float) -> np.ndarray:
    """Excitation errors s (Å⁻¹) of lab-frame reciprocal vectors ``g_lab`` (..., 3)."""
    g_lab = np.asarray(g_lab, dtype=float)
    return g_lab[..., 2] - ewald_sag(g_lab, wavelength)


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
    s -= ewald_sag(gv, wavelength)
    rel = _relative_intensity(reflections)
    intensity = _intensity(s, rel, thickness, shape)
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

    ``min_intensity`` is relative to the direct beam (peak 1). The same spots and values as
    thresholding :func:`spot_intensities`, but the shape factor and the position are only
    evaluated for the reflections that :class:`ExcitationBounds` cannot rule out.
    """
    R = np.asarray(rotation, dtype=float)
    if R.shape != (3, 3):
        raise EdorientError(f"a rotation must have shape (3, 3), got {R.shape}")
    bounds = ExcitationBounds.build(reflections, wavelength, thickness, shape, min_intensity)
    return bounds.spots(R)


@dataclass(frozen=True, eq=False)
class ExcitationBounds:
    """Per-reflection bound on the excitation error an excited spot can have.

    Both shape factors are bounded by a function of ``x = t s`` alone:
    ``sinc²(x) <= min(1, 1/(π x)²)`` and ``exp(-π x²)``. A reflection of relative weight ``rel``
    (:func:`spot_intensities`' ``intensity`` at ``s = 0``) can therefore only reach
    ``min_intensity`` if ``|s| <= s_max``, with ``s_max = sqrt(rel/m)/(π t)`` (sinc²) or
    ``sqrt(ln(rel/m)/π)/t`` (Gaussian), and ``s_max = -1`` when ``rel < m``. ``s_max`` is widened
    by a relative 1e-5 (and 1e-9 Å⁻¹) so neither the float32-precision sinc² (3e-7) nor float64
    rounding of ``s`` can put an excited spot outside it: the pruned paths select exactly the
    spots that thresholding :func:`spot_intensities` selects.

    The candidate test is one dot product: ``x = [R_z, 1] . [g, -λ|g|²/2] / s_max`` over the
    reflections that can be excited at all, and ``|x| <= 1`` (``s``, the shape factor and the
    position are then computed only for the candidates). :meth:`spots` and :meth:`pairs` run
    it as one compiled loop per orientation (:mod:`edorient.physics._kernels`, float64
    throughout; the shape factor there is exact to float64, where :func:`spot_intensities`'
    sinc² is float32-precise).

    Examples
    --------
    >>> from edorient.structures import anatase
    >>> from edorient.physics.reflections import compute_reflections
    >>> refl = compute_reflections(anatase(), 1.5)
    >>> b = ExcitationBounds.build(refl, 0.0251, 50.0, "sinc2", 1e-4)
    >>> bool(np.all(b.s_max <= np.sqrt(0.5 / 1e-4) / (np.pi * 50.0) * (1 + 1e-4)))  # rel <= 0.5
    True
    """

    reflections: Reflections
    thickness: float
    shape: str
    min_intensity: float
    rel: np.ndarray  # (K,) relative peak intensity
    half_lg2: np.ndarray  # (K,) λ |g|² / 2, so s = g_z - half_lg2
    s_max: np.ndarray  # (K,)
    possible: np.ndarray  # rows with s_max >= 0
    scaled_t: np.ndarray  # (4, len(possible)): [g, -half_lg2]ᵀ / s_max of those rows

    @classmethod
    def build(
        cls,
        reflections: Reflections,
        wavelength: float,
        thickness: float,
        shape: ShapeFactor = "sinc2",
        min_intensity: float = 1e-4,
    ) -> "ExcitationBounds":
        if shape not in SHAPES:
            raise EdorientError(f"unknown shape factor {shape!r}: choose one of {', '.join(SHAPES)}")
        gv = reflections.g_vectors
        rel = _relative_intensity(reflections)
        m = float(min_intensity)
        slack = 1.0 + 1e-5
        with np.errstate(divide="ignore", invalid="ignore"):
            if m <= 0:
                s_max = np.full(len(rel), np.inf)
            elif shape == "sinc2":
                s_max = np.sqrt(rel * slack / m) / (np.pi * thickness) * slack
            else:
                s_max = np.sqrt(np.log(np.maximum(rel * slack / m, 1.0)) / np.pi) / thickness * slack
            if m > 0:
                s_max = np.where(rel * slack >= m, s_max, -1.0)
            half_lg2 = ewald_sag(gv, wavelength)
            possible = np.flatnonzero(s_max >= 0)
            aug = np.concatenate([gv, -half_lg2[:, None]], axis=1)[possible]
            scaled_t = np.ascontiguousarray((aug / (s_max[possible, None] + 1e-9)).T)
        return cls(
            reflections=reflections,
            thickness=float(thickness),
            shape=shape,
            min_intensity=m,
            rel=rel,
            half_lg2=half_lg2,
            s_max=s_max,
            possible=possible,
            scaled_t=scaled_t,
        )

    def spots(self, R: np.ndarray) -> Spots:
        """:func:`kinematic_spots` of one (3, 3) rotation (not checked)."""
        refl = self.reflections
        R = np.ascontiguousarray(R, dtype=np.float64)
        img, ref, pos, s, inten = self._buffers(len(self.possible))
        n = _k()._excited_single(R, *self._kernel_args(), 0, 0, img, ref, pos, s, inten)
        ref = ref[:n].copy()
        return Spots(
            index=ref,
            hkl=refl.hkl[ref],
            position=pos[:n].copy(),
            g=refl.g[ref],
            d=refl.d[ref],
            s=s[:n].copy(),
            intensity=inten[:n].copy(),
        )

    def pairs(self, rotations: np.ndarray):
        """Excited spots of many (n, 3, 3) rotations (not checked), flattened.

        Returns ``(orientation, index, position, s, intensity)``: (k,), (k,), (k, 2), (k,), (k,)
        for the k excited (orientation, reflection) pairs, in row-major order of (n, K) -- the
        order of ``np.nonzero(spot_intensities(...)[2] >= min_intensity)``.
        """
        R = np.ascontiguousarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
        kp = len(self.possible)
        cap = len(R) * min(kp, _SPOTS_GUESS)  # enough but for very thin crystals: then retry
        while True:
            bufs = self._buffers(cap)
            n = _k()._excited_2d(R, *self._kernel_args(), *bufs)
            if n >= 0:
                return tuple(b[:n] for b in bufs)
            cap = len(R) * kp  # every candidate: always enough

    def _kernel_args(self) -> tuple:
        """The arrays of :mod:`edorient.physics._kernels` (built once, C-contiguous)."""
        args = self.__dict__.get("_kargs")
        if args is None:
            args = (
                np.ascontiguousarray(self.scaled_t, dtype=np.float64).reshape(4, -1),
                np.ascontiguousarray(self.possible, dtype=np.int64),
                np.ascontiguousarray(self.reflections.g_vectors, dtype=np.float64).reshape(-1, 3),
                np.ascontiguousarray(self.half_lg2, dtype=np.float64),
                np.ascontiguousarray(self.rel, dtype=np.float64),
                float(self.thickness),
                SHAPES.index(self.shape),
                float(self.min_intensity),
            )
            object.__setattr__(self, "_kargs", args)
        return args

    @staticmethod
    def _buffers(cap: int) -> tuple[np.ndarray, ...]:
        return (
            np.empty(cap, dtype=np.int64),
            np.empty(cap, dtype=np.int64),
            np.empty((cap, 2), dtype=np.float64),
            np.empty(cap, dtype=np.float64),
            np.empty(cap, dtype=np.float64),
        )


#: Spots per orientation the buffers of :meth:`ExcitationBounds.pairs` first allow for.
_SPOTS_GUESS = 512


def _k():
    """The compiled kernels (numba is imported on first use, not with the physics package)."""
    from edorient.physics import _kernels

    return _kernels


def _relative_intensity(reflections: Reflections) -> np.ndarray:
    f2 = reflections.intensity
    return SPOT_SCALE * f2 / f2.max() if len(f2) else f2


def _intensity(s: np.ndarray, rel: np.ndarray, thickness: float, shape: str) -> np.ndarray:
    """``rel * shape_factor(s)`` (rel broadcasts against s's last axis)."""
    if shape == "sinc2":
        intensity = _sinc2(thickness * s)
        intensity *= rel
        return intensity
    return rel * shape_factor(s, thickness, shape)
