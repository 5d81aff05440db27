"""Compiled (Numba) steps of a detector pattern's preprocessing, the same bits as the numpy and
scipy code they replace (the tests compare them).

The map prepares every pattern of a scan (:func:`edorient.indexing.preprocess.preprocess`,
:func:`edorient.io.images.resample_to_model`); on a 128 px pattern each of these steps was a
few whole-image numpy passes and their calls:

- :func:`radii`: every pixel's distance from the direct beam, ``np.hypot`` of the row and
  column offsets (the same C ``hypot``, one loop: 0.11 against 0.16 ms); :func:`radii_rings`
  with each rounded to its one-pixel ring;
- the passes of :func:`~edorient.indexing.preprocess.preprocess` between its order statistics,
  each fusing a few numpy steps and the gathering of the values the next median or percentile
  reads: :func:`subtract_rings` (the ring medians subtracted), :func:`count_dark` (the beam-stop
  search's dark pixels, counted before any labelling), :func:`floor_noise` (the noise floor),
  :func:`clear_beam` (the direct beam's disc);
- :func:`flat_windows`: where the 5 x 5 window around a pixel is constant (the window reflected
  at the border as scipy's filters reflect it), from runs of equal neighbours;
- :func:`connected_to`: the 4-connected regions of a boolean image that hold a seed pixel, the
  regions ``scipy.ndimage.label`` finds with its default structure, by a flood fill from the
  seeds (the direct beam's blob, found on every pattern);
- :func:`bilinear_grid`: an image sampled on a grid of rows and columns by linear interpolation
  along each axis in turn (:func:`edorient.io.images.resample_to_model`), the two ``np.take``
  passes it replaced with each sample's products and sum in their order (the tests keep those
  passes as the reference); :func:`blurred_bilinear_grid` the same of the image low-passed, the
  blur computed only where the samples read it (a large frame shrunk onto the working frame);
- :func:`median3_nearest` (scipy's 3 x 3 median filter, edges repeated) and
  :func:`bright_spike_scan` (hot pixels decided from the brightest pixels down, each from its own
  neighbourhood): :func:`edorient.indexing.preprocess.bright_spikes` on a large frame.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from edorient._filter_kernels import _reflect
from edorient._utils.jit import njit

_f8, _i8, _b1 = nb.float64, nb.int64, nb.boolean


@njit(_f8[:, ::1](_i8, _i8, _f8, _f8))
def radii(h, w, r0, c0):
    """(h, w): ``np.hypot(row - r0, col - c0)`` of every pixel."""
    out = np.empty((h, w))
    for i in range(h):
        a = np.float64(i) - r0
        for j in range(w):
            out[i, j] = math.hypot(a, np.float64(j) - c0)
    return out


@njit(nb.types.Tuple((_f8[:, ::1], _i8[:, ::1]))(_i8, _i8, _f8, _f8))
def radii_rings(h, w, r0, c0):
    """(:func:`radii`, each rounded to its one-pixel ring as ``np.round(r).astype(int64)``)."""
    r = radii(h, w, r0, c0)
    rings = np.empty((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            rings[i, j] = np.int64(np.round(r[i, j]))
    return r, rings


@njit(nb.types.Tuple((_f8[:, ::1], _f8[::1]))(_f8[:, ::1], _f8[::1], _i8[:, ::1], _f8[:, ::1], _b1[:, ::1], _f8))
def subtract_rings(x, profile, rings, r, mask, inner):
    """(``x - profile[rings]``, its values at the valid pixels farther than ``inner`` from the
    centre, in row-major order): the background-subtracted pattern and the values whose median
    is its noise floor, in one pass."""
    h, w = x.shape
    y = np.empty((h, w))
    far = np.empty(h * w)
    n = 0
    for i in range(h):
        for j in range(w):
            v = x[i, j] - profile[rings[i, j]]
            y[i, j] = v
            if mask[i, j] and r[i, j] > inner:
                far[n] = v
                n += 1
    return y, far[:n]


@njit(_i8(_f8[:, ::1], _f8, _b1[:, ::1], _f8[:, ::1], _f8))
def count_dark(y, below, mask, r, flank):
    """How many valid pixels farther than ``flank`` from the centre lie below ``below``."""
    h, w = y.shape
    n = 0
    for i in range(h):
        for j in range(w):
            if y[i, j] < below and mask[i, j] and not r[i, j] <= flank:
                n += 1
    return n


@njit(nb.void(_f8[:, ::1], _f8, _b1[:, ::1]))
def floor_noise(y, floor, mask):
    """In place: ``y = clip(y - floor, 0, None)``, then 0 where not ``mask``."""
    h, w = y.shape
    for i in range(h):
        for j in range(w):
            v = y[i, j] - floor
            y[i, j] = (v if v >= 0.0 else 0.0) if mask[i, j] else 0.0


@njit(_f8[::1](_f8[:, ::1], _f8[:, ::1], _f8, _b1[:, ::1], _f8))
def clear_beam(y, r, beam_r, mask, inner):
    """In place: ``y`` = 0 within ``beam_r`` of the centre; returns its values at the valid
    pixels farther than ``inner`` (row-major), whose high percentile normalises the pattern."""
    h, w = y.shape
    out = np.empty(h * w)
    n = 0
    for i in range(h):
        for j in range(w):
            if r[i, j] <= beam_r:
                y[i, j] = 0.0
            if mask[i, j] and r[i, j] > inner:
                out[n] = y[i, j]
                n += 1
    return out[:n]


@njit(_b1[:, ::1](_f8[:, ::1], _i8))
def flat_windows(image, half):
    """(h, w) bool: True where the (2 half + 1)² window around the pixel (reflected at the
    border) holds one value (``maximum_filter - minimum_filter == 0``; finite images): its 2 half
    + 1 rows each constant, and their middle column constant. A row of the window is constant
    where the run of equal neighbours along the reflected row that ends at its last pixel is long
    enough (and the rows and the column likewise), so every pixel costs the same few steps, on
    noise as on a flat ground: 80 us a 128 px pattern (comparing each window with its pixel up
    to the first difference: 110 us on noise, 1 ms on an empty pattern)."""
    h, w = image.shape
    k = 2 * half + 1
    ph, pw = h + 2 * half, w + 2 * half
    ri = np.empty(ph, dtype=np.int64)
    ci = np.empty(pw, dtype=np.int64)
    for p in range(ph):
        ri[p] = _reflect(p - half, h)
    for p in range(pw):
        ci[p] = _reflect(p - half, w)
    rows_ok = np.ones((ph, w), dtype=np.bool_)  # padded row p constant over columns j .. j + k - 1
    for p in range(ph):
        src = image[ri[p]]
        run = 0
        for c in range(1, pw):  # run: equal neighbour pairs ending at padded column c
            run = (run + 1) * (src[ci[c]] == src[ci[c - 1]])
            if c >= k - 1:
                rows_ok[p, c - k + 1] = run >= k - 1
    out = np.empty((h, w), dtype=np.bool_)
    run_rows = np.zeros(w, dtype=np.int64)  # per column: constant rows ending at padded row p
    run_col = np.zeros(w, dtype=np.int64)  # per column: equal pairs down its middle column ending at p
    for p in range(ph):
        row, prev = image[ri[p]], image[ri[max(p - 1, 0)]]
        for j in range(w):
            run_rows[j] = (run_rows[j] + 1) * rows_ok[p, j]
            col = ci[j + half]
            run_col[j] = (run_col[j] + 1) * (row[col] == prev[col]) if p else 0
            if p >= k - 1:
                out[p - k + 1, j] = run_rows[j] >= k and run_col[j] >= k - 1
    return out


@njit(_b1[:, ::1](_b1[:, ::1], _b1[:, ::1]))
def connected_to(inside, seeds):
    """(h, w) bool: the pixels of ``inside`` 4-connected (through ``inside``) to a pixel of
    ``seeds & inside``."""
    h, w = inside.shape
    out = np.zeros((h, w), dtype=np.bool_)
    stack = np.empty(h * w, dtype=np.int64)
    top = 0
    for i in range(h):
        for j in range(w):
            if seeds[i, j] and inside[i, j] and not out[i, j]:
                out[i, j] = True
                stack[top] = i * w + j
                top += 1
    while top:
        top -= 1
        i, j = divmod(stack[top], w)
        for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            if 0 <= a < h and 0 <= b < w and inside[a, b] and not out[a, b]:
                out[a, b] = True
                stack[top] = a * w + b
                top += 1
    return out


@njit(nb.float32[:, ::1](_f8[:, ::1], _i8[::1], _f8[::1], _f8[::1], _i8[::1], _f8[::1], _f8[::1]))
def bilinear_grid(src, rlo, rw, rf, clo, cw, cf):
    """(len(rlo), len(clo)) float32: ``src`` interpolated along rows at ``rlo`` (weights ``rw`` on
    row ``rlo``, ``rf`` on the next, clipped to the last), then along columns the same way."""
    h, w = src.shape
    nr, nc = len(rlo), len(clo)
    tmp = np.empty((nr, w))
    for i in range(nr):
        a, b = rlo[i], min(rlo[i] + 1, h - 1)
        for k in range(w):
            tmp[i, k] = src[a, k] * rw[i] + src[b, k] * rf[i]
    out = np.empty((nr, nc), dtype=np.float32)
    for i in range(nr):
        for j in range(nc):
            a, b = clo[j], min(clo[j] + 1, w - 1)
            out[i, j] = np.float32(tmp[i, a] * cw[j] + tmp[i, b] * cf[j])
    return out


@njit(nb.types.Tuple((_i8[:, ::1], _f8[:, ::1]))(_i8[::1], _f8[::1], _f8[::1], _i8, _f8[::1]))
def _blur_sample_taps(lo, wlo, whi, n, half):
    """For each sample (its lower neighbour ``lo``, the weights ``wlo`` on it and ``whi`` on the
    next, clipped to the last of ``n``), the source indices and weights of the Gaussian-blurred
    signal (``half``: the kernel's centre and right half, edges reflected) interpolated there."""
    r = len(half) - 1
    m = len(lo)
    idx = np.empty((m, 2 * r + 2), np.int64)
    wt = np.zeros((m, 2 * r + 2))
    for i in range(m):
        a, b = lo[i], min(lo[i] + 1, n - 1)
        for k in range(2 * r + 2):
            d = a - r + k  # (the taps of a and of b, which is a or a + 1, within a - r .. a + r + 1)
            idx[i, k] = _reflect(d, n)
            v = 0.0
            if abs(d - a) <= r:
                v += wlo[i] * half[abs(d - a)]
            if abs(d - b) <= r:
                v += whi[i] * half[abs(d - b)]
            wt[i, k] = v
    return idx, wt


@njit(nb.float32[:, ::1](_f8[:, ::1], _f8[::1], _i8[::1], _f8[::1], _f8[::1], _i8[::1], _f8[::1], _f8[::1]))
def blurred_bilinear_grid(src, half, rlo, rw, rf, clo, cw, cf):
    """:func:`bilinear_grid` of ``src`` blurred by the Gaussian whose kernel's centre and right
    half are ``half`` (scipy's "reflect" edges), the blur computed only where the samples read it:
    each sample's rows combined with the kernel's and the interpolation's weights, then its
    columns. The same values as blurring the whole image first (``scipy.ndimage.gaussian_filter``)
    to rounding (~1e-16 relative), 10-20x fewer operations when a large frame is shrunk onto a
    small one."""
    h, w = src.shape
    nr, nc = len(rlo), len(clo)
    ri, rwt = _blur_sample_taps(rlo, rw, rf, h, half)
    ci, cwt = _blur_sample_taps(clo, cw, cf, w, half)
    tmp = np.zeros((nr, w))
    for i in range(nr):
        t = tmp[i]
        for k in range(ri.shape[1]):
            g = rwt[i, k]
            if g != 0.0:
                row = src[ri[i, k]]
                for j in range(w):
                    t[j] += g * row[j]
    out = np.empty((nr, nc), dtype=np.float32)
    for i in range(nr):
        for j in range(nc):
            acc = 0.0
            for k in range(ci.shape[1]):
                acc += cwt[j, k] * tmp[i, ci[j, k]]
            out[i, j] = np.float32(acc)
    return out


@njit(_f8(_f8, _f8, _f8))
def _med3(a, b, c):
    return max(min(a, b), min(max(a, b), c))


@njit(_f8[:, ::1](_f8[:, ::1]))
def median3_nearest(x):
    """``scipy.ndimage.median_filter(x, size=3, mode="nearest")`` (the edge pixels repeated past
    the border): each column's three values sorted, the window's median is the median of the
    largest of its three smallest, the median of its three middles and the smallest of its three
    largest (an order statistic of the same values: the same value)."""
    h, w = x.shape
    out = np.empty((h, w))
    lo, mid, hi = np.empty(w), np.empty(w), np.empty(w)
    for r in range(h):
        up, down = x[max(r - 1, 0)], x[min(r + 1, h - 1)]
        row = x[r]
        for c in range(w):
            a, b, d = up[c], row[c], down[c]
            lo[c] = min(min(a, b), d)
            hi[c] = max(max(a, b), d)
            mid[c] = _med3(a, b, d)
        o = out[r]
        for c in range(w):
            cl, cr = max(c - 1, 0), min(c + 1, w - 1)
            o[c] = _med3(max(max(lo[cl], lo[c]), lo[cr]), _med3(mid[cl], mid[c], mid[cr]),
                         min(min(hi[cl], hi[c]), hi[cr]))
    return out


@njit(_f8(_f8[:, ::1], _i8, _i8))
def _median5_nearest_at(x, r, c):
    """The 5 x 5 median of ``x`` at (r, c) as ``median_filter(x, 5, mode="nearest")`` has it."""
    h, w = x.shape
    buf = np.empty(25)
    n = 0
    for dr in range(-2, 3):
        rr = min(max(r + dr, 0), h - 1)
        for dc in range(-2, 3):
            buf[n] = x[rr, min(max(c + dc, 0), w - 1)]
            n += 1
    buf.sort()
    return buf[12]


@njit(_b1(_f8[:, ::1], _i8, _i8, _f8, _f8, _f8, nb.int8[:, ::1]))
def _spike_candidate(x, r, c, noise, ratio, sigmas, cand):
    """Whether (r, c) is a spike candidate (``_spikes``' ``cand``), computed once (``cand``: 0
    unknown, 1 yes, 2 no)."""
    if cand[r, c] == 0:
        v = x[r, c]
        ok = False
        if v > 0:
            loc = _median5_nearest_at(x, r, c)
            ok = v > ratio * max(loc, 0.0) and v - loc > sigmas * noise
        cand[r, c] = 1 if ok else 2
    return cand[r, c] == 1


@njit(_b1(_f8[:, ::1], _i8, _i8, _f8, _f8, _f8, _i8, nb.int8[:, ::1], nb.int8[:, ::1]))
def _spike_at(x, r, c, noise, ratio, sigmas, max_cluster, cand, status):
    """Whether (r, c) belongs to a spike (``_spikes``' definition), from its cluster alone: the
    8-connected candidates around it, grown until more than ``max_cluster``; ``status`` (0
    unknown, 1 spike, 2 not) keeps each cluster's answer."""
    if status[r, c] == 0:
        h, w = x.shape
        if not _spike_candidate(x, r, c, noise, ratio, sigmas, cand):
            status[r, c] = 2
            return False
        rows = np.empty(max_cluster + 1, np.int64)
        cols = np.empty(max_cluster + 1, np.int64)
        rows[0], cols[0] = r, c
        n, head, big = 1, 0, False
        ring = -np.inf
        while head < n and not big:
            pr, pc = rows[head], cols[head]
            head += 1
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    qr, qc = pr + dr, pc + dc
                    if (dr == 0 and dc == 0) or qr < 0 or qr >= h or qc < 0 or qc >= w:
                        continue
                    if _spike_candidate(x, qr, qc, noise, ratio, sigmas, cand):
                        seen = False
                        for k in range(n):
                            if rows[k] == qr and cols[k] == qc:
                                seen = True
                                break
                        if not seen:
                            if n > max_cluster:
                                big = True
                                break
                            rows[n], cols[n] = qr, qc
                            n += 1
                    elif x[qr, qc] > ring:
                        ring = x[qr, qc]
                if big:
                    break
        big = big or n > max_cluster
        keep = False
        if not big:
            low = np.inf
            for k in range(n):
                low = min(low, x[rows[k], cols[k]])
            keep = ring == -np.inf or low > ratio * max(ring, 0.0)
        for k in range(n):
            status[rows[k], cols[k]] = 1 if keep else 2
    return status[r, c] == 1


@njit(nb.types.Tuple((_b1[:, ::1], _f8, _b1))(_f8[:, ::1], _i8[::1], _f8, _f8, _f8, _i8))
def bright_spike_scan(x, order, noise, ratio, sigmas, max_cluster):
    """:func:`~edorient.indexing.preprocess.bright_spikes` from the brightest pixels down: (the
    spikes at least half as bright as the brightest pixel that is not one, that pixel's value
    (NaN: none among ``order``), whether the scan got below half of it). ``order``: flat indices
    of pixels in descending order of value; each one's spike status is decided from its own
    cluster and neighbourhood (``_spikes``' definition, its 5 x 5 medians computed only there).
    Incomplete (the caller takes the whole image then) where ``order`` ends first."""
    h, w = x.shape
    cand = np.zeros((h, w), np.int8)
    status = np.zeros((h, w), np.int8)
    out = np.zeros((h, w), np.bool_)
    top = np.nan
    found = False
    for i in order:
        r, c = i // w, i % w
        v = x[r, c]
        if found and v < 0.5 * top:
            return out, top, True
        if _spike_at(x, r, c, noise, ratio, sigmas, max_cluster, cand, status):
            out[r, c] = True
        elif not found:
            top, found = v, True
    return out, top, False
