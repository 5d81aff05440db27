"""Compiled (Numba) filters of a 2-D image, the same bits as :mod:`scipy.ndimage`'s.

:func:`gaussian_filter` is ``scipy.ndimage.gaussian_filter(image, sigma)`` of a 2-D float64
image (mode "reflect", ``truncate`` 4): the same kernel and, per pixel, the same operations in
the same order (scipy's loop for a symmetric kernel: the centre tap, then each pair of taps
from the outermost in, ``acc += (left + right) * w``), so the same bits (tests compare them).
Each pass runs along contiguous rows (the second one on the transpose): 2.7x faster than
scipy on a 128 px pattern at sigma 3 (0.13 against 0.35 ms). Finding a pattern's direct beam
and its spots blurs every pattern of a scan.

:func:`maximum_filter`, :func:`minimum_filter` and :func:`grey_opening` are scipy's of the same
names for a square window of odd ``size`` in modes "reflect" or "nearest" (for a minimum or a
maximum both give the window cut at the image's edge): van Herk / Gil-Werman (running extremes
over blocks of ``size`` rows, three comparisons a pixel whatever the size), exact as every
extreme is; 2.5x faster than scipy for a spot finder's opening (11 px) and maximum (7 px) on a
128 px image (0.25 against 0.62 ms).

:func:`group_medians` is the median of the values of each group (a pattern's one-pixel rings
around its direct beam: :func:`edorient.indexing.preprocess.radial_background`): the values
bucketed by group in one pass and each bucket's middle found by quickselect, instead of one
sort of every value.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f8, _i8 = nb.float64, nb.int64


@njit(_i8(_i8, _i8))
def _reflect(i, n):
    """scipy's "reflect" index (``d c b a | a b c d | d c b a``) of ``i`` on ``n`` samples."""
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


@njit(nb.void(_f8[:, ::1], _f8[::1], _f8[:, ::1]))
def _blur_axis0(src, w, out):
    """``out`` = ``src`` correlated along axis 0 with the symmetric kernel whose centre and right
    half are ``w`` (reflected edges)."""
    n, m = src.shape
    r = len(w) - 1
    for i in range(n):
        for k in range(m):
            out[i, k] = src[i, k] * w[0]
        for j in range(r, 0, -1):
            a, b, wj = _reflect(i - j, n), _reflect(i + j, n), w[j]
            for k in range(m):
                out[i, k] += (src[a, k] + src[b, k]) * wj


@njit(nb.void(_f8[:, ::1], _i8, nb.boolean, _f8[:, ::1]))
def _extreme_axis0(src, h, take_max, out):
    """``out[i]`` = the maximum (``take_max``) or minimum of ``src``'s rows ``i - h`` to ``i + h``
    (those on the image), column by column: van Herk / Gil-Werman over blocks of 2h + 1 rows."""
    n, m = src.shape
    k = 2 * h + 1
    N = n + 2 * h
    pad = -np.inf if take_max else np.inf
    pre = np.empty((N, m))  # extreme from its block's start to the row
    suf = np.empty((N, m))  # extreme from the row to its block's end
    for i in range(N):
        j = i - h
        inside = 0 <= j < n
        for c in range(m):
            v = src[j, c] if inside else pad
            if i % k != 0:
                v = max(pre[i - 1, c], v) if take_max else min(pre[i - 1, c], v)
            pre[i, c] = v
    for i in range(N - 1, -1, -1):
        j = i - h
        inside = 0 <= j < n
        for c in range(m):
            v = src[j, c] if inside else pad
            if i % k != k - 1 and i != N - 1:
                v = max(suf[i + 1, c], v) if take_max else min(suf[i + 1, c], v)
            suf[i, c] = v
    for i in range(n):
        for c in range(m):
            out[i, c] = max(suf[i, c], pre[i + 2 * h, c]) if take_max else min(suf[i, c], pre[i + 2 * h, c])


def _extreme(image: np.ndarray, size: int, take_max: bool) -> np.ndarray:
    x = np.ascontiguousarray(image, dtype=np.float64)
    if x.ndim != 2 or int(size) < 1 or int(size) % 2 == 0:
        raise ValueError(f"takes a 2-D image and an odd window size, got shape {x.shape} and size {size}")
    h = int(size) // 2
    return _both_axes(x, lambda src, out: _extreme_axis0(src, h, take_max, out))


def _both_axes(x: np.ndarray, along_axis0) -> np.ndarray:
    """A separable filter of ``x`` (C-contiguous float64): ``along_axis0(src, out)`` along its
    rows, then again on the transpose (contiguous rows both times)."""
    rows = np.empty_like(x)
    along_axis0(x, rows)
    t = np.ascontiguousarray(rows.T)
    out = np.empty_like(t)
    along_axis0(t, out)
    return np.ascontiguousarray(out.T)


