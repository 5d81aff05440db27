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
