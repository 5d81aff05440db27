"""The chain's zone-axis twin pass: a grain answered by its twin is moved to the truth, a twin
that fits as well is flagged, and the pass leaves a grain without a twin alone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from edorient.indexing import Refiner
from edorient.indexing.estimators import zone_twin_hypotheses, zone_twin_pass
from edorient.indexing.refine import misorientation_deg, proper_rotations
from edorient.physics.orientation import rotation_from_zone_axis
from edorient.physics.twins import half_turn_about
from edorient.render import SimulationConfig, Simulator, display_transform
from edorient.structures import anatase


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=128))


@pytest.fixture(scope="module")
def refiner(sim):
    return Refiner(sim.crystal, sim.config)


def _near(xt, uvw, tilt_deg, inplane_deg, axis):
    R = rotation_from_zone_axis(uvw, xt.direct_matrix, inplane_deg)
    return Rotation.from_rotvec(np.radians(tilt_deg) * np.asarray(axis, float) / np.linalg.norm(axis)).as_matrix() @ R


@pytest.fixture(scope="module")
def case(sim):
    """Noise-free single crystals 3-4° off [3 1 1] and [1 1 1] (no two-fold axes of 4/mmm) and
    one off [0 0 1] (a four-fold axis: no twin), with their twins."""
    xt = sim.crystal
    truth = np.stack([_near(xt, [3, 1, 1], 3.0, 20.0, (1, 0.3, 0)), _near(xt, [1, 1, 1], 4.0, -35.0, (0.2, 1, 0)),
                      _near(xt, [0, 0, 1], 3.0, 10.0, (1, 1, 0))])
    twins = np.stack([truth[0] @ half_turn_about(xt.zone_axis_direction([3, 1, 1])),
                      truth[1] @ half_turn_about(xt.zone_axis_direction([1, 1, 1]))])
    x = display_transform(sim.linear_images(truth))
    return truth, twins, x


def test_twin_hypotheses_pair_each_grain_with_the_others(sim, case):
    truth, twins, _ = case
    P = proper_rotations(sim.crystal.laue)
    pairs = np.stack([truth[:2], truth[[1, 0]]])  # two "bicrystals" near non-two-fold zones
    hyp, grain = zone_twin_hypotheses(sim, pairs, max_twins=1)
    assert grain.tolist() == [[0, 1], [0, 1]]
    for i in range(2):
        for q, g in enumerate(grain[i]):
            assert misorientation_deg(hyp[i, q, 1 - g], pairs[i, 1 - g], P) < 1e-9  # the other grain kept
            assert misorientation_deg(hyp[i, q, g], pairs[i, g], P) > 5.0  # this one turned
    _, grain = zone_twin_hypotheses(sim, truth[2:][:, None])  # off [0 0 1]: none
    assert (grain < 0).all()


def test_an_answer_that_is_the_twin_moves_to_the_truth(sim, refiner, case):
    """Refined from the twin, the refinement stays there (its basin is ~3°, the twin 6-8° away);
    the pass refines the twin's twin, which fits the noise-free image better (the reflections
    off the zone's plane), and moves the answer to the truth."""
    truth, twins, x = case
    xt = sim.crystal
    P = proper_rotations(xt.laue)
    res = refiner.refine(x[:2], twins[:, None, None])
    before = xt.laue.angle(res.rotations[:, 0, 2], truth[:2, 2])
    assert (before > 4.0).all()
    out, _, moved, gap = zone_twin_pass(refiner, sim, x[:2], res)
    assert moved.all()
    assert (misorientation_deg(out.rotations[:, 0], truth[:2], P) < 0.3).all()
    assert (xt.laue.angle(out.rotations[:, 0, 2], truth[:2, 2]) < 0.3).all()
    assert (gap[:, 0] < 0).all()  # now the twin (the answer before) fits worse
    assert not out.direction_ambiguous.any()
    # the answer before stays among the hypotheses
    H = out.hypothesis_rotations[:, :, 0]
    for i in range(2):
        ok = np.isfinite(out.hypothesis_scores[i])
        assert (misorientation_deg(H[i, ok], np.broadcast_to(res.rotations[i, 0], H[i, ok].shape), P) < 0.3).any()


