"""Compiled (Numba) kernels of :mod:`edorient.physics.pattern`: the excited spots.

Private: :class:`ExcitationBounds <edorient.physics.pattern.ExcitationBounds>`' ``spots`` and
``pairs`` are the entry points; they pass C-contiguous float64 arrays and interpret the result.
``_excited_single`` handles one orientation, ``_excited_2d`` loops it over many, writing into
caller-owned buffers; both return the number of spots, or -1 when the buffers are too small
(the caller then grows them and calls again). Serial on purpose (same bits on any number of
threads; data generation runs one process per core); signatures explicit, code cached.

For orientation ``R`` (rows: lab x, y, z of the crystal's reciprocal vectors) and each
reflection ``j`` that can be excited at all (``possible``), the candidate test of
``ExcitationBounds`` is ``|[R_z, 1] . scaled_t[:, j]| <= 1``; a candidate gets
``s = g . R_z - λ|g|²/2``, intensity ``rel * shape(t s)`` (sinc² or ``exp(-π (t s)²)``) in
float64, and, if the intensity reaches ``min_intensity``, its detector position
``(g . R_x, g . R_y)``. Spots come out in order of orientation, then reflection.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f8, _i8 = nb.float64, nb.int64
_SINC2, _GAUSSIAN = 0, 1

_SIG_SHAPE = _f8(_f8, _i8)
_SIG_SINGLE = _i8(
    _f8[:, ::1], _f8[:, ::1], _i8[::1], _f8[:, ::1], _f8[::1], _f8[::1], _f8, _i8, _f8,
    _i8, _i8, _i8[::1], _i8[::1], _f8[:, ::1], _f8[::1], _f8[::1],
)
_SIG_2D = _i8(
    _f8[:, :, ::1], _f8[:, ::1], _i8[::1], _f8[:, ::1], _f8[::1], _f8[::1], _f8, _i8, _f8,
    _i8[::1], _i8[::1], _f8[:, ::1], _f8[::1], _f8[::1],
)


@njit(_SIG_SHAPE)
def _shape(x, shape):  # pragma: no cover - compiled
    """Shape factor of ``x = t s``: ``sinc²(x)`` (shape 0) or ``exp(-π x²)`` (shape 1)."""
    if shape == _GAUSSIAN:
        return math.exp(-math.pi * x * x)
    if abs(x) < 1e-30:
        return 1.0
    r = x - np.rint(x)  # sin²(π x) = sin²(π r), r in [-1/2, 1/2], exact
    v = math.sin(math.pi * r) / (math.pi * x)
    return v * v


@njit(_SIG_SINGLE)
def _excited_single(
    R, scaled_t, possible, gv, half_lg2, rel, thickness, shape, min_intensity,
    image, start, out_img, out_ref, out_pos, out_s, out_inten,
):  # pragma: no cover - compiled
    """Excited spots of rotation ``R`` (3, 3) appended at ``start``; returns the new count."""
    zx, zy, zz = R[2, 0], R[2, 1], R[2, 2]
    n = start
    cap = out_img.shape[0]
    for j in range(possible.shape[0]):
        x = zx * scaled_t[0, j] + zy * scaled_t[1, j] + zz * scaled_t[2, j] + scaled_t[3, j]
        if abs(x) > 1.0:
            continue
        ref = possible[j]
        g0, g1, g2 = gv[ref, 0], gv[ref, 1], gv[ref, 2]
        s = g0 * zx + g1 * zy + g2 * zz - half_lg2[ref]
        inten = rel[ref] * _shape(thickness * s, shape)
        if not inten >= min_intensity:
            continue
        if n >= cap:
            return -1
        out_img[n] = image
        out_ref[n] = ref
        out_pos[n, 0] = g0 * R[0, 0] + g1 * R[0, 1] + g2 * R[0, 2]
        out_pos[n, 1] = g0 * R[1, 0] + g1 * R[1, 1] + g2 * R[1, 2]
        out_s[n] = s
        out_inten[n] = inten
        n += 1
    return n


@njit(_SIG_2D)
def _excited_2d(
    R, scaled_t, possible, gv, half_lg2, rel, thickness, shape, min_intensity,
    out_img, out_ref, out_pos, out_s, out_inten,
):  # pragma: no cover - compiled
    """Excited spots of rotations ``R`` (n, 3, 3), one orientation after another."""
    n = 0
    for i in range(R.shape[0]):
        n = _excited_single(
            R[i], scaled_t, possible, gv, half_lg2, rel, thickness, shape, min_intensity,
            i, n, out_img, out_ref, out_pos, out_s, out_inten,
        )
        if n < 0:
            return -1
    return n
