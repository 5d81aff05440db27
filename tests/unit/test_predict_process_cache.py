"""``predict_file`` keeps the search's dictionaries and refiners between calls of one process, bounded."""

from __future__ import annotations

import numpy as np

from edorient import predict as pr
from edorient.physics.orientation import rotation_from_zone_axis
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase, get_crystal


def test_anatase_by_name_is_one_instance():
    assert get_crystal("anatase") is get_crystal("Anatase")
    assert get_crystal("anatase") is not anatase()  # the constructor still builds a new one


def test_a_second_call_reuses_the_first_calls_objects(tmp_path, monkeypatch):
    xt = anatase()
    sim = Simulator(xt, SimulationConfig(image_size=160, calibration=0.0125))
    img = sim.linear_image(rotation_from_zone_axis([1, 0, 1], xt.direct_matrix, 20.0)) * 2e4 + 5
    path = tmp_path / "p.npy"
    np.save(path, img.astype(np.float32))
    monkeypatch.setattr(pr, "_PROCESS_CACHE", {})
    cfg = pr.PredictConfig(calibration=0.0125, centre=(80.0, 80.0), matcher_directions=60, single_directions=60)
    first = pr.predict_file(path, cfg)
    kept = dict(pr._PROCESS_CACHE)
    assert kept, "nothing kept after the first call"
    second = pr.predict_file(path, cfg)
    # the same objects, not rebuilt; the same answer
    assert all(pr._PROCESS_CACHE[k] is v for k, v in kept.items())
    assert first["grains"][0]["nearest_zone_axis"] == second["grains"][0]["nearest_zone_axis"] == [1, 0, 1]
    # past the bound it is emptied before the next call fills it again
    monkeypatch.setattr(pr, "PROCESS_CACHE_ENTRIES", len(kept) - 1)
    pr.predict_file(path, cfg)
    assert not any(pr._PROCESS_CACHE.get(k) is v for k, v in kept.items())
    assert 0 < len(pr._PROCESS_CACHE) <= len(kept)


def test_a_pattern_and_the_same_pattern_larger_do_not_share_a_search(tmp_path, monkeypatch):
    # the same field of view in pixels three times smaller: a kept search maps file pixels by
    # its calibration, so reused for the second it read a garbled image (al_001 3x larger after
    # al_001 in one process: the right zone 'no match', pattern score -0.05)
    from types import SimpleNamespace

    from edorient.indexing.pipeline import IndexConfig, SearchConfig, _searcher

    monkeypatch.setenv("EDORIENT_CACHE", str(tmp_path))
    xt = anatase()
    search = SearchConfig(n_directions=60)
    cache: dict = {}
    a = _searcher(xt, IndexConfig(0.019, (44.0, 44.0), search=search), SimpleNamespace(data_radius_px=45.0), cache)
    b = _searcher(xt, IndexConfig(0.019 / 3, (132.0, 132.0), search=search), SimpleNamespace(data_radius_px=135.0), cache)
    assert a is not b and b.calibration == 0.019 / 3
    assert a.working_calibration == b.working_calibration  # the same working frame, built again
    c = _searcher(xt, IndexConfig(0.019, (44.0, 44.0), search=search), SimpleNamespace(data_radius_px=45.0), cache)
    assert c is a  # the same file geometry: kept
