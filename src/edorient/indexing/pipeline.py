"""One pattern in, its grain(s) out: preprocessing, search, second grain, refinement, verdict.

This is what ``edorient predict`` (and the map command, pattern by pattern) runs without a
trained model:

1. :func:`~edorient.indexing.preprocess.preprocess`: mask, radial background, noise floor,
   normalisation, data radius;
2. :class:`~edorient.indexing.search.PatternSearch`: the working frame, the calibration scale and
   effective thickness fitted, the best distinct solutions;
3. a second grain (``grains=2``) by Method 2's stage 2 on the working image (the first grain's
   spots erased), reported as real only where its pattern scores on what is left;
4. the refinement (:class:`~edorient.indexing.refine.Refiner`) from the solution, kept per grain
   only where the kinematic spot model explains the image and pins the grain
   (:data:`REFINE_MIN_FIT`, :data:`REFINE_MAX_UNCERTAINTY_DEG`): on dynamical, precession or
   figure patterns its fit can drift, and the search's answer then stands;
5. the verdict per grain (:mod:`~edorient.indexing.verdict`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from edorient.errors import EdorientError
from edorient.indexing import verdict as vd
from edorient.indexing.search import PatternSearch, SearchConfig, SearchResult, to_file_pixels

#: A refined grain is kept when the kinematic spot model explains the image (the refinement's
#: fit score is at least ``REFINE_MIN_FIT``) and pins the grain (its one-sigma uncertainty is
#: below ``REFINE_MAX_UNCERTAINTY_DEG``); otherwise the search's answer stands. Measured on the
#: development set: the fit of the SAD figure cuni_110 scores 0.15 (dynamical intensities) and
#: drifted 1° from the search's 0.6°; the precession pattern with a second phase (al_001_T1)
#: fits at 0.98 but with a 0.5-1.7° uncertainty and moved 1.4°; with these two rules both keep the
#: search's answer, while simulated patterns (fit > 0.9, uncertainty < 0.3°) keep the refinement.
REFINE_MIN_FIT = 0.5
REFINE_MAX_UNCERTAINTY_DEG = 0.35
#: One grain: the refined pattern may score at most this much below the search's (the
#: refinement also moves centre and scale, which the search's frame does not see). Measured on
#: 12 simulated patterns with a halo and Poisson noise: without it the refinement, though it fit
#: at 0.7-0.97 with < 0.35° uncertainty, moved the median from 0.6° to 0.72° (a kinematic fit
#: of a background-subtracted pattern is biased); a bicrystal's per-grain score is no guide (each
#: pattern is half the image), so there only the fit and the uncertainty decide.
REFINE_TOLERANCE = 0.01


@dataclass(frozen=True)
class IndexConfig:
    """How to index one pattern."""

    calibration: float
    """Å⁻¹ per pixel of the file: the starting value of the fitted scale."""
    centre: tuple[float, float]
    """(row, col) of the direct beam in the file."""
    grains: int = 1
    refine: bool = True
    background: bool = True
    search: SearchConfig = SearchConfig()
    device: str = "cpu"


@dataclass
class Grain:
    """One grain's answer."""

    rotation: np.ndarray
    label: np.ndarray
    score: float
    margin: float
    verdict: str
    runner_ups: list = field(default_factory=list)
    """[(label (3,), score)] of the next distinct solutions."""
    uncertainty_deg: float | None = None
    inplane_uncertainty_deg: float | None = None
    refinement: str = "off"
    """``off``, ``kept`` or ``rejected`` (the refined fit scored worse)."""
    coarse_rotation: np.ndarray | None = None
    spot_agreement: float | None = None
    """Share of the image's brightest spots this grain's pattern explains (first grain)."""
    sharpness: float | None = None
    """Search score minus the best score 2° away (first grain)."""


@dataclass
class PatternResult:
    grains: list[Grain]
    pre: object
    search: SearchResult
    second_grain: dict | None = None
    refinement: dict | None = None
    timings: dict = field(default_factory=dict)


