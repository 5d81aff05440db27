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
    with pytest.raises(EdorientError, match="is no direction"):
        zone_relation(R, xt, [0, 0, 0])


def test_four_miller_bravais_indices_only_for_hexagonal_axes():
    from edorient.errors import EdorientError
    from edorient.physics.crystal import Crystal, from_miller_bravais, miller_bravais
    from edorient.physics.symmetry import laue_group
    from edorient.predict import _checked_zone

    assert _checked_zone([2, -1, -1, 0]) == [1, 0, 0] and _checked_zone([0, 0, 0, 1]) == [0, 0, 1]
    # the three-index direction is the four-index one: u a1 + v a2 + t a3 + w c with a3 = -(a1 + a2)
    for uvw in ([1, 0, 0], [1, 1, 0], [2, 1, 0], [1, 0, 1], [1, -1, 3], [0, 0, 1]):
        u, v, t, w = miller_bravais(uvw)
        U, V, W = uvw
        k = (u - t) / U if U else (v - t) / V if V else w / W
        assert np.allclose([u - t, v - t, w], k * np.array(uvw)) and u + v + t == 0
        assert from_miller_bravais([u, v, t, w]) == list(np.array(uvw) // np.gcd.reduce(uvw))
    with pytest.raises(EdorientError, match="u \\+ v \\+ t = 0"):
        _checked_zone([1, 1, 1, 0])
    with pytest.raises(EdorientError, match="four \\(Miller-Bravais\\) indices are for hexagonal axes"):
        _checked_zone([2, -1, -1, 0], anatase())
    from edorient.physics.crystal import direct_matrix

    cell = (3.0, 3.0, 5.0, 90.0, 90.0, 120.0)
    hexa = Crystal(name="hex", cell=cell, symbols=("Mg",), numbers=np.array([12]), frac=np.zeros((1, 3)),
                   occupancy=np.ones(1), b_iso=np.zeros(1), space_group="P 6/m m m",
                   laue=laue_group("6/mmm", direct_matrix(*cell)))
    assert hexa.hexagonal_axes and not anatase().hexagonal_axes
    assert _checked_zone([1, 0, -1, 0], hexa) == [2, 1, 0]
    assert zone_relation(rotation_from_direction(hexa.zone_axis_direction([2, 1, 0]), 0.0), hexa,
                         [1, 0, -1, 0])["uvw_miller_bravais"] == [1, 0, -1, 0]


def test_a_rival_near_the_same_zone_is_said_to_leave_the_zone_in_no_doubt():
    from edorient.predict import _fit_rival, _grain_json

    xt = anatase()
    z = xt.zone_axis_direction([1, 0, 1])
    # the answer 0.9° off [1 0 1] one way, the rival 0.9° off it the other way (1.8° apart)
    ax = np.cross(z, [0.0, 1.0, 0.0])
    ax /= np.linalg.norm(ax)

    def tilted(deg):
        t = np.radians(deg)
        return np.cos(t) * z + np.sin(t) * ax

    g = _grain_json(xt, rotation_from_direction(tilted(0.9), 10.0), xt.laue.reduce(tilted(0.9)))
    g.update(verdict="ambiguous", verdict_reasons=["another direction more than 1° away fits the whole image within "
                                                   "0.010 (below 0.025)"])
    r = _fit_rival(xt, g, tilted(-0.9))
    assert r["same_zone"] and r["nearest_zone_axis"] == g["nearest_zone_axis"]
    assert r["angle_to_answer_deg"] == pytest.approx(1.8, abs=1e-3) and r["angle_to_zone_axis_deg"] == pytest.approx(0.9, abs=1e-3)
    assert len(g["verdict_reasons"]) == 2 and "the zone is not in doubt" in g["verdict_reasons"][1]
    # a rival near another zone: said so in the JSON, no such sentence
    g["verdict_reasons"] = g["verdict_reasons"][:1]
    r = _fit_rival(xt, g, xt.zone_axis_direction([1, 1, 2]))
    assert not r["same_zone"] and r["nearest_zone_axis"] != g["nearest_zone_axis"] and len(g["verdict_reasons"]) == 1
    # a confident answer gets no sentence either
    g["verdict"] = "confident"
    assert _fit_rival(xt, g, tilted(-0.9))["same_zone"] and len(g["verdict_reasons"]) == 1


def test_a_tilt_within_the_uncertainty_gets_no_direction():
    """The summary names the Laue circle's direction (where to tilt) only for a tilt the answer
    resolves: 0.08° off with 0.21° RMS uncertainty is 'on the beam', 2° off is a direction."""
    from edorient.predict import _grain_lines

    def lines(angle, unc):
        g = {"nearest_zone_axis": [0, 0, 1], "angle_to_zone_axis_deg": angle, "uncertainty_deg": unc,
             "verdict": "confident", "zone_given": {"uvw": [0, 0, 1], "angle_deg": angle,
                                                    "zone_towards_deg": 95.0, "laue_circle_towards_deg": 275.0}}
        return "\n".join(_grain_lines({"grains": [g]}))

    near, far = lines(0.08, 0.21), lines(2.0, 0.21)
    assert "no tilt to make" in near and "275°" not in near
    assert "towards 275°" in far and "no tilt" not in far


def test_zone_messages_name_what_is_wrong():
    """Two indices: the count is named; four for a cubic cell: Miller-Bravais is for hexagonal
    axes (the message was 'needs u + v + t = 0', true but no help)."""
    from edorient.errors import EdorientError
    from edorient.predict import _checked_zone

    with pytest.raises(EdorientError, match=r"needs three integers .* got 2: \[1, 1\]"):
        _checked_zone([1, 1])
    with pytest.raises(EdorientError, match="for other cells give three"):
        _checked_zone([1, 1, 0, 0])
