"""What a real detector pattern needs before it is compared with simulated ones (numpy, no I/O).

Simulated patterns are spots on a black ground with the direct beam at 1. A microscope's
pattern adds what the kinematic simulator does not make, and each of these steps removes one:

1. **validity mask** (:func:`validity_mask`): pixels that carry no diffraction signal: flat
   patches (the zero padding of a cropped pattern, annotations painted out with one grey),
   and, once the background is known, a beam
   stop (a large region far darker than the background at its radius, searched outside twice
   the direct beam's radius, where the ring median is a background, and reaching the beam; the
   disc within that radius is masked with it);
2. **background subtraction** (:func:`radial_background`): the diffuse halo around the direct
   beam (inelastic and thermal diffuse scattering) falls off with the distance from the beam
   and is nearly round, so its estimate is the median of each ring of pixels around the centre
   (spots fill a small share of every ring, so the median ignores them). Measured on the
   development patterns against a white top-hat (a rolling-ball-like filter): the radial median
   kept the zones within 0.12-1.4° where the top-hat gave 0.12-1.4° with lower scores, and it
   does not eat large spots as a top-hat of a fixed size does (docs/results.md, "Real patterns");
3. **noise floor and normalisation**: the robust noise (MAD) of the background-subtracted image
   is subtracted (three sigma), and intensities are scaled by a high percentile of the valid
   pixels away from the direct beam, *not* by the direct beam's peak (saturated, behind a beam
   stop, or absent from a figure);
4. **data radius**: the largest distance from the centre at which most of the ring is inside
   the image and valid; the working frame is scaled so that this radius fills it.

Every step is reported in :attr:`Preprocessed.steps` (and so in ``edorient predict``'s JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from edorient._utils import order_stats
from edorient._utils.jit import kernel_array
from edorient.errors import EdorientError

#: Smallest flat (constant-valued) patch, in pixels, taken as padding or a painted-out label.
MIN_FLAT_AREA = 150
#: Share of a ring that must be inside the image and valid for the ring to count as data.
RING_COVERAGE = 0.7
#: Noise floor subtracted after the background, in robust standard deviations.
NOISE_SIGMAS = 3.0
#: The lower floor of :attr:`Preprocessed.fit_image`, the image the refinement fits the
#: orientation to (the search, the scores and the spot agreement keep ``NOISE_SIGMAS``). Measured
#: on 40 simulated single-crystal files of seed 6062 (benchmarks/bench_predict_pairs.py's: linear
#: counts 2e4 at the beam, 50 Å): with 3 sigmas the weak spots vanish and a thicker model (80 Å)
#: wins the whole-image fit tilted 1-4° (< 1°: 67.5 %, median 0.37°); a floor of 2 sigmas for
#: the fit: 82.5 %, median 0.09°; 1 sigma: 85 % but the real SAD figure cuni_110 with its
#: calibration 10 % high became ``ambiguous`` (spot agreement 0.62), 2 keeps every development case
#: ``confident``. On 100 files each of seed 5050 (docs/results.md): single crystals < 1° 69 -> 82 %,
#: bicrystals both < 2° 63 -> 67 %.
FIT_NOISE_SIGMAS = 2.0
#: Percentile of the valid pixels (outside the direct beam) that is scaled to ``SPOT_LEVEL``.
NORM_PERCENTILE = 99.5
#: Linear intensity, relative to the direct beam (1), given to that percentile: a typical
#: strong kinematic spot, so that the display transform treats the pattern as a simulated one.
SPOT_LEVEL = 0.1


@dataclass
class Preprocessed:
    """A pattern made comparable with simulated ones (in the file's pixels)."""

    image: np.ndarray
    """Background-subtracted, noise-floored, normalised linear intensity; 0 where masked."""
    mask: np.ndarray
    """True where the pixel carries signal."""
    centre: tuple[float, float]
    """(row, col) of the direct beam in the file."""
    data_radius_px: float
    """Largest radius (file pixels) whose ring is mostly inside the image and valid."""
    noise: float
    """Robust standard deviation of the background-subtracted image (file units)."""
    steps: dict = field(default_factory=dict)
    """What was done, with its numbers (JSON-friendly)."""
    fit_image: np.ndarray | None = None
    """``image`` with the lower noise floor :data:`FIT_NOISE_SIGMAS` (same mask and scale):
    weak spots just above the noise survive for the fit (None: as ``image``)."""


def _flat_windows(image: np.ndarray, half: int = 2) -> np.ndarray:
    """True where the (2 half + 1)² window around the pixel is constant, the window reflected at
    the border as ``ndimage``'s filters reflect it: the same booleans as
    ``maximum_filter(image, 5) - minimum_filter(image, 5) == 0`` (compiled, from runs of equal
    neighbours: :func:`edorient._prep_kernels.flat_windows`; the map prepares every pattern of a
    scan)."""
    from edorient._prep_kernels import flat_windows

    return flat_windows(kernel_array(image, np.float64), int(half))


def _flat_patches(image: np.ndarray, min_area: int) -> np.ndarray:
    """True on constant-valued connected patches of at least ``min_area`` pixels."""
    flat = _flat_windows(image)
    if int(flat.sum()) < min_area:  # no connected patch can be large enough (the common case)
        return np.zeros_like(flat)
    lab, n = ndimage.label(flat)
    if n == 0:
        return np.zeros_like(flat)
    labf = lab.ravel()
    sizes = np.bincount(labf, minlength=n + 1)[1:]
    if not (sizes >= min_area).any():
        return np.zeros_like(flat)
    # each patch is of one value (neighbouring flat pixels lie in each other's constant windows):
    # its minimum is the value at any of its pixels (ndimage.minimum sorted every pixel for it)
    at = np.flatnonzero(labf)
    values = np.empty(n + 1)
    values[labf[at]] = np.asarray(image, dtype=np.float64).ravel()[at]
    values = values[1:]
    lo = float(image.min())
    border = np.zeros_like(flat)
    border[[0, -1], :] = border[:, [0, -1]] = True
    on_border = np.bincount(lab[border], minlength=n + 1)[1:] > 0
    # a flat patch brighter than the typical pixel is paint (a label painted out); one at the
    # image's minimum that touches the border is the padding of a crop. A dark flat patch inside
    # is just empty background of an 8-bit image, which carries no spot either way.
    # (where the minimum fills a third of the image or more, it is the empty ground of a
    # noise-free or very sparse pattern, not padding)
    padding = (values == lo) & on_border & (float(np.mean(image == lo)) < 0.3)
    keep = (sizes >= min_area) & ((values > np.median(image)) | padding)
    bad = np.isin(lab, 1 + np.flatnonzero(keep))
    # the patch found is the interior of the flat area (the 5 x 5 test eats its rim): grow it back
    return ndimage.binary_dilation(bad, iterations=3)


def dark_flat_patches(image: np.ndarray, min_area: int = MIN_FLAT_AREA) -> np.ndarray:
    """True on connected patches of at least ``min_area`` pixels at the image's minimum that do
    not touch its border: :func:`validity_mask` keeps them (an 8-bit pattern's empty ground
    carries no spot either way), but one where the direct beam would be is a beam stop painted
    out (or a zeroed disc), behind which the centre finder must not expect the beam: al_001 with
    its beam zeroed within 10 px was centred on a diffracted spot, from 1 Friedel pair of 8. The
    patches are grown by 3 px (the 5 x 5 flatness test eats their rim); none where the minimum
    covers 30 % of the image or more (the empty ground of a sparse pattern)."""
    x = np.asarray(image, dtype=np.float64)
    flat = _flat_windows(x) & (x == float(np.nanmin(x)))
    if int(flat.sum()) < min_area or float(np.mean(x == float(np.nanmin(x)))) >= 0.3:
        return np.zeros(x.shape, dtype=bool)  # (none large enough, or the empty ground of a sparse pattern)
    lab, n = ndimage.label(flat)
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum(flat, lab, idx)
    border = np.zeros(x.shape, dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    on_border = ndimage.maximum(border, lab, idx).astype(bool)
    keep = (sizes >= min_area) & ~on_border
    return ndimage.binary_dilation(np.isin(lab, 1 + np.flatnonzero(keep)), structure=np.ones((3, 3), bool), iterations=3)


#: A hot pixel of a scan (:func:`detector_defects`): in the scan's mean pattern at least this many
#: times brighter than the median of its 5 x 5 neighbourhood, and its cluster (hot pixels touching
#: each other, at most ``HOT_MAX_CLUSTER``) this many times brighter than every pixel around it
#: (the peak pixel of a spot or of the direct beam drawn with sigma >= 0.6 px is at most ~4x its
#: brightest neighbour) ...
HOT_RATIO = 4.0
HOT_MAX_CLUSTER = 4
#: ... and above the neighbourhood's median by this many robust standard deviations of the mean
#: pattern's pixel-to-pixel differences.
HOT_SIGMAS = 8.0


def detector_defects(sample: np.ndarray) -> tuple[np.ndarray, dict]:
    """(H, W) bool, True at the defective pixels of a detector, from a sample of its patterns
    (n, H, W) (e.g. spread over a 4D-STEM scan), and a report of what was found.

    - **dead** (or in a gap between detector chips): 0 in every pattern of the sample while some
      of its eight neighbours hold counts; NaN or infinite in every pattern of the sample (a gap
      as some readers fill it; in some patterns only, the pattern is broken, not the detector);
    - **hot**: a spike of one to :data:`HOT_MAX_CLUSTER` touching pixels that every pattern
      shares: in the sample's mean pattern each at least :data:`HOT_RATIO` times the median of its
      5 x 5 neighbourhood and :data:`HOT_SIGMAS` robust standard deviations above it, and the
      cluster's faintest pixel :data:`HOT_RATIO` times the brightest pixel around the cluster.
      Spots and the direct beam are blobs of several pixels and move from pattern to pattern
      (grains, descan), so their peak pixels are not hot; a diffraction spot one pixel wide
      present in every pattern (a single-crystal scan with very sharp spots) would be, which is
      why the map reports the count and takes ``--no-defects``.
    """
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 1:
        raise EdorientError(f"detector_defects needs a sample of patterns (n, H, W), got shape {x.shape}")
    invalid = (~np.isfinite(x)).all(0)  # NaN or infinite in every pattern of the sample (a reader's gap)
    x = np.where(np.isfinite(x), x, 0.0)
    total = x.sum(0)
    foot = np.ones((3, 3), dtype=bool)
    foot[1, 1] = False  # the eight neighbours, not the pixel itself
    # (the neighbours that exist: at the border the missing ones count as nothing)
    dead = (x == 0).all(0) & (ndimage.maximum_filter(total, footprint=foot, mode="constant", cval=0.0) > 0)
    hot = _spikes(total / x.shape[0])
    return invalid | dead | hot, {"dead_px": int(dead.sum()), "hot_px": int(hot.sum()), "not_finite_px": int(invalid.sum()),
                                  "sample_patterns": int(x.shape[0])}


def _spike_noise(x: np.ndarray) -> float:
    """The robust standard deviation (1.4826 MAD) of ``x``'s pixel-to-pixel differences from its
    3 x 3 median (``median_filter(x, 3, mode="nearest")``'s values, compiled; np.median's medians)."""
    from edorient._prep_kernels import median3_nearest

    if not np.isfinite(x).all():  # (the compiled median and order_stats take finite values only)
        diff = x - ndimage.median_filter(x, size=3, mode="nearest")
        return 1.4826 * float(np.median(np.abs(diff - np.median(diff))))
    diff = x - median3_nearest(kernel_array(x, np.float64))
    return 1.4826 * float(order_stats.median(np.abs(diff - order_stats.median(diff))))


def _spikes(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: clusters of one to :data:`HOT_MAX_CLUSTER` touching pixels, each at least
    :data:`HOT_RATIO` times the median of its 5 x 5 neighbourhood and :data:`HOT_SIGMAS` robust
    standard deviations above it, the faintest of them :data:`HOT_RATIO` times the brightest pixel
    around the cluster."""
    x = np.asarray(image, dtype=np.float64)
    local = ndimage.median_filter(x, size=5, mode="nearest")
    noise = _spike_noise(x)
    cand = (x > HOT_RATIO * np.maximum(local, 0.0)) & (x - local > HOT_SIGMAS * noise) & (x > 0)
    lab, n = ndimage.label(cand, structure=np.ones((3, 3)))
    if not n:
        return np.zeros_like(cand)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    low = ndimage.minimum(x, lab, np.arange(n + 1))  # (index 0, the background: unused)
    # the brightest pixel around each cluster: its 8 neighbours that are not candidates (a
    # candidate next to a cluster is in it), over every shift at once; -inf: none (a whole image)
    ring = np.full(n + 1, -np.inf)
    h, w = x.shape
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            src = (slice(max(-dr, 0), h - max(dr, 0)), slice(max(-dc, 0), w - max(dc, 0)))
            dst = (slice(max(dr, 0), h - max(-dr, 0)), slice(max(dc, 0), w - max(-dc, 0)))
            k, nb = lab[src], lab[dst] == 0
            np.maximum.at(ring, k[(k > 0) & nb], x[dst][(k > 0) & nb])
    keep = (sizes <= HOT_MAX_CLUSTER) & ((ring == -np.inf) | (low > HOT_RATIO * np.maximum(ring, 0.0)))
    keep[0] = False
    return keep[lab]


def bright_spikes(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the hot pixels one pattern betrays by itself: spikes (:func:`_spikes`'s
    clusters of at most :data:`HOT_MAX_CLUSTER` pixels, :data:`HOT_RATIO` times everything around
    them) at least half as bright as the brightest pixel that is not one. No diffraction spot is
    that sharp *and* that bright next to the direct beam; a spike that is would be taken for the
    beam and every spot after it (a real SPED pattern with five: refused). Fainter spikes stay
    (they may be sharp spots); a detector's mask (``--mask``, or the map's, which finds them
    across a scan) removes those too."""
    x = np.asarray(image, dtype=np.float64)
    fast = _bright_spikes_scan(x) if x.size > _SCAN_PIXELS and np.isfinite(x).all() else None
    if fast is not None:
        return fast
    sp = _spikes(x)
    if not sp.any() or sp.all():
        return np.zeros_like(sp)
    top = float(x[~sp].max())
    return sp & (x >= 0.5 * top)


#: :func:`bright_spikes` on an image of more pixels than this decides only its brightest pixels
#: (:func:`_bright_spikes_scan`); smaller, the whole image (the same pixels either way).
_SCAN_PIXELS = 65536
#: :func:`_bright_spikes_scan` orders this many of the brightest pixels (at least).
_SCAN_FIRST = 4096


def _bright_spikes_scan(x: np.ndarray) -> np.ndarray | None:
    """:func:`bright_spikes`' pixels from the brightest down (None where the brightest
    :data:`_SCAN_FIRST` do not reach below half of the brightest pixel that is not a spike): only
    those pixels' 5 x 5 medians and clusters are needed, not the whole image's (a 2048 px frame:
    1.7 s -> ~0.15 s); the noise, a statistic of the whole image, as in :func:`_spikes`."""
    from edorient._prep_kernels import bright_spike_scan

    noise = _spike_noise(x)
    flat = x.ravel()
    t = order_stats.select(flat, flat.size - min(_SCAN_FIRST, flat.size))  # (the k-th brightest)
    sel = np.flatnonzero(flat >= t)  # (every pixel of the k-th value or brighter: ties too)
    order = sel[np.argsort(-flat[sel], kind="stable")]
    xc = np.ascontiguousarray(x)
    out, top, complete = bright_spike_scan(xc, order.astype(np.int64), noise, HOT_RATIO, HOT_SIGMAS, HOT_MAX_CLUSTER)
    if complete or (np.isfinite(top) and 0.5 * top > t):
        return out
    if len(order) == flat.size:  # (every pixel scanned: every one a spike, or none found below half)
        return out if np.isfinite(top) else np.zeros(x.shape, dtype=bool)
    if not np.isfinite(top):
        return None
    # the brightest pixel that is no spike is known; the pixels at least half as bright, if not
    # too many (a pattern whose beam barely stands out: the whole image is as quick)
    sel = np.flatnonzero(flat >= 0.5 * top)
    if len(sel) > flat.size // 4:
        return None
    order = sel[np.argsort(-flat[sel], kind="stable")]
    out, top2, complete = bright_spike_scan(xc, order.astype(np.int64), noise, HOT_RATIO, HOT_SIGMAS, HOT_MAX_CLUSTER)
    return out if top2 == top else None  # (the same scan, further: the same top)


def with_bad_pixels(image: np.ndarray, bad: np.ndarray | None) -> tuple[np.ndarray, tuple[np.ndarray, dict]]:
    """(the image with its ``bad`` pixels set to 0, its :func:`validity_mask` with them invalid):
    the detector's defects or a user's mask (True = ignore) kept out of the centre finding (a hot
    pixel can outshine the direct beam), the background and the fits."""
    x = np.asarray(image, dtype=np.float64)
    if bad is None or not bad.any():
        return x, validity_mask(x)
    if bad.shape != x.shape:
        raise EdorientError(f"the detector mask is {bad.shape[0]} x {bad.shape[1]} px but the pattern is "
                            f"{x.shape[0]} x {x.shape[1]}; give a mask of the detector's size")
    x = np.where(bad, 0.0, x)
    mask, report = validity_mask(x)
    report["detector_mask_px"] = int(bad.sum())
    return x, (mask & ~bad, report)


#: A saturated region this many pixels or more, this many times longer than wide
#: (:func:`_saturated_streaks`), is a CCD's blooming streak, not a spot: masked.
STREAK_MIN_PX = 12
STREAK_ELONGATION = 4.0


def _saturated_streaks(sat: np.ndarray) -> np.ndarray:
    """The saturated regions (8-connected) of at least :data:`STREAK_MIN_PX` pixels whose length
    is at least :data:`STREAK_ELONGATION` times their width (the square roots of their pixel
    coordinates' covariance eigenvalues), grown by a pixel: the charge a CCD spills along its
    columns from a saturated beam. A spot, however clipped, is round."""
    lab, n = ndimage.label(sat, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros_like(sat)
    idx = np.arange(1, n + 1)
    rr, cc = np.nonzero(sat)
    k = lab[rr, cc]
    cnt = np.bincount(k, minlength=n + 1).astype(float)
    big = cnt >= STREAK_MIN_PX
    if not big[1:].any():
        return np.zeros_like(sat)
    c = np.maximum(cnt, 1)
    mr, mc = np.bincount(k, rr, n + 1) / c, np.bincount(k, cc, n + 1) / c
    vrr = np.bincount(k, rr * rr, n + 1) / c - mr**2
    vcc = np.bincount(k, cc * cc, n + 1) / c - mc**2
    vrc = np.bincount(k, rr * cc, n + 1) / c - mr * mc
    half = np.sqrt(((vrr - vcc) / 2) ** 2 + vrc**2)
    lmax, lmin = (vrr + vcc) / 2 + half, (vrr + vcc) / 2 - half
    # (a one-pixel-wide line has variance 1/12 across it: the floor keeps its ratio finite)
    streak = big & (np.sqrt(lmax / np.maximum(lmin, 1.0 / 12.0)) >= STREAK_ELONGATION)
    if not streak[1:].any():
        return np.zeros_like(sat)
    return ndimage.binary_dilation(np.isin(lab, idx[streak[1:]]), iterations=1)


def validity_mask(image: np.ndarray, min_flat_area: int = MIN_FLAT_AREA) -> tuple[np.ndarray, dict]:
    """Mask (True = signal) of flat patches and saturation streaks, and a report of them and of
    the saturated pixels.

    Saturated pixels (two or more at the image's maximum) are counted, not masked: a clipped
    spot is still a bright spot where it is (its value a lower bound of its intensity), and the
    direct beam's disc is cleared anyway. Masked, a saturated spot became a dark hole in a
    bright rim, which the template search reads as a ring: on pyemaps' sample SAD pattern of
    Al near [1 1 4] (two 220-type spots saturated beside the beam) the search then took the
    edge of the calibration range and a zone 28° away; kept, [1 1 4] within 1° and the
    calibration within 1 % from starts 10 % off either way (docs/results.md, "Real patterns").
    Only a long thin saturated region, a CCD's blooming streak, is masked (:func:`_saturated_streaks`)."""
    x = np.asarray(image, dtype=np.float64)
    flat = _flat_patches(x, min_flat_area)
    sat = x >= float(x.max())
    n_sat = int(np.count_nonzero(sat))
    streaks = _saturated_streaks(sat) if n_sat >= STREAK_MIN_PX else np.zeros_like(sat)
    mask = ~(flat | streaks)
    report = {"flat_patches_px": int(flat.sum()), "saturated_px": n_sat if n_sat >= 2 else 0,
              "saturation_streaks_px": int(streaks.sum())}
    if np.count_nonzero(mask) < 0.2 * mask.size:
        raise EdorientError("less than 20 % of the image carries signal after masking flat patches; "
                            "check the file (is it a diffraction pattern?)")
    return mask, report


def radial_background(image: np.ndarray, centre: tuple[float, float], mask: np.ndarray,
                      rings: np.ndarray | None = None) -> np.ndarray:
    """The median of each one-pixel ring around ``centre`` over valid pixels, as an image.

    Rings with no valid pixel take the value of the nearest ring that has one; the profile is
    smoothed over three rings so that the step between rings does not print as circles.
    """
    rb = _rings(image.shape, centre) if rings is None else rings
    return _ring_profile(image, mask, rb)[0][rb]


def _ring_profile(image: np.ndarray, mask: np.ndarray, rings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`radial_background`'s profile, one value a ring; the valid pixels of each ring)."""
    from edorient._filter_kernels import group_medians

    n = int(rings.max()) + 1
    # every ring's median at once (compiled: the valid pixels bucketed by ring, a selection per bucket)
    every = mask.all()  # (then the whole image as it lies, no copy of the valid pixels)
    prof, counts = group_medians(
        kernel_array((rings if every else rings[mask]).ravel(), np.int64),
        kernel_array((image if every else np.asarray(image)[mask]).ravel(), np.float64), n)
    good = np.isfinite(prof)
    if not good.any():
        raise EdorientError("no valid pixel to estimate the background from")
    if not good.all():  # (where every ring has a value the interpolation returns them as they are)
        prof = np.interp(np.arange(n), np.flatnonzero(good), prof[good])
    return ndimage.uniform_filter1d(prof, 3, mode="nearest"), counts


def _rings(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    """Each pixel's one-pixel ring (its distance from ``centre``, rounded; compiled)."""
    from edorient._prep_kernels import radii_rings

    return radii_rings(int(shape[0]), int(shape[1]), float(centre[0]), float(centre[1]))[1]


def _ring_coverage(shape, centre, mask, rings: np.ndarray | None = None, counts: np.ndarray | None = None) -> np.ndarray:
    """Share of each one-pixel ring (radius k) that lies inside the image and is valid
    (``counts``: the valid pixels of each ring, where known)."""
    rb = _rings(shape, centre) if rings is None else rings
    n = int(rb.max()) + 1
    have = (np.bincount((rb if mask.all() else rb[mask]).ravel(), minlength=n) if counts is None else counts).astype(float)
    full = np.maximum(2 * np.pi * np.arange(n), 1.0)
    return have / full


def _beam_radius(y: np.ndarray, centre, r: np.ndarray, minimum: float) -> float:
    """Radius of the bright blob around the centre (the direct beam with its saturated core)."""
    from edorient._prep_kernels import connected_to

    r0, c0 = int(round(centre[0])), int(round(centre[1]))
    if not (0 <= r0 < y.shape[0] and 0 <= c0 < y.shape[1]):
        return float(minimum)
    cap = 0.25 * min(y.shape)
    # only the window the answer can reach (a blob leaving it reaches the cap within it): the
    # same radius as labelling the whole image, 3x faster on a 128 px pattern
    h = int(np.ceil(cap)) + 2
    win = (slice(max(r0 - h, 0), r0 + h + 1), slice(max(c0 - h, 0), c0 + h + 1))
    y, r = y[win], r[win]
    near = r <= 3
    peak = float(y[near].max()) if near.any() else 0.0
    if peak <= 0:
        return float(minimum)
    # the 4-connected regions above a tenth of the peak that reach the centre (ndimage.label's,
    # compiled as a flood fill from the centre's pixels)
    blob = connected_to(np.ascontiguousarray(y > 0.1 * peak), np.ascontiguousarray(near))
    if not blob.any():
        return float(minimum)
    return float(max(minimum, min(r[blob].max() + 1.0, cap)))


def _beam_shows(x: np.ndarray, r: np.ndarray, mask: np.ndarray, beam_radius_px: float) -> bool:
    """Whether the direct beam shows at the centre: the median of its disc among the image's
    brightest 1 % (then no beam stop covers it)."""
    disc = x[r <= beam_radius_px]
    return disc.size > 0 and float(np.median(disc)) >= float(np.percentile(x[mask] if mask.any() else x, 99))


def _counts(x: np.ndarray) -> bool:
    """Whether the pattern holds whole numbers (a detector's counts, not a simulation's floats)."""
    return bool(np.all(x == np.round(x)))


def _sparse_count_noise(yo: np.ndarray) -> float:
    """The noise of a counting detector's frame whose pixels are mostly 0 or 1 count, where the
    median absolute deviation is 0 (half the pixels at the median) and a noise floor of 0 would
    keep every counted pixel: the standard deviation of the background-subtracted values below
    their 99th percentile (the spots left out). Measured (docs/results.md, session 29): 2048 px
    simulated anatase frames, halo ~0.2 counts a pixel, 6 -> 8 of 8 within 1°.

    >>> counts = np.random.default_rng(0).poisson(0.3, 100_000).astype(float)
    >>> round(_sparse_count_noise(counts), 2)  # Poisson: about sqrt(0.3) = 0.55
    0.52
    """
    low = yo[yo <= np.percentile(yo, 99)]
    return float(np.std(low)) if low.size else 0.0


def preprocess(image: np.ndarray, centre: tuple[float, float], beam_radius_px: float = 4.0,
               background: bool = True, validity: tuple[np.ndarray, dict] | None = None,
               fit_image: bool = False) -> Preprocessed:
    """Mask, background, noise floor and normalisation of a pattern whose beam is at ``centre``.

    ``beam_radius_px`` (file pixels) is the disc around the direct beam left out of the
    normalisation and of the beam-stop search; ``validity`` is :func:`validity_mask`'s result
    where the caller has it already (e.g. from finding the centre); ``fit_image`` also makes
    :attr:`Preprocessed.fit_image` (the refinement's, :data:`FIT_NOISE_SIGMAS`).
    """
    from edorient import _prep_kernels as kern

    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise EdorientError(f"preprocess needs one 2-D pattern, got shape {x.shape}")
    x = kernel_array(x, np.float64)
    mask, report = validity_mask(x) if validity is None else (validity[0].copy(), dict(validity[1]))
    mask = kernel_array(mask, bool)
    # (compiled passes over the pixels, the same values as the numpy steps they stand for:
    # edorient._prep_kernels; the map prepares every pattern of a scan)
    r, rings = kern.radii_rings(x.shape[0], x.shape[1], float(centre[0]), float(centre[1]))
    steps: dict = {"mask": report}
    counts = None
    if background:
        prof, counts = _ring_profile(x, mask, rings)
        # y = x - the ring medians as an image; yo: y where valid outside the beam's disc
        y, yo = kern.subtract_rings(x, prof, rings, r, mask, float(beam_radius_px))
        steps["background"] = {"method": "radial median",
                               "mean_removed": round(float(np.dot(prof, counts) / max(counts.sum(), 1)), 6)}
    else:
        y = x - np.median(x[mask])
        yo = y[mask & (r > beam_radius_px)]
        steps["background"] = {"method": "global median"}
    if yo.size < 50:
        raise EdorientError("too few valid pixels away from the direct beam; check --centre and the file")
    med = float(order_stats.median(yo))  # (np.median's value, 2-5x faster: edorient._utils.order_stats)
    noise = float(1.4826 * order_stats.median(np.abs(yo - med)))
    if noise == 0.0 and _counts(x):
        noise = _sparse_count_noise(yo)
    # a beam stop: a large connected region far below the background (a rod with its holder)
    # (only where there is noise to be below, and reaching the centre: a stop covers the beam).
    # Not searched on the direct beam's flank (within twice its radius), where a ring's median is
    # no background: one side of a bright beam whose centre is off the ring centre by a fraction
    # of a pixel lies far below it (a simulated scan's patterns, noise 4.7 counts under a
    # 15,000-count beam, all reported a ~156 px "stop" there); a stop found is joined by that disc.
    min_stop = max(30, 0.002 * x.size)
    stop = None
    # A stop covers the direct beam: where the beam shows at the centre (the median of its disc
    # among the image's brightest 1 %), there is none. Without this, the far side of a halo centred
    # a few pixels off the beam (an SAD pattern with saturated spots beside the beam, pyemaps'
    # Al sample) lay 5 noise sigmas below its rings' medians and was masked as a 1,300 px "stop".
    # (fewer dark pixels than a stop's least size: no region can be one, nothing to label; that
    # count, compiled, first: the map prepares every pattern of a scan)
    if (noise > 0 and kern.count_dark(y, med - 5 * noise, mask, r, 2 * beam_radius_px) >= min_stop
            and not _beam_shows(x, r, mask, beam_radius_px)):
        inner = r <= 2 * beam_radius_px
        dark = (y < med - 5 * noise) & mask & ~inner
        lab, n = ndimage.label(ndimage.binary_opening(dark, iterations=1))
        if n:
            # each region's size (the opening keeps only dark pixels), then the distance from the
            # centre only of those large enough (usually none: dark noise makes small regions)
            sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
            large = 1 + np.flatnonzero(sizes >= min_stop)
            reach_px = max(3 * beam_radius_px, 0.1 * min(x.shape))
            big = [k for k in large if float(r[lab == k].min()) <= reach_px]
            if big:
                stop = ndimage.binary_dilation(np.isin(lab, big), iterations=2) | inner
                mask = mask & ~stop
                counts = None  # (the rings' valid pixels are fewer now)
    steps["mask"]["beam_stop_px"] = 0 if stop is None else int(stop.sum())
    soft = np.clip(y - FIT_NOISE_SIGMAS * noise, 0, None) if fit_image and FIT_NOISE_SIGMAS != NOISE_SIGMAS else None
    kern.floor_noise(y, NOISE_SIGMAS * noise, mask)  # y = clip(y - floor, 0), 0 where masked
    # the direct beam is in every pattern of every crystal: left in, it alone would make pure
    # noise score like a pattern. Its disc (the bright blob around the centre, at least
    # beam_radius_px) is cleared, and the search's templates have no direct beam either.
    beam_r = _beam_radius(y, centre, r, beam_radius_px)
    yv = kern.clear_beam(y, r, beam_r, mask, float(beam_radius_px))  # (and y where valid outside the disc)
    if soft is not None:
        soft[~mask | (r <= beam_r)] = 0.0
    steps["direct_beam_radius_px"] = round(beam_r, 2)
    scale = float(order_stats.percentile(yv, NORM_PERCENTILE)) if yv.size else 0.0
    steps["signal"] = bool(scale > 0)  # False: nothing above the noise floor (the search then finds no match)
    y = y / scale * SPOT_LEVEL if scale > 0 else y
    if soft is not None and scale > 0:
        soft = soft / scale * SPOT_LEVEL
    cov = _ring_coverage(x.shape, centre, mask, rings, counts)
    ok = np.flatnonzero(cov >= RING_COVERAGE)
    radius = float(ok[-1]) if ok.size else 0.0
    if radius < 3 * beam_radius_px:
        raise EdorientError(f"the pattern has valid data only out to {radius:.0f} px around the direct beam at "
                            f"({centre[0]:.1f}, {centre[1]:.1f}); check --centre")
    steps.update({"noise_floor": round(NOISE_SIGMAS * noise, 6),
                  "normalisation": f"{NORM_PERCENTILE} percentile of valid pixels -> {SPOT_LEVEL}",
                  "data_radius_px": radius, "valid_share": round(np.count_nonzero(mask) / mask.size, 4)})
    return Preprocessed(y.astype(np.float32), mask, (float(centre[0]), float(centre[1])), radius, noise, steps,
                        None if soft is None else soft.astype(np.float32))
