"""The one-grain answer at the search's scale and at the next peak of its scale scores (issue 11).

A sparse pattern can match the dictionary best at a wrong calibration scale; ``index_pattern``
also searches and refines at the next best peak of the scale scores and keeps the scale whose
answer fits the whole image better (``pipeline.ALT_SCALES``).
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient.indexing import pipeline as pl
from edorient.indexing.matching import zone_axes
from edorient.indexing.search import PatternSearch, SearchConfig, SearchResult
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


def _curve(peaks: dict[int, float], n: int = 13) -> np.ndarray:
    """Scale scores on the default grid (0.85-1.15, 13 points) with local maxima at ``peaks``."""
    b = np.full(n, 0.2)
    for k, v in peaks.items():
        b[k] = v
    return b


def test_alternative_scales_are_the_next_local_maxima_two_steps_away():
    s = PatternSearch(anatase(), 0.016, 60.0, SearchConfig(n_directions=50))
    grid = s.scales
    assert len(grid) == 13 and grid[6] == pytest.approx(1.0)
    # the chosen peak at 1.125 (index 11); local maxima at 1.0 (0.8), 0.9 (0.7), and 1.1 (next to
    # the chosen one: not another scale)
    b = _curve({11: 0.9, 10: 0.85, 6: 0.8, 2: 0.7})
    res = SearchResult([], None, None, float(grid[11]), 50.0, grid, b)
    alt = s.alternative_scales(res, n=2)
    assert alt == pytest.approx([1.0, 0.9])  # symmetric neighbours: the parabola's vertex is the grid point
    assert s.alternative_scales(res, n=0) == []
    # an asymmetric peak moves to its parabola's vertex, towards the higher neighbour
    b2 = b.copy()
    b2[7] = 0.5
    (a,) = s.alternative_scales(SearchResult([], None, None, float(grid[11]), 50.0, grid, b2), n=1)
    assert 1.0 < a < 1.0125
    # the ends of the grid count as peaks
    b3 = _curve({6: 0.9, 0: 0.6, 12: 0.5})
    assert s.alternative_scales(SearchResult([], None, None, 1.0, 50.0, grid, b3), n=3) == pytest.approx([0.85, 1.15])


def test_a_search_at_a_given_scale_uses_it_and_refuses_a_bad_one():
    from edorient.indexing.preprocess import preprocess

    R = random_rotations(1, rng=5)
    sim = Simulator(anatase(), SimulationConfig(image_size=128, calibration=0.016, spot_sigma_px=1.5))
    pre = preprocess(sim.images(R)[0].astype(np.float64) * 1e4 + 10, (63.5, 63.5))
    s = PatternSearch(anatase(), 0.016, pre.data_radius_px, SearchConfig(n_directions=100))
    free = s.search(pre)
    forced = s.search(pre, scale=1.1, scale_scores=free.scale_scores, thickness=50.0)
    assert forced.scale == 1.1 and forced.thickness == 50.0
    np.testing.assert_array_equal(forced.scale_scores, free.scale_scores)  # reported, not recomputed
    with pytest.raises(Exception, match="positive number"):
        s.search(pre, scale=float("nan"))


def test_a_wrong_scale_peak_is_overturned_by_the_whole_image_fit(monkeypatch):
    # the search's scale scores are made to peak at 1.125 while the pattern is at 1.0, with a
    # second peak at 1.0: the answer at 1.0 fits the whole image better and is kept, the one at
    # 1.125 listed as a rival
    xt = anatase()
    R = random_rotations(1, rng=12)[0]
    sim = Simulator(xt, SimulationConfig(image_size=128, calibration=0.016, spot_sigma_px=1.5))
    img = np.random.default_rng(3).poisson(sim.images(R[None])[0] * 1e5 + 20).astype(float)
    scales = np.linspace(0.85, 1.15, 13)
    monkeypatch.setattr(PatternSearch, "_scale_scores", lambda self, pre: (_curve({11: 0.9, 6: 0.8}), None))
    cfg = pl.IndexConfig(0.016, (63.5, 63.5), search=SearchConfig(single_directions=400))
    res = pl.index_pattern(img, cfg, xt)
    err = float(xt.laue.angle(R[2][None], res.grains[0].rotation[2][None])[0])
    assert err < 1.0, err
    assert abs(res.calibration_scale - 1.0) < 0.02, res.calibration_scale
    (rival,) = res.refinement["scale_rivals"]
    assert abs(rival["calibration_scale"] / scales[11] - 1) < 0.05, rival
    assert rival["image_fit"] < res.refinement["image_fit"]
    # without the second scale the answer stays at the wrong one
    monkeypatch.setattr(pl, "ALT_SCALES", 0)
    alone = pl.index_pattern(img, cfg, xt)
    assert abs(alone.calibration_scale - 1.0) > 0.05 and alone.refinement["scale_rivals"] == []


def test_an_answer_at_another_scale_lowers_the_fit_margin_only_if_it_points_elsewhere():
    from scipy.spatial.transform import Rotation

    xt = anatase()
    R = random_rotations(1, rng=4)[0]
    near = Rotation.from_rotvec(np.radians([0.5, 0.0, 0.0])).as_matrix() @ R  # 0.5° away: the same answer
    far = Rotation.from_rotvec(np.radians([20.0, 0.0, 0.0])).as_matrix() @ R
    one = {"rotation": R, "image_fit": 0.80, "image_fit_margin": 0.10, "calibration_scale": 1.0}

    def at(scale, rotation, fit):
        return scale, {"rotation": rotation, "image_fit": fit, "calibration_scale": 1.01}

    out = pl._with_scale_rivals(xt, one, [at(1.1, near, 0.79)])
    assert out["image_fit_margin"] == 0.10 and out["scale_rivals"][0]["calibration_scale"] == pytest.approx(1.111)
    out = pl._with_scale_rivals(xt, one, [at(1.1, far, 0.79)])
    assert out["image_fit_margin"] == pytest.approx(0.01)
    assert out["scale_rivals"][0]["angle_to_answer_deg"] > 5
    # no distinct hypothesis before (None: nothing ruled out) -> the rival's margin
    out = pl._with_scale_rivals(xt, dict(one, image_fit_margin=None), [at(0.9, far, 0.5)])
    assert out["image_fit_margin"] == pytest.approx(0.30)
    assert one["image_fit_margin"] == 0.10  # the answer given is not changed
    # a rival that fits only at a calibration outside the stated tolerance is listed, not counted
    out = pl._with_scale_rivals(xt, one, [at(0.8, far, 0.85)], tolerance=0.15)
    assert out["image_fit_margin"] == 0.10 and out["scale_rivals"][0]["outside_tolerance"] is True
    out = pl._with_scale_rivals(xt, one, [at(0.9, far, 0.85)], tolerance=0.15)
    assert out["image_fit_margin"] == pytest.approx(-0.05) and "outside_tolerance" not in out["scale_rivals"][0]


def test_the_scale_scan_reads_the_exact_zone_axes_on_their_own():
    # the coarse scan over calibration scales reads every third dictionary entry, two thirds of
    # the exact zone axes not among them ([0 0 1] and [1 1 0] of anatase); the zones are read
    # on their own, and their best scale is tried where a zone beats every scanned direction
    s = PatternSearch(anatase(), 0.01, 128.0, SearchConfig(n_directions=100))
    m = s.matcher
    n_zones = len(zone_axes(anatase(), s.config.zone_max_index))
    assert np.array_equal(m.zone_index, np.arange(n_zones * m.families))
    assert not np.isin(m.zone_index, m.coarse_index).all()
    grid = s.scales
    res = SearchResult([], None, None, float(grid[11]), 50.0, grid, _curve({11: 0.7, 6: 0.6}),
                       zone_scale_scores=_curve({6: 0.9}))
    assert s.alternative_scales(res, 1) == pytest.approx([1.0])  # the zones' peak is the scan's next one
    res = SearchResult([], None, None, float(grid[11]), 50.0, grid, _curve({11: 0.7, 3: 0.6}),
                       zone_scale_scores=_curve({6: 0.9}))
    assert s.alternative_scales(res, 1) == pytest.approx([grid[3], 1.0])
    # the zones' peak need not beat the scan's best, only the scan at the zones' own scale
    below_best = SearchResult([], None, None, float(grid[11]), 50.0, grid, _curve({11: 0.7, 3: 0.6}),
                              zone_scale_scores=_curve({6: 0.65}))
    assert s.alternative_scales(below_best, 1) == pytest.approx([grid[3], 1.0])
    weak = SearchResult([], None, None, float(grid[11]), 50.0, grid, _curve({11: 0.7, 3: 0.6}),
                        zone_scale_scores=np.full(len(grid), 0.15) + 0.04 * (np.arange(len(grid)) == 6))
    assert s.alternative_scales(weak, 1) == pytest.approx([grid[3]])  # no zone beats the scan: no extra try


def test_an_exact_zone_pattern_is_found_at_its_own_scale():
    from edorient.indexing.preprocess import preprocess
    from edorient.physics.orientation import rotation_from_direction

    x = anatase()
    R = rotation_from_direction(x.zone_axis_direction([0, 0, 1]), 12.0)
    sim = Simulator(x, SimulationConfig(image_size=256, calibration=0.01, spot_sigma_px=1.6))
    img = np.random.default_rng(5).poisson((sim.linear_image(R) + 0.0005) * 3e4).astype(float)
    pre = preprocess(img, (128.0, 128.0))
    s = PatternSearch(x, 0.01, pre.data_radius_px, SearchConfig())
    res = s.search(pre)
    k = int(np.argmax(res.zone_scale_scores))
    assert abs(s.scales[k] - 1.0) < 0.03 and res.zone_scale_scores.max() > res.scale_scores.max()
    assert abs(res.scale - 1.0) > 0.1  # (the scan alone: a wrong scale, where [0 0 1] was never read)
    assert any(abs(a - 1.0) < 0.02 for a in s.alternative_scales(res, 1))  # tried now
    # and the whole-image fit takes it (index_pattern, what `edorient predict` runs)
    from edorient.indexing.pipeline import IndexConfig, index_pattern

    g = index_pattern(img, IndexConfig(0.01, (128.0, 128.0)), x, cache={}).grains[0]
    assert x.laue.angle(g.rotation[2][None], x.zone_axis_direction([0, 0, 1])[None])[0] < 0.5
    assert g.verdict == "confident", g.reasons


def test_a_try_the_camera_refuses_loses_to_an_accepted_one_nearer_the_given_calibration():
    from scipy.spatial.transform import Rotation

    from edorient.indexing.pipeline import chosen_scale_try

    laue = anatase().laue
    R = np.eye(3)
    other = Rotation.from_rotvec(np.radians([60.0, 20.0, 0.0])).as_matrix()

    class Searched:  # a try's search result: its scale
        def __init__(self, scale):
            self.scale = scale

    # bench_dynamical's anatase [0 0 1]: [5 3 1] at 1.13 fits better, with 4.7 % ellipticity
    best = (Searched(1.13), {"calibration_scale": 1.005, "image_fit": 0.83, "rotation": other})
    far = (Searched(0.85), {"calibration_scale": 0.94, "image_fit": 0.69, "rotation": R})
    right = (Searched(1.0), {"calibration_scale": 1.0003, "image_fit": 0.75, "rotation": R})
    tries = [best, far, right]
    assert chosen_scale_try(tries, 0.025, laue) is best  # the fit alone
    assert chosen_scale_try(tries, 0.025, laue, refused=[False, False, False]) is best
    assert chosen_scale_try(tries, 0.025, laue, refused=[True, False, False]) is right
    # an accepted answer farther from the given calibration than the refused one does not take it
    assert chosen_scale_try([best, far], 0.025, laue, refused=[True, False]) is best
    assert chosen_scale_try([best, far], 0.025, laue, refused=[True, True]) is best


def test_a_try_outside_the_stated_calibration_tolerance_loses_to_one_inside_that_fits_as_well():
    """al_001 blurred by 2 px with its calibration given 10 % low: [0 0 1] at the true calibration
    (1.109 of the given) fitted the whole image 0.4756, a zone 5.6° off at 0.81 fitted 0.4792; the
    latter was chosen, and its verdict refused it for the calibration the user had ruled out. Fits
    that close (within the verdict's fit margin) do not tell the two apart; the stated tolerance does."""
    from scipy.spatial.transform import Rotation

    from edorient.indexing.pipeline import chosen_scale_try

    laue = anatase().laue
    R = np.eye(3)
    off = Rotation.from_rotvec(np.radians([5.6, 0.0, 0.0])).as_matrix()
    outside = ("out", {"calibration_scale": 0.958, "image_fit": 0.4792, "rotation": off})
    inside = ("in", {"calibration_scale": 1.109, "image_fit": 0.4756, "rotation": R})
    assert chosen_scale_try([outside, inside], 0.025, laue)[0] == "out"  # the fit alone
    assert chosen_scale_try([outside, inside], 0.025, laue, outside=[True, False])[0] == "in"
    assert chosen_scale_try([inside, outside], 0.025, laue, outside=[False, True])[0] == "in"
    # every try outside: the fit decides (the verdict then says why)
    assert chosen_scale_try([outside, inside], 0.025, laue, outside=[True, True])[0] == "out"
    # a try outside that fits clearly better (by the verdict's fit margin or more) stays the answer
    clearly = ("out", dict(outside[1], image_fit=0.4756 + 0.03))
    assert chosen_scale_try([clearly, inside], 0.025, laue, outside=[True, False])[0] == "out"
    assert chosen_scale_try([clearly, inside], 0.025, laue, outside=[True, False], outside_margin=0.05)[0] == "in"
    # with the camera's refusals given too, they are read for the tries left: the one inside,
    # refused, is still taken over the one outside
    class Searched:  # a try's search result: its scale
        def __init__(self, scale):
            self.scale = scale

    a, b = (Searched(0.85),) + outside[1:], (Searched(1.0),) + inside[1:]
    assert chosen_scale_try([a, b], 0.025, laue, refused=[False, True], outside=[True, False]) is b