def spot_agreement(pre, res: SearchResult, rotation: np.ndarray, calibration: float, n_obs: int = 30) -> tuple[float, int]:
    """Intensity-weighted share of the image's brightest spots that the orientation predicts.

    The spots are found in the preprocessed pattern (file pixels, the mask applied); the
    predicted ones (relative intensity >= 1e-3) are mapped from the working frame to the file
    with the fitted scale; a spot is explained when a predicted one lies within
    ``max(2, 0.03 x data radius)`` file pixels. Returns (share, spots used).
    """
    from edorient.indexing.spots import find_spots

    spots = find_spots(pre.image, pre.mask, max_spots=2 * n_obs)
    rr = np.hypot(spots.positions[:, 0] - pre.centre[0], spots.positions[:, 1] - pre.centre[1])
    beam = float(pre.steps.get("direct_beam_radius_px", 4.0))
    keep = (rr > beam + 1) & (rr < 0.95 * pre.data_radius_px)
    P, intensity = spots.positions[keep][:n_obs], spots.intensity[keep][:n_obs]
    if len(P) == 0 or intensity.sum() <= 0:
        return 0.0, 0
    sim = res.simulator
    sp = sim.spots(rotation)
    pix = sim.spot_pixels(sp)[sp.intensity >= 1e-3]
    if len(pix) == 0:
        return 0.0, len(P)
    pf = to_file_pixels(pix, sim.config.image_size, pre.centre,
                        sim.config.resolved_calibration / (calibration * res.scale))
    d = np.sqrt(((P[:, None, :] - pf[None]) ** 2).sum(-1)).min(1)
    tol = max(2.0, 0.03 * pre.data_radius_px)
    return float((intensity * (d <= tol)).sum() / intensity.sum()), int(len(P))


def _searcher(crystal, cfg: IndexConfig, pre, cache: dict | None) -> PatternSearch:
    key = (id(crystal), round(np.log(cfg.calibration * pre.data_radius_px) / 0.01), cfg.search)
    if cache is not None and key in cache:
        return cache[key]
    s = PatternSearch(crystal, cfg.calibration, pre.data_radius_px, cfg.search)
    if cache is not None:
        cache[key] = s
    return s