def test_a_twin_within_the_margin_is_flagged_not_taken(sim, refiner, case):
    truth, _, x = case
    res = refiner.refine(x, truth[:, None, None])
    out, _, moved, gap = zone_twin_pass(refiner, sim, x, res, margin=1.0)  # every twin "fits as well"
    assert not moved.any()
    np.testing.assert_allclose(out.rotations, res.rotations)
    assert np.isfinite(gap[:2, 0]).all() and np.isnan(gap[2, 0])
    assert out.ambiguous[:2, 0].all() and out.direction_ambiguous[:2, 0].all()  # beams 6-8° apart
    assert not out.ambiguous[2, 0] or res.ambiguous[2, 0]  # the [0 0 1] grain is as it was
    # with the default margin the truth keeps its place and is not flagged (noise-free: it fits better)
    out, _, moved, gap = zone_twin_pass(refiner, sim, x, res)
    assert not moved.any() and (gap[:2, 0] < 0).all()
    assert (out.direction_ambiguous == res.direction_ambiguous).all()


def test_the_chain_takes_the_twin_pass_only_with_the_whole_image_choice(sim, refiner):
    from edorient.errors import EdorientError
    from edorient.indexing.estimators import TWIN_MARGIN, ZONE_TWINS, DictionaryRefined
    from edorient.indexing.matching import TemplateMatcher

    m = TemplateMatcher(sim, n_directions=50)
    chain = DictionaryRefined(m, refiner, grains=2)
    assert (chain.twins, chain.twin_margin) == (ZONE_TWINS, TWIN_MARGIN)
    assert DictionaryRefined(m, refiner, grains=2, image_fit=False).twins == 0
    with pytest.raises(EdorientError, match="twins 1 needs the whole-image choice"):
        DictionaryRefined(m, refiner, grains=2, image_fit=False, twins=1)


def test_an_answer_the_whole_image_choice_takes_keeps_its_rivals_flag(sim, refiner, case):
    """:func:`rechoose_by_image_fit` refines a replaced answer alone; its grain is flagged where
    another hypothesis, distinct for it, fits the whole image within the margin, and not where
    the only other hypothesis is the same orientation or fits clearly worse."""
    import dataclasses

    from edorient.indexing.estimators import rechoose_by_image_fit

    truth, twins, x = case
    P = proper_rotations(sim.crystal.laue)
    res = refiner.refine(x[:2], np.stack([twins, truth[:2]], axis=1)[:, :, None])
    res = dataclasses.replace(res, best=np.zeros(2, dtype=int), rotations=twins[:, None])  # the twin as the answer
    out, _, _ = rechoose_by_image_fit(refiner, sim, res, x[:2])  # noise-free: the truth fits clearly better
    assert (misorientation_deg(out.rotations[:, 0], truth[:2], P) < 0.3).all()
    assert not out.ambiguous.any() and not out.direction_ambiguous.any()
    out, _, _ = rechoose_by_image_fit(refiner, sim, res, x[:2], tie_margin=1.0)  # every rival "fits as well"
    assert (misorientation_deg(out.rotations[:, 0], truth[:2], P) < 0.3).all()
    assert out.ambiguous.all() and out.direction_ambiguous.all()  # the twins' beams lie 6-8° away
    # the other hypothesis the truth turned by 1° (not distinct: 3°): no rival, however close
    near = np.stack([_near(sim.crystal, [3, 1, 1], 4.0, 20.0, (1, 0.3, 0)), _near(sim.crystal, [1, 1, 1], 5.0, -35.0,
                                                                                  (0.2, 1, 0))])
    assert (misorientation_deg(near, truth[:2], P) < 1.5).all()
    H = res.hypothesis_rotations.copy()
    H[:, 0, 0] = near
    res = dataclasses.replace(res, hypothesis_rotations=H, rotations=near[:, None])
    out, _, _ = rechoose_by_image_fit(refiner, sim, res, x[:2], tie_margin=1.0)
    assert (misorientation_deg(out.rotations[:, 0], truth[:2], P) < 0.3).all()  # (the truth fits better)
    assert not out.ambiguous.any() and not out.direction_ambiguous.any()
    # the rival the truth turned 20° about the beam: another orientation (flagged), the same zone
    # (the label is not in doubt: not direction_ambiguous)
    spun = Rotation.from_euler("z", 20, degrees=True).as_matrix() @ truth[:2]
    H[:, 0, 0] = spun
    res = dataclasses.replace(res, hypothesis_rotations=H, rotations=spun[:, None])
    out, _, _ = rechoose_by_image_fit(refiner, sim, res, x[:2], tie_margin=1.0)
    assert (misorientation_deg(out.rotations[:, 0], truth[:2], P) < 0.3).all()
    assert out.ambiguous.all() and not out.direction_ambiguous.any()
