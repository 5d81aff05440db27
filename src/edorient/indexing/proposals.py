"""Orientation hypotheses for :class:`~edorient.indexing.refine.Refiner` from the coarse estimators.

A coarse estimate leaves two near-symmetries of a kinematic pattern open, and the refinement
cannot cross either by itself (they are not small rotations):

- the **half turn about the beam** ``Rz(180°) R``: the zero-order Laue zone is centrosymmetric
  (Friedel's law), so near a zone axis ``R`` and ``Rz(180°) R`` give almost the same pattern; the
  refinement from the wrong one ends at the zone axis tilted the other way (same label, but a
  beam direction off by twice the tilt from the zone axis);
- the **mirror family**: the orientations with beam direction ``d`` and ``-d`` (one label, mirror
  image patterns, see :meth:`~edorient.physics.symmetry.LaueGroup.reduce_proper`); near a mirror
  plane of the crystal the two are alike.

So every grain gets up to four starts: the estimate, its half turn, and the best orientation of
the other family (by :class:`~edorient.indexing.matching.PatternScorer`) with its half turn.
For bicrystals the hypotheses are the combinations of both grains' starts.
"""

from __future__ import annotations

import itertools

import numpy as np

from edorient.indexing.matching import PatternScorer, TemplateMatcher
from edorient.physics.orientation import rz

__all__ = ["bicrystal_hypotheses", "explained_peaks", "grain_starts", "half_turn", "image_peaks", "partner_hypotheses",
           "refine_bicrystals",
           "single_hypotheses"]

_RZ180 = rz(180.0)


def half_turn(R: np.ndarray) -> np.ndarray:
    """``Rz(180°) R``: the same beam direction, the pattern turned by a half turn."""
    return _RZ180 @ np.asarray(R, dtype=float)


def grain_starts(scorer: PatternScorer, image01: np.ndarray, R: np.ndarray, flips: bool = True,
                 families: bool = True) -> np.ndarray:
    """Starts for one grain of estimate ``R`` (3, 3): ``R``, then (``families``) the best
    orientation of the other family, then (``flips``) the half turns of those: (h, 3, 3)."""
    R = np.asarray(R, dtype=float)
    out = [R]
    if families:
        d = R[2]
        _, rot = scorer.score(image01, -d[None], both_families=False)
        out.append(rot[0])
    if flips:
        out += [half_turn(r) for r in out]
    return np.stack(out)


def single_hypotheses(matcher: TemplateMatcher, images01: np.ndarray, flips: bool = True,
                      families: bool = True) -> np.ndarray:
    """Hypotheses (n, h, 1, 3, 3) for single-crystal images (n, H, W) from template matching."""
    images01 = np.asarray(images01, dtype=np.float32)
    out = []
    for im in images01:
        _, R, _ = matcher.match(im)
        out.append(grain_starts(matcher.scorer, im, R, flips, families))
    return np.stack(out)[:, :, None]


def bicrystal_hypotheses(matcher: TemplateMatcher, images01: np.ndarray, flips: bool = True,
                         families: bool = False, erase_radius_px: float | None = None) -> np.ndarray:
    """Hypotheses (n, h, 2, 3, 3) for bicrystal images (n, H, W).

    Grain A: template matching on the image. Grain B: Method 2's stage 2
    (:func:`edorient.indexing.method2.stage2`) -- A's spots erased, template matching on what is
    left, whose orientation (not only its direction) is kept. Each grain gets
    :func:`grain_starts`; the hypotheses are all their combinations (A's estimate first).
    """
    from edorient.indexing.method2 import stage2

    images01 = np.asarray(images01, dtype=np.float32)
    sim = matcher.scorer.simulator
    kept: dict[str, np.ndarray] = {}

    def estimator(erased: np.ndarray) -> np.ndarray:  # template matching that keeps its orientation
        d, R, _ = matcher.match(erased)
        kept["R"] = R
        return d

    out = []
    for im in images01:
        dA, RA, _ = matcher.match(im)
        st = stage2(im, dA, sim, estimator, scorer=matcher.scorer, erase_radius_px=erase_radius_px)
        RB = kept["R"]
        a = grain_starts(matcher.scorer, im, RA, flips, families)
        b = grain_starts(matcher.scorer, st.erased, RB, flips, families)
        out.append(np.stack([np.stack([ra, rb]) for ra, rb in itertools.product(a, b)]))
    return np.stack(out)


def _grain_pixels(refiner, result, i: int, g: int, min_intensity: float) -> np.ndarray:
    """(k, 2) pixels (rows, cols) of grain g's refined spots in image i, with the refined centre
    offset and calibration, for the spots at least ``min_intensity`` bright (weighted)."""
    from edorient import conventions as cv

    model = refiner.model
    pos, _, inten = (t.double().cpu().numpy()[0] for t in model.spots(result.rotations[i, g][None]))
    w = result.ratio[i] if g == 0 else 1.0 - result.ratio[i]
    keep = inten * (w if result.rotations.shape[1] == 2 else 1.0) >= min_intensity
    cal = refiner.config.resolved_calibration * result.calibration_scale[i]
    r0, c0 = cv.centre_pixel(refiner.config.image_size)
    rows = r0 + result.centre_px[i, 0] - pos[keep, 1] / cal
    cols = c0 + result.centre_px[i, 1] + pos[keep, 0] / cal
    return np.stack([rows, cols], 1)


