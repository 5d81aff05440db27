"""Method 2 without an oracle, and its stage 2 (which the thesis never built).

Stage 1 keeps one of the two estimates of Method 1. The thesis keeps the one whose *true* error
is smaller (an oracle; :func:`edorient.evaluation.metrics.method2_oracle`); a user can instead
keep the one whose simulated pattern correlates best with the image (:func:`pick_by_score`).

Stage 2 takes the kept direction, finds its in-plane angle and family (d or -d: mirror-image
patterns of one label) by a 1-D search by FFT (see
:mod:`edorient.indexing.matching`), simulates its spots, erases them from the image (discs
around their positions; the shared direct beam stays), and estimates the other grain's direction
from what is left with a single-crystal estimator (the single-crystal CNN, or template matching).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edorient.indexing.matching import PatternScorer, erase_spots
from edorient.render import Simulator


def head_scores(scorer: PatternScorer, image01: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Best-over-in-plane correlation of the image with each head's direction: (n_heads,)."""
    return scorer.score(image01, np.asarray(heads, dtype=float))[0]


def pick_by_score(scorer: PatternScorer, images01: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each image (n, H, W) and its two estimates (n, 2, 3): scores (n, 2) and the kept head (n,)."""
    scores = np.stack([head_scores(scorer, im, p) for im, p in zip(images01, pred)])
    return scores, np.argmax(scores, axis=1)


@dataclass
class Stage2Result:
    """Outcome of stage 2 for one image."""

    direction: np.ndarray  #: estimate of the other grain's beam direction (3,)
    kept_rotation: np.ndarray  #: orientation found for the kept grain (3, 3): family and in-plane angle
    kept_score: float  #: correlation of the kept grain's pattern with the image
    erased: np.ndarray  #: the image with the kept grain's spots erased (H, W) in [0, 1]


def stage2(
    image01: np.ndarray,
    kept_direction: np.ndarray,
    simulator: Simulator,
    estimator: Callable[[np.ndarray], np.ndarray],
    scorer: PatternScorer | None = None,
    erase_radius_px: float | None = None,
    min_intensity: float = 1e-3,
) -> Stage2Result:
    """Erase the kept grain's spots and estimate the other grain.

    Parameters
    ----------
    image01
        The bicrystal image after the display transform, (H, W) in [0, 1].
    kept_direction
        Beam direction (3,) kept by stage 1.
    simulator
        Simulator with the image's size and calibration.
    estimator
        Single-crystal estimator: (H, W) image in [0, 1] -> direction (3,).
    scorer
        Reused between calls to save the polar set-up; made from ``simulator`` if None.
    erase_radius_px
        Disc radius; default 2.5 spot sigmas.
    min_intensity
        Only the kept grain's spots at least this bright (relative to the direct beam) are erased.
    """
    scorer = scorer or PatternScorer(simulator)
    score, rotations = scorer.score(image01, np.asarray(kept_direction, dtype=float)[None])
    R = rotations[0]
    spots = simulator.spots(R)
    bright = spots.intensity >= min_intensity
    pixels = simulator.spot_pixels(spots)[bright]
    radius = 2.5 * simulator.config.spot_sigma_px if erase_radius_px is None else erase_radius_px
    erased = erase_spots(image01, pixels, radius)
    direction = np.asarray(estimator(erased), dtype=float)
    return Stage2Result(direction / np.linalg.norm(direction), R, float(score[0]), erased)
