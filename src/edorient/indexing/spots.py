"""Spots of a real diffraction pattern and its centre (the direct beam), checked by Friedel symmetry.

:func:`find_spots` finds the diffraction spots: local maxima of the pattern after a background
subtraction (a white top-hat: the image minus its grey opening, so a smooth halo around the
direct beam and a sloping background go, spots stay), refined to sub-pixel by the centroid of
the top-hat above half the spot's peak, with their intensities (the top-hat peak).

:func:`find_centre` finds the direct beam. The brightest blob is only a candidate: in a
selected-area figure the brightest spot may be a diffracted one, and a beam stop may hide the
beam altogether. A kinematic pattern near a zone axis (and any pattern's spot *positions*,
dynamical or not, in the zero-order Laue zone) is centrosymmetric about the direct beam
(Friedel's law, g <-> -g), so every pair of spots votes for its midpoint, and the candidate
whose point reflection maps the most spot intensity onto spots of similar intensity wins. The
centre is then refined by least squares over its matched Friedel pairs (the mean of their
midpoints). An elliptical distortion of the projector lens keeps the point symmetry, so the
centre is unaffected by it.

Coordinates are (row, col) pixels of the image, as everywhere in edorient
(:mod:`edorient.conventions`). numpy and scipy only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from edorient.errors import EdorientError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SpotList:
    """Spots found in an image, brightest first.

    Attributes
    ----------
    positions
        (n, 2) sub-pixel (row, col) positions.
    intensity
        (n,) peak height above the local background (image units).
    background_px
        Size (pixels) of the structuring element of the background subtraction.
    """

    positions: np.ndarray
    intensity: np.ndarray
    background_px: int

    def __len__(self) -> int:
        return len(self.intensity)


@dataclass(frozen=True)
class CentreResult:
    """The direct beam of a pattern.

    Attributes
    ----------
    row, col
        Sub-pixel position of the direct beam (pixels of the image).
    symmetry_score
        Fraction of the spot intensity whose Friedel partner (the point reflection through the
        centre) lands on a spot, among the spots whose partner falls inside the valid image:
        1 for a perfectly centrosymmetric pattern.
    n_pairs
        Friedel pairs matched (a spot on the centre itself, the unmasked direct beam, is not
        a pair).
    ok
        Whether the symmetry check passed (enough pairs, a high enough score).
    note
        One line: how the centre was found, and why the check failed if it did.
    method
        ``"friedel"`` (refined from Friedel pairs), ``"blob"`` (the brightest blob, kept when
        the pairs do not decide) or ``"guess"`` (the given guess, refined).
    """

    row: float
    col: float
    symmetry_score: float
    n_pairs: int
    ok: bool
    note: str
    method: str = "friedel"

    @property
    def centre(self) -> tuple[float, float]:
        """(row, col)."""
        return (self.row, self.col)


def _check_image(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise EdorientError(f"expected a 2-D image of at least 8 x 8 pixels, got shape {img.shape}")
    if mask is None:
        valid = np.isfinite(img)
    else:
        valid = np.asarray(mask, dtype=bool)
        if valid.shape != img.shape:
            raise EdorientError(f"the mask's shape {valid.shape} differs from the image's {img.shape}; "
                                "give a boolean mask of the image's shape (True = valid pixel)")
        valid = valid & np.isfinite(img)
    if valid.sum() < 16:
        raise EdorientError("the mask leaves fewer than 16 valid pixels; check it (True = valid pixel)")
    return img, valid


def _auto_background_px(shape: tuple[int, int]) -> int:
    return min(max(int(round(min(shape) / 12)), 7), 31) | 1  # (np.clip of a scalar: 20 us a call)


def find_spots(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    sigma: float = 1.0,
    min_distance: int = 3,
    background_px: int | None = None,
    threshold: float = 6.0,
    max_spots: int = 200,
    edge_px: int = 2,
) -> SpotList:
    """Diffraction spots: local maxima after a background subtraction, to sub-pixel.

    Parameters
    ----------
    image
        2-D intensities (linear counts, or an 8-bit display image).
    mask
        Boolean, True where the pixel is valid (False: beam stop, detector gap, annotation);
        spots within ``min_distance`` of an invalid pixel are dropped (a mask's edge is no spot).
    sigma
        Gaussian smoothing (pixels) before the maxima are searched.
    min_distance
        Smallest distance (pixels) between two spots.
    background_px
        Side (pixels) of the grey opening that estimates the background; a spot narrower than
        it survives the subtraction. Default: min(H, W) / 12 clipped to 7-31 (odd).
    threshold
        A spot's peak must exceed the background-subtracted image's median by ``threshold``
        robust standard deviations (1.4826 MAD), and 2 % of the brightest spot's peak.
    max_spots
        At most this many spots, the brightest.
    edge_px
        Spots closer than this to the image border are dropped.

    Returns
    -------
    SpotList
        Positions (row, col) and peak intensities above the background, brightest first.

    Examples
    --------
    >>> import numpy as np
    >>> rr, cc = np.mgrid[:64, :64]
    >>> img = np.exp(-((rr - 20.3) ** 2 + (cc - 40.6) ** 2) / 4.0) + 0.01
    >>> s = find_spots(img)
    >>> len(s), np.round(s.positions[0], 1).tolist()
    (1, [20.3, 40.6])
    """
    from scipy import ndimage

    from edorient import _filter_kernels as kern
    from edorient._utils import order_stats

    img, valid = _check_image(image, mask)
    bg_px = _auto_background_px(img.shape) if background_px is None else int(background_px)
    if bg_px < 3:
        raise EdorientError(f"background_px must be >= 3 pixels, got {background_px}")
    every = bool(valid.all())  # (a working image: nothing to fill or to clear)
    work = img if every else np.where(valid, img, float(np.median(img[valid])))
    sm = kern.gaussian_filter(work, sigma) if sigma > 0 else work  # (scipy.ndimage's, compiled: the same bits)
    # (compiled where the window is odd, as the default is: scipy's bits, 2.5x faster)
    top = sm - (kern.grey_opening(sm, bg_px) if bg_px % 2 else ndimage.grey_opening(sm, size=(bg_px, bg_px)))
    if not every:
        top[~valid] = 0.0
    tv = top.ravel() if every else top[valid]
    # the top-hat is >= 0 (an opening never exceeds the image); where more than half of it is 0
    # (a sparse pattern's, as every working image of a map), its median and its deviations'
    # median are 0: two sorts of the image saved
    if 2 * np.count_nonzero(tv == 0) > tv.size:
        med, dev = 0.0, 0.0
    else:
        med = float(order_stats.median(tv))
        dev = float(order_stats.median(np.abs(tv - med)))
    mad = 1.4826 * dev + 1e-12 * max(float(np.abs(top).max()), 1e-300)
    size = 2 * int(min_distance) + 1
    peaks = (top == kern.maximum_filter(top, size)) & (top > med + threshold * mad)
    # a mask's edge and the image border make false maxima
    near_invalid = ndimage.binary_dilation(~valid, iterations=max(int(min_distance), 1)) if (~valid).any() else ~valid
    peaks &= ~near_invalid
    e = max(int(edge_px), 0)
    if e:
        peaks[:e], peaks[-e:], peaks[:, :e], peaks[:, -e:] = False, False, False, False
    rows, cols = np.nonzero(peaks)
    if len(rows) == 0:
        return SpotList(np.zeros((0, 2)), np.zeros(0), bg_px)
    height = top[rows, cols]
    keep = height >= 0.02 * height.max()
    rows, cols, height = rows[keep], cols[keep], height[keep]
    # plateaus (saturated spots) give several equal maxima: keep one per min_distance
    order = np.argsort(-height, kind="stable")
    rows, cols, height = rows[order], cols[order], height[order]
    chosen: list[int] = []
    taken = np.zeros(img.shape, dtype=bool)
    for i, (r, c) in enumerate(zip(rows, cols)):
        if taken[r, c]:
            continue
        chosen.append(i)
        if len(chosen) >= max_spots:
            break
        taken[max(r - min_distance, 0) : r + min_distance + 1, max(c - min_distance, 0) : c + min_distance + 1] = True
    rows, cols, height = rows[chosen], cols[chosen], height[chosen]
    pos = _centroids(top, valid, rows, cols, height, max(int(min_distance), 2))
    return SpotList(pos, height.astype(np.float64), bg_px)


def _centroids(top, valid, rows, cols, height, radius) -> np.ndarray:
    """Centroid of ``top`` above half of each spot's peak, in a (2 radius + 1)² window (cut at
    the image border); all spots at once (the windows gathered from a zero-padded copy)."""
    n = len(rows)
    if n == 0:
        return np.zeros((0, 2))
    rows, cols = np.asarray(rows), np.asarray(cols)
    side = 2 * radius + 1
    h, w = top.shape
    tp = np.zeros((h + 2 * radius, w + 2 * radius), dtype=top.dtype)
    tp[radius : radius + h, radius : radius + w] = top
    d = np.arange(side)
    ri = rows[:, None] + d[None, :]  # padded coordinates of each window's rows / columns
    ci = cols[:, None] + d[None, :]
    win = tp[ri[:, :, None], ci[:, None, :]] - 0.5 * np.asarray(height, dtype=np.float64)[:, None, None]
    keep = win > 0  # (outside the image: 0 in the padding, below half of any peak, which is > 0)
    if not valid.all():
        vp = np.zeros(tp.shape, dtype=bool)
        vp[radius : radius + h, radius : radius + w] = valid
        keep &= vp[ri[:, :, None], ci[:, None, :]]
    win = np.where(keep, win, 0.0)
    s = win.sum(axis=(1, 2))
    rr = (ri - radius).astype(np.float64)  # image coordinates
    cc = (ci - radius).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([(win.sum(2) * rr).sum(1) / s, (win.sum(1) * cc).sum(1) / s], 1)
    flat = s <= 0
    out[flat] = np.stack([rows[flat], cols[flat]], 1)
    return out


def spot_fwhm(image: np.ndarray, n: int = 12, near: np.ndarray | None = None, reach: int = 0) -> float | None:
    """The median full width at half maximum (pixels, as the diameter of the area above half the
    peak over its surroundings) of the ``n`` brightest unsaturated spots; None with fewer than 3.
    ``near``: (k, 2) where the spots are, brightest first (found on a binned copy, say; each
    moved to the brightest pixel within ``reach`` pixels of it), instead of a spot search of the
    whole image.

    >>> rr, cc = np.mgrid[:96, :96]
    >>> img = sum(a * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 3.0**2))
    ...           for a, r, c in [(1.0, 48, 48), (0.5, 20, 20), (0.4, 20, 70), (0.3, 70, 45)])
    >>> round(spot_fwhm(100 * img + 1), 1)  # 2.355 sigma = 7.06 (the brightest, saturated, left out)
    6.9
    """
    from scipy import ndimage

    x = np.asarray(image, dtype=np.float64)
    valid = np.isfinite(x)
    x = np.where(valid, x, np.nanmin(x) if valid.any() else 0.0)
    if near is None:
        sp = find_spots(x, valid if not valid.all() else None)
        positions = sp.positions[np.argsort(-sp.intensity)]
    else:
        positions = np.asarray(near, dtype=float).reshape(-1, 2)
    if len(positions) < 3:
        return None
    top = float(x.max())
    widths: list[float] = []
    h, w = x.shape
    dark = _stop_margin(x, valid)
    for r, c in positions:
        ri, ci = min(max(int(round(r)), 0), h - 1), min(max(int(round(c)), 0), w - 1)
        if reach > 0:  # (the brightest pixel near a position found at a coarser scale)
            win = x[max(ri - reach, 0): ri + reach + 1, max(ci - reach, 0): ci + reach + 1]
            dr, dc = np.unravel_index(int(np.argmax(win)), win.shape)
            ri, ci = max(ri - reach, 0) + int(dr), max(ci - reach, 0) + int(dc)
        if dark is not None and dark[0][ri // dark[1], ci // dark[1]]:
            continue
        peak = x[ri, ci]
        r0, c0 = max(ri - 40, 0), max(ci - 40, 0)
        sub = x[r0: ri + 41, c0: ci + 41]
        base = float(np.percentile(sub, 20))
        lab, _ = ndimage.label(sub >= base + 0.5 * (peak - base))
        k = lab[ri - r0, ci - c0]
        # a saturated plateau is not the spot's width (the finder may place a clipped spot on its
        # rim, below the clip level: the spot's area is checked, not its found peak)
        if k and not (sub[lab == k] >= top).any():
            widths.append(2.0 * float(np.sqrt((lab == k).sum() / np.pi)))
        if len(widths) >= n:
            break
    return float(np.median(widths)) if len(widths) >= 3 else None


#: :func:`_stop_margin` works on every k-th pixel of the image, at most this many a side.
STOP_MARGIN_PX = 512


def _stop_margin(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(where :func:`spot_fwhm` measures no spot, on blocks of ``k`` x ``k`` pixels; ``k``) or None
    where there is nowhere: within 4 px of a beam stop, a dark region (under a tenth of the
    image's median) of at least 0.2 % of the image (and 30 px) that holds a diamond of 25 dark
    pixels (a sparse counting frame's scattered zeros hold none). A frame over
    :data:`STOP_MARGIN_PX` is judged on every ``k``-th pixel (a 4096 px frame: every 8th), the
    answer for each ``k`` x ``k`` block.
    Beside a stop the halo's ring lies above half of any peak on it over the stop's dark:
    simulated 256 px patterns with a stop measured "spots" 21-40 px wide and were binned 4x, one
    answered 28.9° wrong (``bench_detector_size.py --beam-stop --find-centre``, session 31).

    >>> img = np.full((128, 128), 50.0); img[56:72, 56:72] = 0.0  # a stop
    >>> m, k = _stop_margin(img, np.ones(img.shape, bool))
    >>> k, bool(m[64, 64]), bool(m[64, 75]), bool(m[64, 77])  # on it, 4 px from its edge, 6 px
    (1, True, True, False)
    >>> counts = np.random.default_rng(0).poisson(0.8, (256, 256)).astype(float)  # 45 % zeros
    >>> _stop_margin(counts, np.ones(counts.shape, bool)) is None
    True
    """
    from scipy import ndimage

    k = max(1, int(np.ceil(max(x.shape) / STOP_MARGIN_PX)))
    x, valid = x[::k, ::k], valid[::k, ::k]  # (every k-th pixel: a stop stays a solid dark region)
    med = float(np.median(x[valid])) if valid.any() else 0.0
    if not med > 0:
        return None
    dark = valid & (x < 0.1 * med)
    core = ndimage.binary_erosion(dark, iterations=3)
    if not core.any():
        return None
    region = ndimage.binary_propagation(core, mask=dark)  # (the dark regions that hold a core, whole)
    lab, n = ndimage.label(region)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    big = 1 + np.flatnonzero(sizes >= max(30, 0.002 * x.size))
    if not big.size:
        return None
    margin = ndimage.binary_dilation(np.isin(lab, big), iterations=max(1, int(np.ceil(4 / k))))
    return margin, k