def partner_hypotheses(refiner, matcher: TemplateMatcher, images01: np.ndarray, res, min_intensity: float = 5e-4,
                       erase_radius_px: float | None = None) -> np.ndarray:
    """(n, 6, 2, 3, 3) hypotheses of :func:`refine_bicrystals`' further passes from a refined
    bicrystal ``res`` of ``images01``: the best pair, the best distinct competitor, and each
    refined grain paired with the template match (and its half turn) of the image with that
    grain's refined spots erased."""
    from edorient.indexing.matching import erase_spots

    radius = 2.5 * refiner.config.spot_sigma_px if erase_radius_px is None else erase_radius_px
    new = []
    for i, im in enumerate(np.asarray(images01, dtype=np.float32)):
        best = res.rotations[i]
        order = np.argsort(-res.hypothesis_scores[i])
        second = res.hypothesis_rotations[i, order[1]] if len(order) > 1 else best
        hyp = [best, second]
        for g in (0, 1):
            erased = erase_spots(im, _grain_pixels(refiner, res, i, g, min_intensity), radius)
            _, R_other, _ = matcher.match(erased)
            for r in (R_other, half_turn(R_other)):
                pair = [best[g], r] if g == 0 else [r, best[g]]
                hyp.append(np.stack(pair))
        new.append(np.stack(hyp))
    return np.stack(new)


def refine_bicrystals(refiner, matcher: TemplateMatcher, images01: np.ndarray, hypotheses: np.ndarray | None = None,
                      passes: int = 2, min_intensity: float = 5e-4, erase_radius_px: float | None = None):
    """Refine bicrystals, then look again for each grain's partner.

    Pass 1 refines ``hypotheses`` (default :func:`bicrystal_hypotheses`). Each further pass
    erases one refined grain's spots from the image (positions from the refined orientation,
    centre and calibration, so the erasure fits far better than stage 2's first guess), runs
    template matching on what is left for the other grain, and refines again from: the previous
    best pair, the previous best distinct competitor, and each refined grain paired with the new
    partner and its half turn. Stage 2's partner is the usual failure of the first pass (its
    erasure leaves enough of grain A for template matching to lock onto).

    Returns the :class:`~edorient.indexing.refine.RefineResult` of the last pass.
    """
    images01 = np.asarray(images01, dtype=np.float32)
    if hypotheses is None:
        hypotheses = bicrystal_hypotheses(matcher, images01)
    res = refiner.refine(images01, hypotheses)
    radius = 2.5 * refiner.config.spot_sigma_px if erase_radius_px is None else erase_radius_px
    for _ in range(passes - 1):
        res = refiner.refine(images01, partner_hypotheses(refiner, matcher, images01, res, min_intensity, radius),
                             ratio=0.5)
    return res


def image_peaks(image01: np.ndarray, n_peaks: int = 20, min_value: float = 0.12, blur_px: float = 1.0,
                min_radius_px: float = 4.0) -> np.ndarray:
    """(k, 2) pixels (rows, cols) of the ``n_peaks`` brightest local maxima (5 x 5) of a display
    image blurred by ``blur_px``, at least ``min_value`` above its median and ``min_radius_px``
    from the direct beam: the spots a fit has to explain."""
    from scipy import ndimage

    from edorient import conventions as cv

    im = ndimage.gaussian_filter(np.asarray(image01, dtype=np.float32), blur_px)
    im = im - np.median(im)
    peak = (im == ndimage.maximum_filter(im, size=5)) & (im >= min_value)
    r0, c0 = cv.centre_pixel(im.shape[0])
    rows, cols = np.nonzero(peak)
    far = (rows - r0) ** 2 + (cols - c0) ** 2 >= min_radius_px**2
    rows, cols = rows[far], cols[far]
    order = np.argsort(-im[rows, cols])[:n_peaks]
    return np.stack([rows[order], cols[order]], 1).astype(float)


def explained_peaks(refiner, result, images01: np.ndarray, radius_px: float = 2.5, min_intensity: float = 5e-4,
                    n_peaks: int = 20) -> np.ndarray:
    """(n,) share of each image's brightest spots (:func:`image_peaks`) that lie within
    ``radius_px`` of a spot of the refined model (any grain, peak >= ``min_intensity``).

    The refined correlation is measured at the model's own spots, so a wrong orientation whose
    few spots sit on real ones can still score high; spots the model does not predict betray
    it (a missed or wrong grain). NaN where the image has no spot to explain.
    """
    out = np.full(len(images01), np.nan)
    G = result.rotations.shape[1]
    for i, im in enumerate(np.asarray(images01, dtype=np.float32)):
        pk = image_peaks(im, n_peaks)
        if not len(pk):
            continue
        pred = np.concatenate([_grain_pixels(refiner, result, i, g, min_intensity) for g in range(G)])
        if not len(pred):
            out[i] = 0.0
            continue
        d2 = ((pk[:, None, :] - pred[None, :, :]) ** 2).sum(-1).min(1)
        out[i] = float(np.mean(d2 <= radius_px**2))
    return out
