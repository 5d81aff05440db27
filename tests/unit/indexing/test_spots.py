"""Spots and the direct beam (Friedel symmetry): simulated patterns and the real cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _measured import measured

from edorient.errors import EdorientError
from edorient.indexing.spots import find_centre, find_spots, friedel_score
from edorient.physics.orientation import rotation_from_direction
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "realdata"


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=160, calibration=0.02, spot_sigma_px=1.5))


def _near_zone(xtal, uvw, rng, max_tilt_deg=0.5):
    d = xtal.zone_axis_direction(uvw)
    t = rng.normal(size=3)
    t -= t.dot(d) * d
    t *= np.radians(rng.uniform(0, max_tilt_deg)) / np.linalg.norm(t)
    return rotation_from_direction((d + t) / np.linalg.norm(d + t), rng.uniform(0, 360))


def test_find_spots_subpixel_and_mask():
    rr, cc = np.mgrid[:64, :64]
    truth = [(20.3, 40.6, 1.0), (44.7, 15.2, 0.5)]
    img = sum(a * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / 4.0) for r, c, a in truth) + 0.01
    s = find_spots(img)
    assert len(s) == 2
    np.testing.assert_allclose(s.positions, [t[:2] for t in truth], atol=0.05)
    assert s.intensity[0] > s.intensity[1]
    mask = np.ones_like(img, dtype=bool)
    mask[40:50, 10:20] = False  # hides the second spot
    assert len(find_spots(img, mask)) == 1
    with pytest.raises(EdorientError, match="mask's shape"):
        find_spots(img, mask[:10])


def test_centroids_are_each_windows_centre_of_mass():
    # all windows at once (gathered from a padded copy) against the centroid written out window
    # by window, the windows cut at the image border and by the mask
    from edorient.indexing.spots import _centroids

    rng = np.random.default_rng(4)
    top = rng.random((30, 40))
    valid = rng.random((30, 40)) > 0.1
    rows = np.array([0, 1, 29, 15, 3, 28, 10])
    cols = np.array([0, 39, 20, 0, 38, 39, 12])
    height = top[rows, cols] + np.array([0, 0, 0, 0, 0, 0, 5.0])  # the last: nothing above half
    got = _centroids(top, valid, rows, cols, height, 3)
    for k, (r, c, pk) in enumerate(zip(rows, cols, height)):
        r0, r1, c0, c1 = max(r - 3, 0), min(r + 4, 30), max(c - 3, 0), min(c + 4, 40)
        win = np.where(valid[r0:r1, c0:c1], np.clip(top[r0:r1, c0:c1] - 0.5 * pk, 0, None), 0.0)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        want = (r, c) if win.sum() <= 0 else ((win * rr).sum() / win.sum(), (win * cc).sum() / win.sum())
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-12)
    assert _centroids(top, valid, rows[:0], cols[:0], height[:0], 3).shape == (0, 2)


@pytest.mark.parametrize("uvw, beam_stop", [([0, 0, 1], False), ([1, 0, 0], True), ([1, 1, 1], True),
                                             ([1, 0, 1], False), ([2, 0, 1], True), ([1, 1, 0], True)])
def test_centre_of_simulated_patterns(sim, uvw, beam_stop):
    rng = np.random.default_rng(sum(uvw) + 10 * beam_stop)
    R = _near_zone(sim.crystal, uvw, rng)
    centre = (rng.uniform(60, 100), rng.uniform(60, 100))
    img, mask, c = measured(sim, R, centre=centre, beam_stop=beam_stop, rng=1, ellipticity=1.03,
                            angle_deg=rng.uniform(0, 180))
    res = find_centre(img, mask if beam_stop else None)
    assert res.ok, res.note
    assert np.hypot(res.row - c[0], res.col - c[1]) < 0.3
    assert res.n_pairs >= 3 and 0.5 <= res.symmetry_score <= 1.0


def test_centre_not_on_the_brightest_diffracted_spot(sim):
    """A diffracted spot brighter than the (partly blocked) direct beam: Friedel pairs decide."""
    R = _near_zone(sim.crystal, [1, 0, 0], np.random.default_rng(3), 0.0)
    img, _, c = measured(sim, R, centre=(70.4, 88.2), rng=2)
    spots = find_spots(img)
    far = spots.positions[np.argmax(np.hypot(*(spots.positions - c).T) > 10)]
    rr, cc = np.mgrid[:160, :160]
    img = img + 3.0 * np.exp(-((rr - far[0]) ** 2 + (cc - far[1]) ** 2) / 4.0)  # now the brightest blob
    res = find_centre(img)
    assert np.hypot(res.row - c[0], res.col - c[1]) < 0.3 and res.ok


def test_too_few_pairs_is_flagged():
    rr, cc = np.mgrid[:80, :80]
    img = np.zeros((80, 80))
    for dr, dc, a in [(0, 0, 1.0), (12, 5, 0.8), (-12, -5, 0.8), (3, -14, 0.5), (-30, 20, 0.4)]:
        img += a * np.exp(-((rr - 37.4 - dr) ** 2 + (cc - 41.2 - dc) ** 2) / 3.0)
    res = find_centre(img)
    assert not res.ok and "failed" in res.note
    assert abs(res.row - 37.4) < 0.2 and abs(res.col - 41.2) < 0.2


def test_friedel_score_is_one_for_a_symmetric_set():
    P = np.array([[50, 50], [40, 45], [60, 55], [30, 62], [70, 38.0]])
    score, _, counted = friedel_score(P, np.ones(5), np.array([[50, 50], [45, 47.5]]), (100, 100))
    assert score[0] == pytest.approx(1.0) and score[1] < 0.5 and counted[0] == 5


def test_guess_must_be_two_numbers():
    with pytest.raises(EdorientError, match="two finite numbers"):
        find_centre(np.random.default_rng(0).random((40, 40)), guess=(1.0, float("nan")))


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata not present")
@pytest.mark.parametrize("name, truth, tol", [("al_001_sped.npy", (43.5, 43.5), 1.0),
                                              ("al_001_T1_sped.npy", (43.5, 43.5), 1.0),
                                              ("cuni_110_sad.png", (208.5, 152.0), 1.5)])
def test_centre_of_real_patterns(name, truth, tol):
    from edorient.io.images import read_image

    img = read_image(REAL / "images" / name)
    res = find_centre(img)
    assert res.ok, res.note
    assert np.hypot(res.row - truth[0], res.col - truth[1]) < tol


def test_second_grain_is_real_only_where_it_explains_new_spots():
    from edorient.indexing.spots import second_grain_is_real, working_spots
    from edorient.physics.orientation import rotation_from_zone_axis
    from edorient.render import compose, display_transform

    xt = anatase()
    sim = Simulator(xt, SimulationConfig(image_size=128))
    a = rotation_from_zone_axis([1, 0, 1], xt.direct_matrix, 20.0)
    b = rotation_from_zone_axis([1, 1, 2], xt.direct_matrix, 75.0)
    wrong = rotation_from_zone_axis([0, 0, 1], xt.direct_matrix, 40.0)
    single = sim.images(a[None])[0]
    pair = display_transform(compose(sim.linear_image(a), sim.linear_image(b)))
    # a single crystal: a second grain re-explains nothing new
    real, new = second_grain_is_real(sim, working_spots(single), a, wrong, 0.5, 60.0)
    assert not real and new < 2
    # two grains: the second explains spots the first leaves, and each rule can refuse it
    peaks = working_spots(pair)
    real, new = second_grain_is_real(sim, peaks, a, b, 0.5, 60.0)
    assert real and new >= 2
    assert not second_grain_is_real(sim, peaks, a, b, 0.05, 60.0)[0]  # too weak a share
    assert not second_grain_is_real(sim, peaks, a, b, 0.5, 3.0)[0]  # not distinct from the first


def test_a_crystal_split_into_two_copies_is_not_a_second_grain():
    # a pair fitted to one crystal: its first grain 4° off in-plane misses the outer spots, its
    # second, 0.5° the other way, "explains" them; all are the one-grain answer's spots
    from edorient.indexing.spots import second_grain_is_real, working_spots
    from edorient.physics.orientation import rotation_from_zone_axis

    xt = anatase()
    sim = Simulator(xt, SimulationConfig(image_size=256))
    true, first, second = (rotation_from_zone_axis([0, 0, 1], xt.direct_matrix, a) for a in (30.0, 34.0, 29.5))
    peaks = working_spots(sim.images(true[None])[0])
    real, new = second_grain_is_real(sim, peaks, first, second, 0.5, 6.0)
    assert real and new >= 2  # against the pair's own first grain, the copy looks like a grain
    real, new = second_grain_is_real(sim, peaks, first, second, 0.5, 6.0, also_first=(true,))
    assert not real and new == 0