def brightest_blob(image: np.ndarray, mask: np.ndarray | None = None, sigma: float = 3.0) -> tuple[float, float]:
    """(row, col) of the brightest blob: the maximum of the smoothed valid image, refined by
    the centre of mass of the pixels above half of it within 3 sigma."""
    from edorient import _filter_kernels as kern

    img, valid = _check_image(image, mask)
    fill = float(np.median(img[valid]))
    sm = kern.gaussian_filter(np.where(valid, img, fill), sigma)  # (scipy.ndimage's bits, compiled)
    sm[~valid] = -np.inf
    r, c = np.unravel_index(np.argmax(sm), sm.shape)
    h = int(np.ceil(3 * sigma))
    r0, r1, c0, c1 = max(r - h, 0), min(r + h + 1, sm.shape[0]), max(c - h, 0), min(c + h + 1, sm.shape[1])
    win = sm[r0:r1, c0:c1]
    w = np.clip(np.where(np.isfinite(win), win, 0) - 0.5 * sm[r, c], 0, None)
    rr, cc = np.mgrid[r0:r1, c0:c1]
    if w.sum() <= 0:
        return float(r), float(c)
    return float((w * rr).sum() / w.sum()), float((w * cc).sum() / w.sum())


_WEIGHT = np.minimum


