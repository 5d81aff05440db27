"""``predict --zone``: how far the beam is from a zone the user expects, and which way its Laue
circle lies, checked against the simulator's own excitation errors."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.physics.orientation import rotation_from_direction
from edorient.predict import zone_relation
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


@pytest.mark.parametrize("towards, inplane", [(0.0, 37.0), (90.0, 0.0), (200.0, 115.0), (315.0, 250.0)])
def test_the_laue_circle_is_where_the_simulators_excitation_errors_put_it(towards, inplane):
    # a beam 3° off [0 0 1]: the zero-order reflections with no excitation error lie on a circle
    # through the direct beam (|p - c| = |c|, i.e. p.p = 2 p.c: linear in its centre c, fitted by
    # least squares over the spots weighted by exp(-(s / 0.01 1/Å)^2)); lab x = +col, y = up
    xt = anatase()
    sim = Simulator(xt, SimulationConfig(image_size=256))
    a, t = np.radians(towards), np.radians(3.0)
    R = rotation_from_direction([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)], inplane)
    spots = sim.spots(R)
    pix = sim.spot_pixels(spots)
    c = sim.config.image_size // 2
    P = np.stack([pix[:, 1] - c, -(pix[:, 0] - c)], 1)
    w = np.sqrt(np.exp(-(np.asarray(spots.s) / 0.01) ** 2) * (np.asarray(spots.hkl)[:, 2] == 0))
    centre = np.linalg.lstsq(2 * P * w[:, None], (P * P).sum(1) * w, rcond=None)[0]
    seen = np.degrees(np.arctan2(centre[1], centre[0])) % 360
    r = zone_relation(R, xt, [0, 0, 1])
    assert r["angle_deg"] == pytest.approx(3.0, abs=1e-6)
    assert abs((r["laue_circle_towards_deg"] - seen + 180) % 360 - 180) < 3, (r, seen)
    assert abs((r["zone_towards_deg"] - r["laue_circle_towards_deg"]) % 360 - 180) < 1e-6


def test_the_nearest_equivalent_is_taken_and_a_zero_zone_refused():
    from edorient.errors import EdorientError

    xt = anatase()
    R = rotation_from_direction(xt.zone_axis_direction([1, 0, 1]), 10.0)
    assert zone_relation(R, xt, [0, 1, 1])["angle_deg"] == pytest.approx(0.0, abs=1e-6)  # [0 1 1] ~ [1 0 1]
    assert zone_relation(R, xt, [0, 1, 1])["laue_circle_towards_deg"] is None
    with pytest.raises(EdorientError, match="not all 0"):
        zone_relation(R, xt, [0, 0, 0])