def maximum_filter(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(image, size)`` (mode "reflect" or "nearest") of a 2-D
    image in float64, ``size`` odd."""
    return _extreme(image, size, True)


def minimum_filter(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.minimum_filter(image, size)`` (mode "reflect" or "nearest") of a 2-D
    image in float64, ``size`` odd."""
    return _extreme(image, size, False)


def grey_opening(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.grey_opening(image, size=(size, size))`` of a 2-D image in float64,
    ``size`` odd."""
    return maximum_filter(minimum_filter(image, size), size)


def gaussian_kernel_half(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The centre and right half of scipy's normalised Gaussian kernel of ``sigma`` (radius
    ``int(truncate * sigma + 0.5)``), computed as scipy computes it."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[radius:])


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma)`` of a 2-D image, in float64 (see the module
    docstring); ``sigma`` > 0."""
    x = np.ascontiguousarray(image, dtype=np.float64)
    if x.ndim != 2 or not sigma > 0:
        raise ValueError(f"gaussian_filter takes a 2-D image and sigma > 0, got shape {x.shape} and sigma {sigma}")
    w = gaussian_kernel_half(sigma)
    return _both_axes(x, lambda src, out: _blur_axis0(src, w, out))


@njit(_f8(_f8[::1], _i8, _i8, _i8))
def _select(a, lo, hi, k):
    """The k-th smallest of ``a[lo:hi]`` (``a`` reordered in place: quickselect, middle pivot)."""
    hi -= 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(nb.types.UniTuple(_f8, 2)(_f8[::1], _i8))
def order_pair(values, k):
    """(the k-th and the (k + 1)-th smallest of finite ``values``, not modified; the k-th twice
    where it is the last). The values are counted into up to 16,384 bins of equal width between
    their extremes (a bin index never decreases as the value grows, so a bin holds a run of the
    sorted values); only the bin that holds rank k is selected from (quickselect), the next rank
    being the least value above it in that bin or the least of the next non-empty one. On a
    pattern's 16,000 values: 80 us, against 230 us for numpy's partition of them all or a
    quickselect, whose comparisons the processor cannot predict (fewer bins leave more to select
    from: 1,024 bins, 230 us; two rounds of 1,024, 160 us)."""
    n = len(values)
    mn, mx = values[0], values[0]
    for v in values:
        mn = min(mn, v)
        mx = max(mx, v)
    if mn == mx:
        return mn, mn
    bins = min(16384, n)
    scale = bins / (mx - mn)
    counts = np.zeros(bins, dtype=np.int64)
    for v in values:
        counts[min(np.int64((v - mn) * scale), bins - 1)] += 1
    below, b = 0, 0  # b: the bin holding rank k; below: how many values lie in the bins before it
    while below + counts[b] <= k:
        below += counts[b]
        b += 1
    c = counts[b]
    nxt = b + 1  # the next non-empty bin, where rank k + 1 lies if it is not in b
    while nxt < bins and counts[nxt] == 0:
        nxt += 1
    bucket = np.empty(c)
    fill = 0
    nxt_min = mx
    for v in values:
        j = min(np.int64((v - mn) * scale), bins - 1)
        if j == b:
            bucket[fill] = v
            fill += 1
        elif j == nxt:
            nxt_min = min(nxt_min, v)
    lo = _select(bucket, 0, c, k - below)
    if k - below + 1 < c:  # rank k + 1 in the same bin: the least of what the selection left above
        hi = bucket[k - below + 1]
        for q in range(k - below + 2, c):
            hi = min(hi, bucket[q])
        return lo, hi
    return lo, (nxt_min if nxt < bins else lo)


@njit(_f8[::1](_i8[::1], _f8[::1], _i8))
def group_medians(groups, values, n):
    """(n,) the median of ``values`` whose ``groups`` (0 to n - 1) is each group (the mean of the
    two middle values where a group has an even count; NaN where it has none). Finite values."""
    counts = np.zeros(n, dtype=np.int64)
    for g in groups:
        counts[g] += 1
    starts = np.zeros(n + 1, dtype=np.int64)
    for g in range(n):
        starts[g + 1] = starts[g] + counts[g]
    fill = starts[:n].copy()
    bucket = np.empty(len(values))
    for i in range(len(values)):
        g = groups[i]
        bucket[fill[g]] = values[i]
        fill[g] += 1
    out = np.full(n, np.nan)
    for g in range(n):
        c = counts[g]
        if c:
            a, b = starts[g], starts[g + 1]
            lo, hi = order_pair(bucket[a:b], (c - 1) // 2)
            out[g] = 0.5 * (lo + (lo if c % 2 else hi))
    return out