def _pair_tolerance(radius: np.ndarray, tol_px: float) -> np.ndarray:
    """Tolerance (pixels) for a Friedel partner at ``radius`` from the centre: a base plus 1 %
    of the radius (residual lens distortion, precession)."""
    return tol_px + 0.01 * radius


def friedel_score(
    positions: np.ndarray,
    intensity: np.ndarray,
    centres: np.ndarray,
    shape: tuple[int, int],
    valid: np.ndarray | None = None,
    tol_px: float = 1.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Friedel-symmetry score of candidate centres.

    For each centre ``c`` every spot ``p`` is reflected to ``2c - p``; where that lands inside
    the valid image, the spot counts with weight ``I_p``, and it is matched when a spot ``q``
    lies within the tolerance, adding ``min(I_p, I_q)`` (a pair of equally bright spots counts
    fully, a bright spot on a faint one little).

    Returns
    -------
    score, matched, counted
        ``score`` (m,): matched weight / counted weight; ``matched`` (m,): the matched weight
        (the ranking criterion: it grows with both the number and the brightness of the pairs);
        ``counted`` (m,): the number of spots whose partner position was inside the image.
    """
    from scipy.spatial import cKDTree

    P = np.asarray(positions, dtype=float)
    I = np.asarray(intensity, dtype=float)
    C = np.atleast_2d(np.asarray(centres, dtype=float))
    tree = cKDTree(P)
    refl = 2.0 * C[:, None, :] - P[None, :, :]  # (m, n, 2)
    h, w = shape
    ri, ci = np.round(refl[..., 0]).astype(int), np.round(refl[..., 1]).astype(int)
    inside = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    if valid is not None:
        inside[inside] = valid[ri[inside], ci[inside]]
    dist, idx = tree.query(refl.reshape(-1, 2))
    dist, idx = dist.reshape(refl.shape[:2]), idx.reshape(refl.shape[:2])
    radius = np.linalg.norm(P[None] - C[:, None], axis=-1)
    hit = inside & (dist <= _pair_tolerance(radius, tol_px))
    weight = _WEIGHT(I[None, :], I[idx])
    matched = np.where(hit, weight, 0.0).sum(axis=1)
    total = np.where(inside, I[None, :], 0.0).sum(axis=1)
    score = np.where(total > 0, matched / np.maximum(total, 1e-300), 0.0)
    return score, matched, inside.sum(axis=1)


def _refine_centre(P, I, c, shape, valid, tol_px, iterations=4):
    """Least squares over matched Friedel pairs: the centre is the weighted mean of their
    midpoints; iterated as the matches change. Returns (centre, pairs (k, 2) index array)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(P)
    c = np.asarray(c, dtype=float)
    pairs = np.zeros((0, 2), dtype=int)
    for _ in range(iterations):
        refl = 2.0 * c - P
        dist, idx = tree.query(refl)
        radius = np.linalg.norm(P - c, axis=1)
        tol = _pair_tolerance(radius, tol_px)
        k = np.arange(len(P))
        # a pair (p, q) both ways, each spot once, not the spot on the centre itself
        ok = (dist <= tol) & (idx != k) & (idx[idx] == k) & (k < idx)
        pairs = np.stack([k[ok], idx[ok]], axis=1)
        if len(pairs) == 0:
            break
        w = np.minimum(I[pairs[:, 0]], I[pairs[:, 1]])
        mid = 0.5 * (P[pairs[:, 0]] + P[pairs[:, 1]])
        new = (w[:, None] * mid).sum(axis=0) / w.sum()
        if np.linalg.norm(new - c) < 1e-4:
            c = new
            break
        c = new
    return c, pairs


def _lattice_fraction(P: np.ndarray, I: np.ndarray, c: np.ndarray, tol_px: float) -> float:
    """Intensity fraction of the spots whose vector from ``c`` is also the difference of two
    spots: near 1 when ``c`` is a node of the spots' lattice (the direct beam is one), low
    at a half-lattice point, which is a centre of symmetry of a lattice too."""
    from scipy.spatial import cKDTree

    i, j = np.nonzero(~np.eye(len(P), dtype=bool))
    tree = cKDTree(P[i] - P[j])
    v = P - c
    r = np.linalg.norm(v, axis=1)
    away = r > tol_px + 1.0
    if not away.any():
        return 0.0
    dist, _ = tree.query(v[away])
    hit = dist <= _pair_tolerance(r[away], tol_px)
    return float((I[away] * hit).sum() / I[away].sum())


def _beam_factor(P: np.ndarray, I: np.ndarray, c: np.ndarray, valid: np.ndarray, tol_px: float) -> float:
    """Weight of a candidate centre by the direct beam it implies: a spot there counts by its
    brightness (``0.5 + 0.5 I / I_max``: the beam is usually the brightest spot, not always in
    a saturated figure); a hidden centre (masked pixels within 3 px, outside the image) 0.75;
    a visible spot-free centre 0.25 (a half-lattice point of the pattern)."""
    if len(P):
        d = np.linalg.norm(P - c, axis=1)
        k = int(np.argmin(d))
        if d[k] <= tol_px + 1.0:
            return 0.5 + 0.5 * float(I[k] / I.max())
    r, col = int(round(c[0])), int(round(c[1]))
    h, w = valid.shape
    if not (0 <= r < h and 0 <= col < w):
        return 0.75
    win = valid[max(r - 3, 0) : r + 4, max(col - 3, 0) : col + 4]
    return 0.75 if bool((~win).any()) else 0.25


#: :func:`find_centre` moves the centre away from the brightest blob on at least this many Friedel
#: pairs (or to a given guess). One pair is no evidence: any two spots are symmetric about their
#: midpoint. Simulated anatase patterns of few spots (bench_detector_size's recipe, 512 px, the
#: centre not given, session 30): 2 of 8 were centred 120-160 px off on one pair found with the
#: saturated beam left out, and came out 12-44° off (``no match``); on the blob, 8 of 8 within 1°.
MIN_PAIRS_AWAY = 2


def find_centre(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    guess: tuple[float, float] | None = None,
    *,
    spots: SpotList | None = None,
    n_candidates: int = 40,
    tol_px: float = 1.5,
    min_pairs: int = 3,
    min_score: float = 0.5,
    warn: bool = True,
) -> CentreResult:
    """The direct beam, found by Friedel symmetry of the spot pattern and refined to sub-pixel.

    Candidates: the brightest blob, ``guess`` if given, and the midpoints of every pair of the
    ``n_candidates`` brightest spots. Each is scored by :func:`friedel_score`; the best (most
    matched intensity) is refined by least squares over its Friedel pairs
    (:func:`_refine_centre`). The brightest blob is kept instead when the pairs do not decide
    (fewer than ``min_pairs``), with ``ok=False``.

    Parameters
    ----------
    image
        2-D intensities.
    mask
        Boolean, True where valid (a beam stop or gap False): no spot is looked for there, and
        a partner that would fall there is not expected.
    guess
        (row, col) of a rough centre (e.g. the user's ``--centre``), a candidate among others.
    spots
        Spots already found (:func:`find_spots`); found here when None.
    n_candidates
        Brightest spots whose pairwise midpoints are candidates.
    tol_px
        Pixels within which a reflected spot must land on a spot (plus 1 % of its radius).
    min_pairs, min_score
        The symmetry check: at least ``min_pairs`` Friedel pairs and a
        :attr:`CentreResult.symmetry_score` of at least ``min_score``.
    warn
        Log a failed check (with its advice to give the centre); off where the centre is given
        and the search only checks it.

    Examples
    --------
    >>> import numpy as np
    >>> rr, cc = np.mgrid[:80, :80]
    >>> img = np.zeros((80, 80))
    >>> for dr, dc, a in [(0, 0, 1.0), (12, 5, 0.8), (-12, -5, 0.8), (3, -14, 0.5), (-3, 14, 0.5)]:
    ...     img += a * np.exp(-((rr - 37.4 - dr) ** 2 + (cc - 41.2 - dc) ** 2) / 3.0)
    >>> res = find_centre(img)
    >>> round(res.row, 1), round(res.col, 1), res.n_pairs, res.ok
    (37.4, 41.2, 2, False)
    """
    img, valid = _check_image(image, mask)
    if guess is not None:
        g = np.asarray(guess, dtype=float)
        if g.shape != (2,) or not np.all(np.isfinite(g)):
            raise EdorientError(f"the centre guess must be two finite numbers (row, col), got {guess!r}")
    res = _centre_from(img, valid, guess, spots, n_candidates, tol_px, min_pairs, min_score)
    sat = img >= float(img[valid].max())
    if spots is None and int((sat & valid).sum()) >= 2:
        # saturated spots are kept in the image (a clipped spot is a spot), but a plateau's
        # position is loose: the pairs are also found with them left out, and the centre that
        # pairs more spots kept (pyemaps' Al [1 1 4]: 3 pairs kept against 2 left out, the latter
        # on a saturated spot; al_001 3x larger and saturated: 31 left out against 21 kept, the
        # latter 70 px off)
        from scipy import ndimage

        alt = _centre_from(img, valid & ~ndimage.binary_dilation(sat, iterations=1), guess, None, n_candidates,
                           tol_px, min_pairs, min_score)
        if alt.n_pairs > res.n_pairs:
            res = replace(alt, note=alt.note + "; saturated pixels left out of the pairs")
    if warn and not res.ok and res.method != "blob":
        log.warning("%s", res.note)
    return res


def _centre_from(img: np.ndarray, valid: np.ndarray, guess, spots, n_candidates: int, tol_px: float,
                 min_pairs: int, min_score: float) -> CentreResult:
    """:func:`find_centre` on one validity mask (no warning logged)."""
    blob = np.array(brightest_blob(img, valid))
    if spots is None:
        spots = find_spots(img, valid)
    P, I = spots.positions, spots.intensity
    if len(P) < 3:
        return CentreResult(float(blob[0]), float(blob[1]), 0.0, 0, False,
                            f"only {len(P)} spot(s) found: centre = the brightest blob, not checked by Friedel symmetry",
                            "blob")
    top = np.argsort(-I)[:n_candidates]
    i, j = np.triu_indices(len(top), k=1)
    cands = [blob[None], 0.5 * (P[top[i]] + P[top[j]])]
    if guess is not None:
        cands.insert(0, np.asarray(guess, dtype=float)[None])
    C = np.concatenate(cands)
    _, matched, _ = friedel_score(P, I, C, img.shape, valid, tol_px)
    # refine the best few distinct candidates; keep the best after refinement
    order = np.argsort(-matched, kind="stable")
    tried: list[np.ndarray] = []
    best = None
    for k in order[:20]:
        if any(np.linalg.norm(C[k] - t) < 1.0 for t in tried):
            continue
        tried.append(C[k])
        c, pairs = _refine_centre(P, I, C[k], img.shape, valid, tol_px)
        s, m, _ = friedel_score(P, I, c, img.shape, valid, tol_px)
        # the direct beam must be there, unless hidden (beam stop, gap): a spot-free valid
        # centre is a half-lattice point of the pattern, which is centrosymmetric too
        m = m[0] * _beam_factor(P, I, c, valid, tol_px) * (0.5 + 0.5 * _lattice_fraction(P, I, c, tol_px))
        if best is None or m > best[2] * (1 + 1e-9):
            best = (c, pairs, float(m), float(s[0]))
        if len(tried) >= 10:
            break
    c, pairs, _, score = best
    n_pairs = len(pairs)
    if n_pairs == 0:
        return CentreResult(float(blob[0]), float(blob[1]), 0.0, 0, False,
                            f"no Friedel pair among {len(P)} spots: centre = the brightest blob, unchecked "
                            "(give --centre ROW COL if it is wrong)", "blob")
    near_guess = guess is not None and np.linalg.norm(c - np.asarray(guess, float)) < 2.0 * tol_px
    if n_pairs < MIN_PAIRS_AWAY and np.linalg.norm(c - blob) >= 2.0 and not near_guess:
        return CentreResult(float(blob[0]), float(blob[1]), 0.0, int(n_pairs), False,
                            f"only {n_pairs} Friedel pair among {len(P)} spots, away from the brightest blob (any two "
                            "spots are symmetric about their midpoint): centre = the brightest blob, unchecked "
                            "(give --centre ROW COL if it is wrong)", "blob")
    ok = n_pairs >= min_pairs and score >= min_score
    where = "the brightest blob" if np.linalg.norm(c - blob) < 2.0 else f"not the brightest blob ({blob[0]:.1f}, {blob[1]:.1f})"
    note = f"centre from {n_pairs} Friedel pairs of {len(P)} spots, symmetry {score:.2f}; {where}"
    if not ok:
        why = f"only {n_pairs} pair(s) (< {min_pairs})" if n_pairs < min_pairs else f"symmetry {score:.2f} < {min_score}"
        note = f"Friedel symmetry check failed: {why}; {note}; give --centre ROW COL if the centre is wrong"
    method = "guess" if near_guess else "friedel"
    return CentreResult(float(c[0]), float(c[1]), round(score, 4), int(n_pairs), bool(ok), note, method)


def fill_masked(image: np.ndarray, valid: np.ndarray, sigma: float = 1.0, min_weight: float = 0.3) -> np.ndarray:
    """``image`` with its invalid pixels filled from their valid neighbours (a normalised Gaussian
    convolution of ``sigma`` px) where at least ``min_weight`` of the kernel's weight is valid (a
    masked hot pixel, a detector gap a few pixels wide); elsewhere (a wide masked region) 0."""
    from edorient import _filter_kernels as kern

    x = np.asarray(image, dtype=np.float64)
    v = np.asarray(valid, dtype=np.float64)
    w = kern.gaussian_filter(v, sigma)  # (scipy.ndimage's bits, compiled)
    num = kern.gaussian_filter(x * v, sigma)
    fill = np.where(w >= min_weight, num / np.maximum(w, 1e-12), 0.0)
    return np.where(valid, x, fill)


def _holes(valid: np.ndarray) -> bool:
    """Whether ``valid`` has invalid pixels inside the rectangle its valid rows and columns span
    (a detector narrower than the frame leaves only an outer band: nothing to fill)."""
    v = np.asarray(valid, dtype=bool)
    rows, cols = v.any(1), v.any(0)
    return bool((rows[:, None] & cols[None, :] & ~v).any())


def working_spots(image01: np.ndarray, threshold: float = 6.0, max_spots: int = 40,
                  beam_radius_px: float = 5.0, valid: np.ndarray | None = None) -> np.ndarray:
    """(k, 2) spots (row, col) of a working display image (``[0, 1]``, the direct beam on the
    frame's centre pixel), found in its linear intensity (:func:`find_spots`, ``threshold``
    noise sigmas), more than ``beam_radius_px`` from the centre. The spots a second-grain
    decision counts (:func:`second_grain_is_real`). ``valid`` (the pixels that hold data): the
    others are filled from their neighbours first (:func:`fill_masked`), so that a masked pixel
    or a gap through a spot does not cut it into two."""
    from edorient import conventions as cv
    from edorient.render import inverse_display_transform

    lin = inverse_display_transform(np.asarray(image01, dtype=np.float32))
    if valid is not None and _holes(valid):
        lin = fill_masked(lin, valid)
    sp = find_spots(lin, threshold=threshold, max_spots=max_spots)
    r0, c0 = cv.centre_pixel(image01.shape[-1])
    return sp.positions[(sp.positions[:, 0] - r0) ** 2 + (sp.positions[:, 1] - c0) ** 2 > beam_radius_px**2]


@dataclass(frozen=True)
class SpotDistortion:
    """What :func:`spot_distortion` measured. ``measured`` False: too few matched spots, or all
    on one row, to determine an affine map (the other fields are then NaN, ``matched`` counted).

    Attributes
    ----------
    ellipticity
        Major / minor axis (>= 1) of the ellipse the fitted map draws from a circle (the
        convention of :mod:`edorient.indexing.calibration`).
    angle_deg
        Direction of the major axis (degrees from +col, anticlockwise on screen, [0, 180)).
    scale
        The map's scale (geometric mean over directions): found / predicted radius.
    residual_px
        Intensity-weighted RMS distance (pixels) of the matched spots from the mapped predicted ones.
    matched
        Found spots within the tolerance of a predicted one after the fit.
    """

    ellipticity: float
    angle_deg: float
    scale: float
    residual_px: float
    matched: int
    measured: bool


def spot_distortion(found: np.ndarray, weights: np.ndarray, predicted: np.ndarray, centre, tol_px: float,
                    iterations: int = 3, min_spots: int = 6, min_spread: float = 0.2) -> SpotDistortion:
    """Where a pattern's spots lie once the instrument's freedom is fitted: an affine map (centre
    shift, scale, rotation and elliptical distortion: 6 numbers) from the ``predicted`` spot
    positions to the ``found`` ones ((n, 2) and (m, 2) pixels, row/col), by least squares
    weighted by ``weights`` over the found spots within ``tol_px`` of a predicted one, matched
    again after each of ``iterations`` fits.

    A camera distorts a pattern by such a map (a calibration error, a few per cent of
    ellipticity, a centre off by a pixel); anything else that moves spots off the predicted ones
    is not the instrument. So the right crystal leaves a small ellipticity and residual, and
    another crystal whose zones the answer explains approximately needs a larger ellipticity, or
    leaves its spots farther off, than a camera gives. An affine map can turn any 2-D lattice
    into any other, so the ellipticity must be bounded for the check to mean anything; that
    bound is the verdict's (:data:`~edorient.indexing.verdict.ELLIPTICITY_TOLERANCE`).

    Examples
    --------
    A square lattice stretched by 5 % along the columns is measured as that:

    >>> n = np.array([(i, j) for i in range(-3, 4) for j in range(-3, 4) if (i, j) != (0, 0)], float)
    >>> pred = 50 + 10 * n
    >>> found = 50 + 10 * n * [1.0, 1.05]
    >>> d = spot_distortion(found, np.ones(len(found)), pred, (50, 50), tol_px=6)
    >>> round(d.ellipticity, 4), round(d.angle_deg, 1), round(d.residual_px, 6), d.matched
    (1.05, 0.0, 0.0, 48)
    """
    found = np.asarray(found, dtype=float).reshape(-1, 2)
    predicted = np.asarray(predicted, dtype=float).reshape(-1, 2)
    w = np.asarray(weights, dtype=float).reshape(-1)
    c = np.asarray(centre, dtype=float)
    nan = float("nan")
    if len(found) == 0 or len(predicted) == 0:
        return SpotDistortion(nan, nan, nan, nan, 0, False)
    src0 = predicted - c
    q = predicted.copy()
    measured = False
    for _ in range(max(1, int(iterations))):
        d = np.sqrt(((found[:, None, :] - q[None]) ** 2).sum(-1))
        j = d.argmin(1)
        m = d[np.arange(len(found)), j] <= tol_px
        if m.sum() < min_spots:
            break
        src, dst, ww = src0[j[m]], found[m] - c, w[m]
        mean = (ww[:, None] * src).sum(0) / ww.sum()
        sv = np.linalg.svd((src - mean) * np.sqrt(ww)[:, None], compute_uv=False)
        if sv[1] < min_spread * sv[0]:  # one row of spots: the map across it is not determined
            break
        A = np.c_[src, np.ones(len(src))] * np.sqrt(ww)[:, None]
        sol = np.linalg.lstsq(A, dst * np.sqrt(ww)[:, None], rcond=None)[0]
        L, t = sol[:2].T, sol[2]
        q = src0 @ L.T + t + c
        measured = True
    d = np.sqrt(((found[:, None, :] - q[None]) ** 2).sum(-1)).min(1)
    m = d <= tol_px
    if not measured:
        return SpotDistortion(nan, nan, nan, nan, int(m.sum()), False)
    # the linear part in lab x-y (x = col, y = -row): its singular vectors are the ellipse's axes
    flip = np.array([[0.0, 1.0], [-1.0, 0.0]])  # (row, col) -> (x, y)
    U, s, _ = np.linalg.svd(flip @ L @ flip.T)
    angle = float(np.degrees(np.arctan2(U[1, 0], U[0, 0])) % 180.0)
    ell = float(s[0] / s[1])
    resid = float(np.sqrt((w[m] * d[m] ** 2).sum() / w[m].sum())) if m.any() and w[m].sum() > 0 else nan
    return SpotDistortion(ell, 0.0 if ell - 1 < 1e-9 else angle, float(np.sqrt(s[0] * s[1])), resid, int(m.sum()), True)


def spots_explained_by(simulator, peaks: np.ndarray, rotation: np.ndarray, weight: float = 1.0,
                       match_px: float = 2.5, min_peak: float = 2e-3) -> np.ndarray:
    """(k,) whether each spot ``peaks`` (working pixels) has a spot of orientation ``rotation``
    whose peak, times the grain's ``weight``, is at least ``min_peak`` of the direct beam within
    ``match_px``."""
    if len(peaks) == 0:
        return np.zeros(0, dtype=bool)
    s = simulator.spots(rotation)
    pix = simulator.spot_pixels(s)[s.intensity * weight >= min_peak]
    if len(pix) == 0:
        return np.zeros(len(peaks), dtype=bool)
    return ((np.asarray(peaks)[:, None, :] - pix[None]) ** 2).sum(-1).min(1) <= match_px**2


#: :func:`second_grain_is_real`'s defaults: the new spots a real second grain explains, and its
#: least share of the intensity.
SECOND_GRAIN_MIN_NEW_SPOTS = 2
SECOND_GRAIN_MIN_SHARE = 0.1


def second_grain_is_real(simulator, peaks: np.ndarray, first: np.ndarray, second: np.ndarray, share: float,
                         misorientation_deg: float, min_new_spots: int = SECOND_GRAIN_MIN_NEW_SPOTS,
                         min_share: float = SECOND_GRAIN_MIN_SHARE,
                         distinct_deg: float = 5.0, match_px: float = 2.5, also_first=()) -> tuple[bool, int]:
    """(whether a fitted second grain is real, the spots it explains that the first leaves
    unexplained). Real when it explains at least ``min_new_spots`` of the image's spots
    (:func:`working_spots`) that the first grain's pattern (at full weight) does not, carries at
    least ``min_share`` of the intensity, and differs from the first by more than
    ``distinct_deg``: elsewhere a second grain only re-explains the first one's spots or noise.
    The rule of ``edorient map`` (docs/mapping.md: measured on a simulated scan of another seed
    than the benchmark's, 0 of 3,791 one-grain probes given a false second).

    ``also_first``: other fits of the first grain (e.g. the one-grain answer, (3, 3) each) whose
    spots count as explained too. A pair can split one crystal into two copies a few degrees
    either side of it (broad spots, as a precession pattern's, are fitted better by two
    shifted copies); each copy then "explains" the spots the other copy misses, but none that
    the one-grain answer leaves unexplained."""
    h1 = spots_explained_by(simulator, peaks, first, 1.0, match_px)
    for R in also_first:
        h1 |= spots_explained_by(simulator, peaks, R, 1.0, match_px)
    h2 = spots_explained_by(simulator, peaks, second, share, match_px)
    new = int((h2 & ~h1).sum())
    return bool(new >= min_new_spots and share >= min_share and misorientation_deg > distinct_deg), new


#: :func:`halo_centre` works on the image reduced to at most this many pixels a side.
HALO_PX = 256


def _halo_image(image: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(the image block-averaged to at most :data:`HALO_PX` a side, log-scaled and smoothed, 0
    where no valid pixel; the blocks' valid share; the block side)."""
    from scipy import ndimage

    x = np.asarray(image, dtype=np.float64)
    v = np.isfinite(x) if valid is None else (np.asarray(valid, bool) & np.isfinite(x))
    k = max(1, int(np.ceil(max(x.shape) / HALO_PX)))
    h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    vs = v[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    xs = np.where(v, x, 0.0)[:h, :w].reshape(h // k, k, w // k, k).sum(axis=(1, 3)) / np.maximum(vs * k * k, 1)
    lo = float(np.percentile(xs[vs > 0.5], 1)) if (vs > 0.5).any() else 0.0
    y = np.log1p(np.clip(xs - lo, 0, None))
    m = (vs > 0.5).astype(np.float64)
    sm = ndimage.gaussian_filter(y * m, 2.0)
    wm = ndimage.gaussian_filter(m, 2.0)
    return np.where(wm > 0.3, sm / np.maximum(wm, 1e-12), 0.0), (wm > 0.3) & (m > 0), k


def _point_symmetry(y: np.ndarray, m: np.ndarray, c: tuple[float, float]) -> float:
    """Pearson correlation of ``y`` with itself turned 180° about ``c`` (its pixels), over the
    valid pixels whose turned partner is valid too; -1 with fewer than 64 of them."""
    from scipy import ndimage

    rr, cc = np.nonzero(m)
    pr, pc = 2 * c[0] - rr, 2 * c[1] - cc
    inside = (pr >= 0) & (pr <= y.shape[0] - 1) & (pc >= 0) & (pc <= y.shape[1] - 1)
    rr, cc, pr, pc = rr[inside], cc[inside], pr[inside], pc[inside]
    ok = ndimage.map_coordinates(m.astype(np.float64), [pr, pc], order=1) > 0.99
    if ok.sum() < 64:
        return -1.0
    a = y[rr[ok], cc[ok]]
    b = ndimage.map_coordinates(y, [pr[ok], pc[ok]], order=1)
    if a.std() == 0 or b.std() == 0:
        return -1.0
    return float(np.corrcoef(a, b)[0, 1])


class HaloSymmetry:
    """The image's diffuse background prepared once (:func:`_halo_image`): its centre of point
    symmetry (:meth:`centre`) and its symmetry about any point (:meth:`about`)."""

    def __init__(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.y, self.m, self.k = _halo_image(image, valid)

    def about(self, centre: tuple[float, float]) -> float:
        """The symmetry (:func:`_point_symmetry`) about ``centre`` (the image's pixels)."""
        k = self.k
        return _point_symmetry(self.y, self.m, ((centre[0] + 0.5) / k - 0.5, (centre[1] + 0.5) / k - 0.5))

    def centre(self) -> tuple[float, float, float] | None:
        """:func:`halo_centre`."""
        from scipy import signal

        y, m, k = self.y, self.m, self.k
        if m.sum() < 256:
            return None
        # the Pearson correlation of the valid pixels with the turned image's at every shift, from
        # convolutions (a convolution of the image with itself is its correlation with itself turned):
        # the sums over the overlap of a b, of a (= of b), of a² (= of b²), and its size
        mf = m.astype(np.float64)
        my = np.where(m, y, 0.0)
        n = signal.fftconvolve(mf, mf, mode="full")
        sab = signal.fftconvolve(my, my, mode="full")
        sa = signal.fftconvolve(my, mf, mode="full")
        saa = signal.fftconvolve(my * my, mf, mode="full")
        nn = np.maximum(n, 1.0)
        var = saa - sa * sa / nn
        big = (n >= 0.25 * n.max()) & (var > 1e-12 * max(float(var.max()), 1e-300))
        score = np.where(big, (sab - sa * sa / nn) / np.where(big, var, 1.0), -np.inf)
        peak = tuple(int(v) for v in np.unravel_index(int(np.argmax(score)), score.shape))
        s = [float(v) for v in peak]
        for ax in (0, 1):  # (a parabola through the peak and its neighbours, each axis)
            lo, hi = list(peak), list(peak)
            lo[ax] -= 1
            hi[ax] += 1
            if lo[ax] >= 0 and hi[ax] < score.shape[ax] and np.isfinite(score[tuple(lo)]) and np.isfinite(score[tuple(hi)]):
                y0, y1, y2 = score[tuple(lo)], score[peak], score[tuple(hi)]
                den = y0 - 2 * y1 + y2
                if den < 0:
                    s[ax] += 0.5 * (y0 - y2) / den
        c = (s[0] / 2.0, s[1] / 2.0)  # (the reduced image's pixels)
        return (c[0] + 0.5) * k - 0.5, (c[1] + 0.5) * k - 0.5, _point_symmetry(y, m, c)


def halo_centre(image: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float, float] | None:
    """(row, col, symmetry) of the point about which the image, log-scaled and smoothed to its
    diffuse background (the halo around the direct beam, an amorphous film's rings), is most
    symmetric: the peak of its correlation with itself turned 180° (at twice the centre), refined
    by a parabola; ``symmetry`` the Pearson correlation there (:func:`_point_symmetry`). It needs
    neither the direct beam (behind a beam stop) nor spots in Friedel pairs (a pattern off its
    zone has few); None where too little of the image is valid.

    >>> rr, cc = np.mgrid[:200, :240]
    >>> img = 1e3 * np.exp(-np.hypot(rr - 97.3, cc - 131.6) / 30.0) + 1.0
    >>> img[(np.hypot(rr - 97.3, cc - 131.6) < 12) | ((abs(rr - 97.3) < 4) & (cc > 131))] = 0.0  # a beam stop
    >>> r, c, s = halo_centre(img, img > 0)
    >>> round(r), round(c), s > 0.9
    (97, 132, True)
    """
    return HaloSymmetry(image, valid).centre()


def point_symmetry_at(image: np.ndarray, valid: np.ndarray | None, centre: tuple[float, float]) -> float:
    """:func:`halo_centre`'s symmetry of the image about ``centre`` (its pixels)."""
    return HaloSymmetry(image, valid).about(centre)
