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
the other family (by :class:`~edorient.evaluation.matching.PatternScorer`) with its half turn.
For bicrystals the hypotheses are the combinations of both grains' starts.
"""

from __future__ import annotations

import itertools

import numpy as np

from edorient.evaluation.matching import PatternScorer, TemplateMatcher
from edorient.physics.orientation import rz

__all__ = ["bicrystal_hypotheses", "grain_starts", "half_turn", "single_hypotheses"]

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
    (:func:`edorient.evaluation.method2.stage2`) -- A's spots erased, template matching on what is
    left, whose orientation (not only its direction) is kept. Each grain gets
    :func:`grain_starts`; the hypotheses are all their combinations (A's estimate first).
    """
    from edorient.evaluation.method2 import stage2

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