def index_pattern(image: np.ndarray, cfg: IndexConfig, crystal, cache: dict | None = None,
                  validity: tuple | None = None) -> PatternResult:
    """Index one pattern (file pixels); ``cache`` (a dict) keeps searchers between calls;
    ``validity``: the pattern's :func:`~edorient.indexing.preprocess.validity_mask` if known."""
    from edorient.indexing.matching import PatternScorer
    from edorient.indexing.method2 import stage2
    from edorient.indexing.preprocess import preprocess

    if cfg.grains not in (1, 2):
        raise EdorientError(f"grains must be 1 or 2, got {cfg.grains}")
    t0 = time.perf_counter()
    pre = preprocess(image, cfg.centre, background=cfg.background, validity=validity)
    t1 = time.perf_counter()
    searcher = _searcher(crystal, cfg, pre, cache)
    res = searcher.search(pre)
    t2 = time.perf_counter()
    if not res.candidates:
        raise EdorientError("the template search found no candidate; check the calibration and the centre")
    scorer = PatternScorer(res.simulator)
    best = res.candidates[0]
    runner = res.candidates[1:]
    margin = best.score - runner[0].score if runner else best.score
    rotations = [best.rotation]
    scores = [best.score]
    second = None
    if cfg.grains == 2:
        matcher = searcher.matcher
        st = stage2(res.image01, best.rotation[2], res.simulator, matcher, scorer=scorer,
                    erase_radius_px=max(3.0, 2.5 * res.simulator.config.spot_sigma_px))
        c2, R2 = scorer.score(res.image01, st.direction[None])
        c_left, _ = scorer.score(st.erased, st.direction[None])
        apart = float(crystal.laue.angle(best.rotation[2][None], R2[0][2][None])[0])
        real = bool(c_left[0] >= vd.SECOND_GRAIN_SCORE and apart > cfg.search.distinct_deg)
        second = {"real": real, "score_after_erasing": round(float(c_left[0]), 4),
                  "angle_to_first_deg": round(apart, 3)}
        rotations.append(R2[0])
        scores.append(float(c2[0]))
    rotations = np.stack(rotations)
    coarse = rotations.copy()
    status = "off"
    refinement = None
    unc = inpl = [None] * len(rotations)
    resolved = np.zeros(len(rotations), dtype=bool)
    t3 = time.perf_counter()
    if cfg.refine:
        from edorient.indexing.proposals import grain_starts
        from edorient.indexing.refine import Refiner

        refiner = Refiner(crystal, res.simulator.config, device=cfg.device)
        starts = [grain_starts(scorer, res.image01, R) for R in rotations]
        if len(rotations) == 1 and runner and margin < vd.MIN_MARGIN:
            # the search could not tell the best from another zone: the fit starts from both
            starts[0] = list(starts[0]) + list(grain_starts(scorer, res.image01, runner[0].rotation))
        hyps = np.stack([np.stack(c) for c in itertools.product(*starts)])
        out = refiner.refine(res.image01[None], hyps[None])
        # the refined grains in the order of the coarse ones (order-free for two)
        order = np.arange(len(rotations))
        if len(rotations) == 2 and crystal.laue.angle(out.rotations[0, 0, 2][None], rotations[0][2][None])[0] > \
                crystal.laue.angle(out.rotations[0, 1, 2][None], rotations[0][2][None])[0]:
            order = order[::-1]
        Rr = out.rotations[0][order]
        u = out.uncertainty_deg[0][order]
        ui = out.inplane_uncertainty_deg[0][order]
        new = np.array([scorer.score(res.image01, R[2][None], both_families=False)[0][0] for R in Rr])
        keep = (float(out.scores[0]) >= REFINE_MIN_FIT) & (u < REFINE_MAX_UNCERTAINTY_DEG)
        if len(Rr) == 1:  # and, for one grain, its pattern must not score worse under the search's
            # objective, unless the search could not tell two zones apart (then the fit decides)
            keep &= (new >= np.array(scores) - REFINE_TOLERANCE) | (margin < vd.MIN_MARGIN)
        resolved = keep & ~out.direction_ambiguous[0][order]
        status = ["kept" if k else "rejected" for k in keep]
        rotations = np.where(keep[:, None, None], Rr, rotations)
        scores = [float(n) if k else s for n, k, s in zip(new, keep, scores)]
        unc = [float(u[g]) if keep[g] else None for g in range(len(keep))]
        inpl = [float(ui[g]) if keep[g] else None for g in range(len(keep))]
        refinement = {"centre_offset_px": [round(float(v), 3) for v in out.centre_px[0]],
                      "calibration_scale": round(float(out.calibration_scale[0]), 5),
                      "grain_ratio": round(float(out.ratio[0]), 4) if len(rotations) == 2 else None,
                      "fit_score": round(float(out.scores[0]), 4),
                      "direction_ambiguous": [bool(v) for v in out.direction_ambiguous[0][order]]}
    t4 = time.perf_counter()
    agreement, n_spots = spot_agreement(pre, res, rotations[0], cfg.calibration)
    # how sharply the score falls 2° away from the first grain: a sparse pattern can be matched
    # about as well over several degrees, and then the direction is not known to 2°
    from edorient.indexing.matching import _ring

    ring = crystal.laue.reduce_proper(_ring(coarse[0][2], 2.0))
    ring_scores, _ = scorer.score(res.image01, ring, both_families=False)
    sharpness = float(best.score - ring_scores.max())
    grains = []
    for g, (R, s) in enumerate(zip(rotations, scores)):
        label = crystal.laue.reduce(R[2])
        if g == 0:
            m, ru = margin, [(c.label, c.score) for c in runner]
            # a refinement that pinned the grain and found no other zone as good settles a close call
            v = vd.verdict(s, max(m, vd.MIN_MARGIN) if resolved[0] else m, agreement)
        else:
            m, ru = float("nan"), []
            v = vd.verdict(s, np.inf) if second and second["real"] else "no match"
        grains.append(Grain(R, label, float(s), float(m), v, ru, unc[g], inpl[g],
                            status if isinstance(status, str) else status[g], coarse[g],
                            round(agreement, 4) if g == 0 else None, round(sharpness, 4) if g == 0 else None))
    return PatternResult(grains, pre, res, second, refinement,
                         {"preprocess_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3),
                          "second_grain_s": round(t3 - t2, 3), "refine_s": round(t4 - t3, 3), "spots_used": n_spots, **res.timings})
