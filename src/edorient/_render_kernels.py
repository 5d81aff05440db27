"""Compiled (Numba) kernels of :mod:`edorient.render`: Gaussian spots summed on an image.

Private: :func:`edorient.render.render_spots` and :meth:`Simulator.linear_images
<edorient.render.Simulator.linear_images>` are the public entry points; they check and prepare
the arguments (pixel coordinates, C-contiguous float arrays) and call these. Kernels follow one
layout: ``_render_single`` draws one image, ``_render_2d`` loops it over images whose spots are
stored one image after another, and a Python wrapper (``render._render_batch``) does the rest.
Signatures are explicit and compiled code is cached (``cache=True``, see
:mod:`edorient._utils.jit`): importing this module
takes about a second once cached (numba itself), several seconds the first time;
:mod:`edorient.render` imports it only when it first draws.

``_render_2d`` is serial on purpose: data-set generation runs one process per core, and a
serial kernel gives the same bits whatever the number of threads.

A spot at sub-pixel ``(r, c)`` with peak ``I`` adds ``I exp(-((y-r)² + (x-c)²) / (2 σ²))`` to
the pixels ``|y - rint(r)| <= h``, ``|x - rint(c)| <= h`` that lie on the image, ``h`` being the
half-width beyond which the Gaussian is below float32's epsilon; spots whose centre lies more
than ``margin`` pixels off the image are left out. The two factors are computed in float64 and
each product is added to the float32 image; the direct beam (if its peak is not 0) is drawn
first, then the spots in their order.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f8, _i8 = nb.float64, nb.int64
_SIG_SPOT = nb.void(nb.float32[:, ::1], _f8, _f8, _f8, _f8, _i8, _f8, _f8[::1], _f8[::1])
_SIG_SINGLE = nb.void(_f8[::1], _f8[::1], _f8[::1], _f8, _f8, _f8, _f8, _i8, _f8, nb.float32[:, ::1])
_SIG_2D = nb.void(
    _i8[::1], _f8[::1], _f8[::1], _f8[::1], _f8, _f8, _f8, _f8, _i8, _f8, nb.float32[:, :, ::1]
)


@njit(nb.void(_f8, _i8, _f8, _f8, _f8[::1]))
def _gaussian_row(d0, m, peak, inv, g):  # pragma: no cover - compiled
    """``g[j] = peak exp(-(d0 + j)² inv)`` for j < m, with three ``exp`` instead of m.

    ``g[j + 1] = g[j] q[j]`` with ``q[j] = exp(-inv (2 (d0 + j) + 1))`` and
    ``q[j + 1] = q[j] exp(-2 inv)``: m <= 2h + 1 products (15 at σ = 1.2) add a few float64
    roundings (~1e-15 relative), far below the float32 image's precision.
    """
    v = peak * math.exp(-d0 * d0 * inv)
    q = math.exp(-inv * (2.0 * d0 + 1.0))
    w = math.exp(-2.0 * inv)
    for j in range(m):
        g[j] = v
        v *= q
        q *= w


@njit(_SIG_SPOT)
def _add_spot(out, r, c, peak, inv, h, margin, gy, gx):  # pragma: no cover - compiled
    """Add one spot (centre ``(r, c)`` pixels, ``inv = 1 / (2 σ²)``) to ``out``."""
    height, width = out.shape
    if not (-margin < r < height - 1 + margin and -margin < c < width - 1 + margin):
        return
    r0, c0 = int(np.rint(r)), int(np.rint(c))
    ylo, yhi = max(r0 - h, 0), min(r0 + h, height - 1)
    xlo, xhi = max(c0 - h, 0), min(c0 + h, width - 1)
    _gaussian_row(ylo - r, yhi - ylo + 1, peak, inv, gy)
    _gaussian_row(xlo - c, xhi - xlo + 1, 1.0, inv, gx)
    for y in range(ylo, yhi + 1):
        a = gy[y - ylo]
        row = out[y]
        for x in range(xlo, xhi + 1):
            row[x] += np.float32(a * gx[x - xlo])


@njit(_SIG_SINGLE)
def _render_single(rows, cols, intensity, beam_row, beam_col, beam, sigma, h, margin, out):  # pragma: no cover
    """Zero ``out`` (H, W), draw the direct beam (peak ``beam``), then the spots."""
    out[:, :] = 0.0
    inv = 1.0 / (2.0 * sigma * sigma)
    gy = np.empty(2 * h + 1)
    gx = np.empty(2 * h + 1)
    if beam != 0.0:
        _add_spot(out, beam_row, beam_col, beam, inv, h, margin, gy, gx)
    for k in range(rows.shape[0]):
        _add_spot(out, rows[k], cols[k], intensity[k], inv, h, margin, gy, gx)


@njit(_SIG_2D)
def _render_2d(starts, rows, cols, intensity, beam_row, beam_col, beam, sigma, h, margin, out):  # pragma: no cover
    """Image ``i`` of ``out`` (n, H, W) gets the spots ``starts[i]:starts[i + 1]``."""
    for i in range(out.shape[0]):
        lo, hi = starts[i], starts[i + 1]
        _render_single(
            rows[lo:hi], cols[lo:hi], intensity[lo:hi], beam_row, beam_col, beam, sigma, h, margin, out[i]
        )


_SIG_PRE = nb.void(nb.float32[::1], nb.float32)
_SIG_POST = nb.void(nb.float32[::1], nb.float32)

# The display kernels work in place on one array: with an input and an output that may
# overlap, LLVM keeps a scalar loop (measured 3x slower), with one array it vectorises.


@njit(_SIG_PRE)
def _display_pre(values, gain):  # pragma: no cover - compiled
    """``values = 1 + gain * clip(values, 0, 1)`` in place (float32; NaN stays NaN): before the log."""
    for i in range(values.shape[0]):
        v = values[i]
        if v > np.float32(1.0):
            v = np.float32(1.0)
        if v < np.float32(0.0):
            v = np.float32(0.0)
        values[i] = np.float32(1.0) + gain * v


@njit(_SIG_POST)
def _display_post(values, den):  # pragma: no cover - compiled
    """``values = min(values / den, 1)`` in place (float32; NaN stays NaN): after the log."""
    for i in range(values.shape[0]):
        v = values[i] / den
        if v > np.float32(1.0):
            v = np.float32(1.0)
        values[i] = v
