"""One pattern in, its grain(s) out: preprocessing, search, second grain, refinement, verdict.

This is what ``edorient predict`` (and the map command, pattern by pattern) runs without a
trained model:

1. :func:`~edorient.indexing.preprocess.preprocess`: mask, radial background, noise floor,
   normalisation, data radius;
2. :class:`~edorient.indexing.search.PatternSearch`: the working frame, the calibration scale and
   effective thickness fitted, the best distinct solutions;
3. a second grain (``grains=2``) by Method 2's stage 2 on the working image (the first grain's
   spots erased), reported as real only where its pattern scores on what is left;
4. the refinement (:class:`~edorient.indexing.refine.Refiner`) from the solution, kept only where
   the refined orientation scores at least as well under the search's objective (the spot model
   is kinematic; on dynamical, precession or figure patterns its fit can drift, and the
   correlation is the objective whose thresholds are measured on real patterns);
5. the verdict per grain (:mod:`~edorient.indexing.verdict`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from edorient.errors import EdorientError
from edorient.indexing import verdict as vd
from edorient.indexing.search import PatternSearch, SearchConfig, SearchResult

#: A refined orientation is kept only when its pattern scores better under the search's
#: objective (by more than this). Measured: accepting refinements that score up to 0.02 worse
#: (the refinement also moves centre and scale, which the search's frame does not see) helped
#: simulated patterns but moved al_001_T1 (a second phase) from 0.4° to 1.8° off its zone.
REFINE_TOLERANCE = 0.0


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


@dataclass
class PatternResult:
    grains: list[Grain]
    pre: object
    search: SearchResult
    second_grain: dict | None = None
    refinement: dict | None = None
    timings: dict = field(default_factory=dict)


def _searcher(crystal, cfg: IndexConfig, pre, cache: dict | None) -> PatternSearch:
    key = (id(crystal), round(np.log(cfg.calibration * pre.data_radius_px) / 0.01), cfg.search)
    if cache is not None and key in cache:
        return cache[key]
    s = PatternSearch(crystal, cfg.calibration, pre.data_radius_px, cfg.search)
    if cache is not None:
        cache[key] = s
    return s


def index_pattern(image: np.ndarray, cfg: IndexConfig, crystal, cache: dict | None = None) -> PatternResult:
    """Index one pattern (file pixels); ``cache`` (a dict) keeps searchers between calls."""
    from edorient.indexing.matching import PatternScorer
    from edorient.indexing.method2 import stage2
    from edorient.indexing.preprocess import preprocess

    if cfg.grains not in (1, 2):
        raise EdorientError(f"grains must be 1 or 2, got {cfg.grains}")
    t0 = time.perf_counter()
    pre = preprocess(image, cfg.centre, background=cfg.background)
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
    t3 = time.perf_counter()
    if cfg.refine:
        from edorient.indexing.proposals import grain_starts
        from edorient.indexing.refine import Refiner

        refiner = Refiner(crystal, res.simulator.config, device=cfg.device)
        starts = [grain_starts(scorer, res.image01, R) for R in rotations]
        hyps = np.stack([np.stack(c) for c in itertools.product(*starts)])
        out = refiner.refine(res.image01[None], hyps[None])
        Rr = out.rotations[0]
        new = np.array([scorer.score(res.image01, R[2][None], both_families=False)[0][0] for R in Rr])
        # the refined grain keeps its place if its pattern still scores (per grain, order-free)
        if len(Rr) == 2:
            same = crystal.laue.angle(Rr[0][2][None], rotations[0][2][None])[0] <= \
                crystal.laue.angle(Rr[1][2][None], rotations[0][2][None])[0]
            if not same:
                Rr, new = Rr[::-1], new[::-1]
        keep = new > np.array(scores) + REFINE_TOLERANCE
        status = ["kept" if k else "rejected" for k in keep]
        rotations = np.where(keep[:, None, None], Rr, rotations)
        scores = [float(n) if k else s for n, k, s in zip(new, keep, scores)]
        u = out.uncertainty_deg[0]
        ui = out.inplane_uncertainty_deg[0]
        unc = [float(u[g]) if keep[g] else None for g in range(len(keep))]
        inpl = [float(ui[g]) if keep[g] else None for g in range(len(keep))]
        refinement = {"centre_offset_px": [round(float(v), 3) for v in out.centre_px[0]],
                      "calibration_scale": round(float(out.calibration_scale[0]), 5),
                      "fit_score": round(float(out.scores[0]), 4)}
    t4 = time.perf_counter()
    grains = []
    for g, (R, s) in enumerate(zip(rotations, scores)):
        label = crystal.laue.reduce(R[2])
        if g == 0:
            m, ru = margin, [(c.label, c.score) for c in runner]
            v = vd.verdict(s, m)
        else:
            m, ru = float("nan"), []
            v = vd.verdict(s, np.inf) if second and second["real"] else "no match"
        grains.append(Grain(R, label, float(s), float(m), v, ru, unc[g], inpl[g],
                            status if isinstance(status, str) else status[g], coarse[g]))
    return PatternResult(grains, pre, res, second, refinement,
                         {"preprocess_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3),
                          "second_grain_s": round(t3 - t2, 3), "refine_s": round(t4 - t3, 3), **res.timings})
