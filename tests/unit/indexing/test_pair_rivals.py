"""The margin of a paired grain over rivals refined on purpose (``pipeline._rival_fits``)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from edorient.indexing import pipeline as pl
from edorient.indexing.estimators import take_rows
from edorient.indexing.pipeline import IndexConfig, index_pattern
from edorient.indexing.search import SearchConfig
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


def test_a_grain_tilted_off_its_truth_loses_to_a_rival_and_the_truth_does_not():
    xt = anatase()
    size, cal = 160, 0.0125
    R = random_rotations(2, rng=11)
    sim = Simulator(xt, SimulationConfig(image_size=size, calibration=cal, spot_sigma_px=1.6))
    raw = (sim.linear_images(R).sum(0) / 2 * 2e5 + 20).astype(np.float64)  # noise-free, 0.5:0.5
    c = (size - 1) / 2
    cache: dict = {}
    out = index_pattern(raw, IndexConfig(cal, (c, c), grains=2, search=SearchConfig(pair_directions=800)), xt,
                        cache=cache)
    chain = next(v for k, v in cache.items() if isinstance(k, tuple) and k[:2] == ("chain", 2))
    x = out.search.image01
    est = chain.estimate(x[None])
    ref, A = est.refinement, est.rotations[0]
    # the chain's pair is the truth (order-free, both < 1°)
    d = [[float(xt.laue.angle(A[a, 2][None], R[b, 2][None])[0]) for b in range(2)] for a in range(2)]
    assert min(max(d[0][0], d[1][1]), max(d[0][1], d[1][0])) < 1.0, d
    f_right = pl._pair_fit_margins(xt, chain.matcher.scorer.simulator, ref, x)[0]
    # the right pair fits the whole image better than every rival more than 2° from either grain
    rivals = pl._rival_fits(chain, ref, x)
    assert np.all(np.isfinite(rivals)) and np.all(rivals < f_right), (rivals, f_right)
    # grain 0 tilted 4° off its truth: a rival (its truth, > 2° from the tilted grain) fits better,
    # so its margin is negative and the grain cannot be confident
    wrong = A.copy()
    wrong[0] = Rotation.from_rotvec(np.radians([4.0, 0.0, 0.0])).as_matrix() @ A[0]
    bad = take_rows(ref, np.array([0]))
    bad.rotations = wrong[None]
    f_wrong = pl._pair_fit_margins(xt, chain.matcher.scorer.simulator, bad, x)[0]
    assert f_wrong < f_right
    assert pl._rival_fits(chain, bad, x)[0] > f_wrong


def test_a_rival_that_fits_better_replaces_the_paired_answer(monkeypatch):
    # the chain made to answer with grain 0 tilted 4° off its truth (its only hypothesis): with a
    # round of pl.RIVAL_ADOPT_ROUNDS (off by default) the rivals refined on purpose include the
    # truth's basin, fit the whole image better, and the answer becomes the truth; without it the
    # tilted grain stays a miss (> 2°: the pair's own polish pulls it part of the way back, 2.6°
    # with the working frame holding the whole field)
    import dataclasses

    from edorient.indexing.estimators import DictionaryRefined, Estimate

    xt = anatase()
    size, cal = 160, 0.0125
    R = random_rotations(2, rng=11)
    sim = Simulator(xt, SimulationConfig(image_size=size, calibration=cal, spot_sigma_px=1.6))
    raw = (sim.linear_images(R).sum(0) / 2 * 2e5 + 20).astype(np.float64)
    c = (size - 1) / 2
    cfg = IndexConfig(cal, (c, c), grains=2, search=SearchConfig(pair_directions=800))
    real_estimate = DictionaryRefined.estimate

    def tilted(self, images01):
        est = real_estimate(self, images01)
        ref = take_rows(est.refinement, np.array([0]))
        A = ref.rotations[0].copy()
        A[0] = Rotation.from_rotvec(np.radians([4.0, 0.0, 0.0])).as_matrix() @ A[0]
        ref = dataclasses.replace(ref, rotations=A[None], hypothesis_rotations=A[None, None],
                                  hypothesis_scores=ref.scores[:, None], hypothesis_centre_px=ref.centre_px[:, None],
                                  hypothesis_calibration_scale=ref.calibration_scale[:, None])
        return Estimate(A[None], est.directions, est.scores, ref, est.fallback, est.explained)

    def worse(out):
        F = np.stack([g.rotation for g in out.grains])
        d = [[float(xt.laue.angle(F[a, 2][None], R[b, 2][None])[0]) for b in range(2)] for a in range(2)]
        return min(max(d[0][0], d[1][1]), max(d[0][1], d[1][0]))

    monkeypatch.setattr(DictionaryRefined, "estimate", tilted)
    monkeypatch.setattr(pl, "RIVAL_ADOPT_ROUNDS", 1)
    assert worse(index_pattern(raw, cfg, xt)) < 1.0
    monkeypatch.setattr(pl, "RIVAL_ADOPT_ROUNDS", 0)
    assert worse(index_pattern(raw, cfg, xt)) > 2.0
