"""Issue 10's second chance for bad fits and the calibrated uncertainty: the uncertainty scale
multiplies the reported sigma (and leaves the ambiguity flag alone), the share of the image's
spots a fit explains tells a wrong grain from a right one, and :class:`Refined` refines slower
proposals only where the fit is bad, keeping the fit that explains more."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.indexing import Refiner
from edorient.indexing.estimators import Estimate, Estimator, Refined, merge_results, take_rows
from edorient.indexing.matching import PatternScorer
from edorient.indexing.proposals import explained_peaks, half_turn, image_peaks
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator, display_transform

SIZE = 96


@pytest.fixture(scope="module")
def sim():
    from edorient.structures import anatase

    return Simulator(anatase(), SimulationConfig(image_size=SIZE))


@pytest.fixture(scope="module")
def case(sim):
    R = random_rotations(3, rng=5)
    return R, display_transform(sim.linear_images(R))


class _Fixed(Estimator):
    """An estimator that answers given orientations (counts its calls)."""

    name = "fixed"

    def __init__(self, scorer, rotations):
        super().__init__(scorer, rotations.shape[1])
        self.rotations = rotations
        self.calls = 0

    def estimate(self, images01) -> Estimate:
        self.calls += 1
        x = self._check(images01)
        idx = [int(np.argmin([np.abs(im - y).sum() for y in self.images])) for im in x]
        return self._finish(self.rotations[idx], np.ones((len(x), self.grains)))


def test_uncertainty_scale_multiplies_sigma_and_leaves_the_flag(sim, case):
    R, x = case
    hyp = np.stack([R, half_turn(R)], 1)[:, :, None]
    a = Refiner(sim.crystal, sim.config, uncertainty_scale=1.0).refine(x, hyp)
    b = Refiner(sim.crystal, sim.config, uncertainty_scale=2.5).refine(x, hyp)
    np.testing.assert_allclose(b.uncertainty_deg, 2.5 * a.uncertainty_deg, rtol=1e-6)
    np.testing.assert_allclose(b.tilt_covariance, 2.5**2 * a.tilt_covariance, rtol=1e-6)
    np.testing.assert_allclose(b.inplane_uncertainty_deg, 2.5 * a.inplane_uncertainty_deg, rtol=1e-6)
    np.testing.assert_array_equal(b.ambiguous, a.ambiguous)
    np.testing.assert_allclose(b.margin_chi2, a.margin_chi2)


def test_explained_peaks_tells_a_wrong_orientation(sim, case):
    R, x = case
    ref = Refiner(sim.crystal, sim.config)
    assert all(len(image_peaks(im)) >= 3 for im in x)
    right = ref.refine(x, R[:, None, None])
    wrong = ref.refine(x, random_rotations(3, rng=77)[:, None, None])
    er, ew = explained_peaks(ref, right, x), explained_peaks(ref, wrong, x)
    assert np.all(er >= 0.9) and np.all(ew < 0.8)


def test_refined_tries_the_fallback_only_where_the_fit_is_bad(sim, case):
    R, x = case
    scorer = PatternScorer(sim)
    wrong = R.copy()
    wrong[1] = random_rotations(1, rng=3)[0]  # image 1's proposal is wrong
    base = _Fixed(scorer, wrong[:, None])
    fallback = _Fixed(scorer, R[:, None])
    base.images = fallback.images = x
    est = Refined(base, Refiner(sim.crystal, sim.config), families=False, fallback=fallback,
                  fallback_below=0.9).estimate(x)
    assert est.fallback.tolist() == [False, True, False] and fallback.calls == 1
    err = sim.crystal.laue.angle(est.rotations[:, 0, 2], R[:, 2])
    assert np.all(err < 0.1) and np.all(est.explained >= 0.9)
    # without the fallback the wrong proposal stays wrong
    plain = Refined(base, Refiner(sim.crystal, sim.config), families=False).estimate(x)
    assert sim.crystal.laue.angle(plain.rotations[1, 0, 2], R[1, 2]) > 2 and not plain.fallback.any()


def test_take_rows_and_merge_results(sim, case):
    R, x = case
    ref = Refiner(sim.crystal, sim.config)
    a = ref.refine(x, R[:, None, None])
    b = ref.refine(x[1:], np.stack([R[1:], half_turn(R[1:])], 1)[:, :, None])
    m = merge_results(a, np.array([2]), b, np.array([1]))
    assert m.hypothesis_scores.shape == (3, 2) and np.isneginf(m.hypothesis_scores[0, 1])
    np.testing.assert_allclose(m.rotations[2], b.rotations[1])
    np.testing.assert_allclose(m.rotations[:2], a.rotations[:2])
    t = take_rows(m, np.array([2, 0]))
    np.testing.assert_allclose(t.scores, m.scores[[2, 0]])


def test_a_fit_still_bad_is_ambiguous_with_a_wide_uncertainty(sim, case):
    R, x = case
    scorer = PatternScorer(sim)
    wrong = random_rotations(3, rng=8)[:, None]
    base = _Fixed(scorer, wrong)
    base.images = x
    est = Refined(base, Refiner(sim.crystal, sim.config), families=False, fallback=base,
                  fallback_below=0.9, unexplained_sigma_deg=90.0).estimate(x)
    bad = est.explained < 0.9
    assert bad.any()
    assert np.all(est.refinement.ambiguous[bad]) and np.all(est.refinement.uncertainty_deg[bad] == 90.0)
    cov = est.refinement.tilt_covariance[bad]
    np.testing.assert_allclose(cov, np.broadcast_to(np.eye(2) * 90.0**2 / 2, cov.shape))


def test_build_estimator_second_chance_chain():
    from edorient import pretrained
    from edorient.indexing.estimators import TemplateMatching, build_estimator
    from edorient.structures import anatase

    sim128 = Simulator(anatase(), SimulationConfig(image_size=128))
    model, _ = pretrained.load("anatase-bicrystal")
    est = build_estimator(sim128, grains=2, model=model, explained_below=0.95, matcher_directions=50)
    assert isinstance(est, Refined) and isinstance(est.fallback, TemplateMatching)
    assert est.partner is est.fallback.matcher and est.fallback_below == 0.95
    plain = build_estimator(sim128, grains=2, model=model)
    assert plain.fallback is None and plain.partner is None and plain.fallback_below is None
