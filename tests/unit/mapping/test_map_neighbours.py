"""The neighbour pass (``MapSettings.neighbour_radius``): a one-grain pattern that leaves spots
unexplained is paired with the grains reported around it in the 2-D scan."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping import MapSettings, default_runs
from edorient.mapping.index import (FIELDS, NEIGHBOUR_POOL, _filled, get_indexer, index_neighbours,
                                    merge_neighbours, neighbour_candidates, prepare_pattern)
from edorient.mapping.scan import open_scan
from edorient.physics.orientation import random_rotations


def _settings(**kw):
    single, bi = default_runs("anatase")
    return MapSettings(run_single=single, run_bicrystal=bi, **kw)


def _results(ny, nx):
    res = _filled(ny * nx)
    res["status"][:] = 0
    res["n_grains"][:] = 1
    res["spots"][:] = 6
    res["explained1"][:] = 1.0
    return res


def _two_columns(ny, nx, split, rng):
    """(results, (A, B, C), proper rotations): one-grain probes of grain A in columns < ``split``,
    B in the others; C a third orientation."""
    from edorient.indexing.refine import proper_rotations
    from edorient.structures import anatase

    A, B, C = random_rotations(3, rng=rng)
    res = _results(ny, nx)
    res["rotations"][:, 0] = np.where((np.arange(ny * nx) % nx < split)[:, None, None], A, B)
    return res, (A, B, C), proper_rotations(anatase().laue)


def _pair_error(laue, found, A, B):
    """The worse beam-direction error of two found grains against A and B, order-free."""
    from edorient.evaluation.metrics import grain_errors

    e, _ = grain_errors(np.asarray(found)[None], laue.reduce(np.stack([A[2], B[2]]))[None], laue)
    return float(e.max())


def test_candidates_are_one_grain_patterns_with_unexplained_spots_and_another_grain_near():
    ny, nx = 5, 8
    res, (A, B, C), proper = _two_columns(ny, nx, 4, 7)
    res["rotations"][nx * 4 + 7, 0] = C  # one probe of a third grain, far from the first
    res["explained1"][[nx * 2 + 3, nx * 2 + 0, nx * 0 + 3]] = 0.5  # 3 of 6 spots unexplained
    res["n_grains"][nx * 0 + 3] = 2  # two grains already: its pair may be repaired, a candidate too
    res["rotations"][nx * 0 + 3, 1] = B
    res["explained1"][nx * 3 + 3] = 5 / 6  # one spot unexplained: not a candidate
    idx, pools = neighbour_candidates(res, (ny, nx), _settings(neighbour_radius=2), proper)
    # (2, 3) and (0, 3) see grain B within 2 steps; (2, 0) sees only A
    assert idx.tolist() == [nx * 0 + 3, nx * 2 + 3]
    pools = pools[1:]
    P = pools[0]
    assert len(P) == 2 and len(P) <= NEIGHBOUR_POOL + 1
    np.testing.assert_allclose(P[0], A)
    np.testing.assert_allclose(P[1], B)
    # with a wider window the other probe sees B too; C stays out of every window but its own
    idx, pools = neighbour_candidates(res, (ny, nx), _settings(neighbour_radius=4), proper)
    assert idx.tolist() == [nx * 0 + 3, nx * 2 + 0, nx * 2 + 3]
    # B is reported by more probes than C: ranked first
    res["explained1"][nx * 4 + 3] = 0.5
    idx, pools = neighbour_candidates(res, (ny, nx), _settings(neighbour_radius=4), proper)
    k = idx.tolist().index(nx * 4 + 3)
    np.testing.assert_allclose(pools[k][1], B)
    np.testing.assert_allclose(pools[k][2], C)


def test_merge_takes_only_real_pairs_that_fit_better():
    from edorient.mapping.index import CONSENSUS_GAIN

    res = _results(1, 5)
    res["model_fit"][:] = 0.7
    res["n_grains"][3:] = 2  # pairs already: replaced only by a pair better by CONSENSUS_GAIN
    found = {"index": np.arange(5)}
    found.update({k: v for k, v in _filled(5).items() if k != "status"})
    found["n_grains"][:] = [2, 2, 1, 2, 2]
    found["model_fit"][:] = [0.8, 0.6, 0.9, 0.7 + CONSENSUS_GAIN / 2, 0.7 + 2 * CONSENSUS_GAIN]
    found["rotations"][:] = 1.0
    assert merge_neighbours(res, found) == 2
    assert res["n_grains"].tolist() == [2, 1, 1, 2, 2]
    assert res["neighbour_pass"].tolist() == [True, False, False, False, True]
    assert res["model_fit"][0] == 0.8 and np.isnan(res["rotations"][1]).all() and res["model_fit"][3] == 0.7


def test_a_boundary_pattern_gets_its_neighbours_grain(tmp_path):
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    A, B, C = random_rotations(3, rng=11)
    sim = Simulator(anatase(), SimulationConfig(image_size=128, calibration=0.02, spot_sigma_px=1.2))
    lin = np.stack([sim.linear_images(A[None])[0], 0.5 * (sim.linear_images(A[None])[0] + sim.linear_images(B[None])[0])])
    raw = np.random.default_rng(0).poisson(lin * 2e4).astype(np.float32)
    np.save(tmp_path / "scan.npy", raw[None])  # (1 row, 2 probes, H, W)
    src = open_scan(tmp_path / "scan.npy", calibration=0.02)
    settings = _settings()
    ix = get_indexer(settings)
    x = prepare_pattern(raw[1], 0.02, ix.size, ix.sim.config.resolved_calibration)[0]
    spots = np.full((1,) + FIELDS["spots_working_px"][0], np.nan, dtype=np.float32)
    pk = ix.pattern_spots(x)
    spots[0, : len(pk)] = pk
    laue = anatase().laue
    # a pool grain whose spots land on none of the unexplained ones is not refined (the pattern is not read)
    out = index_neighbours(src, np.array([1]), [np.stack([A, C])], spots, settings)
    assert out["index"].size == 0
    out = index_neighbours(src, np.array([1]), [np.stack([A, C, B])], spots, settings)
    assert out["index"].tolist() == [1] and out["n_grains"][0] == 2
    err = _pair_error(laue, out["directions"][0], A, B)
    assert err < 1.0, err


def test_negative_radius_is_refused_and_files_have_no_neighbours():
    with pytest.raises(EdorientError, match="neighbour-radius"):
        MapSettings(neighbour_radius=-1)
    s = _settings()
    assert s.neighbours_for("files") == 0 and s.neighbours_for("rsciio") == 3
    assert _settings(grains="1").neighbours_for("rsciio") == 0


@pytest.mark.parametrize("seed, weight_a", [(0, 0.4), (3, 0.5), (4, 0.4)])
def test_a_pair_whose_new_grain_is_the_stronger_one_is_two_grains(seed, weight_a):
    # grain A on a zone axis (many spots) is the one-grain fit even where B carries more of the
    # intensity; the pair then has B as its stronger grain, and its new spots are B's (the rule
    # once counted the weaker grain's, A's, and found none: one grain)
    from edorient.physics.orientation import rotation_from_direction
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    xt = anatase()
    ix = get_indexer(_settings())
    sim = Simulator(xt, SimulationConfig(image_size=128, calibration=0.02, spot_sigma_px=1.2))
    A = rotation_from_direction(xt.zone_axis_direction([0, 0, 1]), 10.0)
    B = random_rotations(1, rng=seed)[0]
    lin = weight_a * sim.linear_images(A[None])[0] + (1 - weight_a) * sim.linear_images(B[None])[0]
    raw = np.random.default_rng(0).poisson(lin * 2e4).astype(np.float32)
    x = prepare_pattern(raw, 0.02, ix.size, ix.sim.config.resolved_calibration)[0]
    out = ix.index_full(x[None], pool=[[A, B]])
    assert out["n_grains"][0] == 2 and out["new_spots"][0] >= 2
    err = _pair_error(xt.laue, out["directions"][0], A, B)
    assert err < 1.0, err


def test_support_counts_the_probes_reporting_a_grain_alone_nearby():
    from edorient.mapping.index import neighbour_support

    ny, nx = 4, 6
    res, (A, B, C), proper = _two_columns(ny, nx, 3, 5)  # columns 0-2 grain A, 3-5 grain B
    k = nx * 1 + 2  # probe (1, 2): a pair of A with C, a grain no probe reports alone
    res["n_grains"][k] = 2
    res["rotations"][k, 1] = C
    res["status"][nx * 3 + 5] = 1  # a probe without a beam: never counted, no support
    sup = neighbour_support(res, (ny, nx), proper, radius=1)
    # (1, 2)'s window: rows 0-2, columns 1-3 without itself: 5 one-grain A probes, 3 B, none C
    assert sup[k].tolist() == [5, 0]
    assert sup[0].tolist() == [3, -1]  # (0, 0): (0, 1), (1, 0), (1, 1) report A alone
    assert sup[nx * 2 + 4].tolist() == [7, -1]  # (2, 4): 8 neighbours, all B, one without a beam
    assert (sup[res["status"] == 1] == -1).all()
