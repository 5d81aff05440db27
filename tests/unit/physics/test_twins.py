"""Zone-axis twins: the invariant that defines them, checked on the simulator's spots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from edorient.errors import EdorientError
from edorient.indexing.refine import misorientation_deg, proper_rotations
from edorient.physics.orientation import rotation_from_zone_axis
from edorient.physics.twins import half_turn_about, zone_axes_near, zone_axis_twins
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=128))


def _near_zone(xt, uvw, tilt_deg, inplane_deg=17.0, tilt_axis=(0.6, 0.8, 0.0)):
    R = rotation_from_zone_axis(uvw, xt.direct_matrix, inplane_deg)
    return Rotation.from_rotvec(np.radians(tilt_deg) * np.asarray(tilt_axis)).as_matrix() @ R


def test_half_turn_about():
    C = half_turn_about([1.0, 2.0, 2.0])
    np.testing.assert_allclose(C @ C, np.eye(3), atol=1e-15)
    assert np.linalg.det(C) == pytest.approx(1.0)
    np.testing.assert_allclose(C @ np.array([1.0, 2.0, 2.0]), [1.0, 2.0, 2.0], atol=1e-15)
    np.testing.assert_allclose(C @ np.array([2.0, -1.0, 0.0]), [-2.0, 1.0, 0.0], atol=1e-15)  # perpendicular: reversed
    with pytest.raises(EdorientError, match="non-zero axis"):
        half_turn_about([0, 0, 0])


def test_the_twin_shares_every_zolz_spot_and_only_those(sim):
    """R and R C (C the half turn about [3 1 1], a zone that is no two-fold axis of 4/mmm) put
    each ZOLZ reflection g and -g at the same lab position with the same excitation error and
    intensity (Friedel); reflections off the zone's plane differ; the beams lie 2δ apart."""
    xt = sim.crystal
    uvw = np.array([3, 1, 1])
    z = xt.zone_axis_direction(uvw)
    R = _near_zone(xt, uvw, 2.5)
    T = R @ half_turn_about(z)
    a, b = sim.spots(R), sim.spots(T)
    zolz = a.hkl @ uvw == 0
    assert zolz.sum() >= 10 and (~zolz).sum() >= 5  # both kinds are excited 2.5° off the zone
    key_b = {tuple(h): i for i, h in enumerate(b.hkl)}
    for i in np.flatnonzero(zolz):
        j = key_b[tuple(-a.hkl[i])]
        np.testing.assert_allclose(b.position[j], a.position[i], atol=1e-12)
        assert b.s[j] == pytest.approx(a.s[i], abs=1e-12)
        assert b.intensity[j] == pytest.approx(a.intensity[i], rel=1e-9)
    # the spots off the zone's plane are not the same pattern
    off_a = {tuple(np.round(p, 6)) for p in a.position[~zolz]}
    off_b = {tuple(np.round(p, 6)) for p in b.position[b.hkl @ uvw != 0]}
    assert off_a != off_b
    delta = np.degrees(np.arccos(R[2] @ z))
    assert delta == pytest.approx(2.5, abs=1e-6)
    assert np.degrees(np.arccos(np.clip(R[2] @ T[2], -1, 1))) == pytest.approx(2 * delta, abs=1e-6)


def test_zone_axes_near_finds_the_zone_by_the_zone_law(sim):
    xt, rf = sim.crystal, sim.reflections
    for uvw in ([3, 1, 1], [1, 1, 1], [2, 1, 0]):
        R = _near_zone(xt, uvw, 3.0)
        found, dirs = zone_axes_near(R[2], rf.hkl, rf.g_vectors, rf.intensity, xt.direct_matrix)
        assert found[0].tolist() == uvw
        np.testing.assert_allclose(dirs[0], xt.zone_axis_direction(uvw), atol=1e-12)
    # (1 -1 0) x (1 0 -10) = [10 10 1]: the zone law on two reflections alone
    hkl = np.array([[1, -1, 0], [1, 0, -10]])
    g = hkl @ xt.reciprocal_matrix.T
    beam = xt.zone_axis_direction([10, 10, 1])
    found, _ = zone_axes_near(beam, hkl, g, np.ones(2), xt.direct_matrix)
    assert found.tolist() == [[10, 10, 1]]


def test_twins_recover_the_truth_and_skip_two_fold_axes(sim):
    xt, rf = sim.crystal, sim.reflections
    P = proper_rotations(xt.laue)
    args = (rf.hkl, rf.g_vectors, rf.intensity, xt.direct_matrix, P)
    # 3° off [3 1 1]: the twin of the twin is the orientation itself
    R = _near_zone(xt, [3, 1, 1], 3.0)
    tw = zone_axis_twins(R, *args, max_twins=1)
    assert tw.shape == (1, 3, 3)
    assert misorientation_deg(tw[0], R, P) > 5.0
    back = zone_axis_twins(tw[0], *args, max_twins=1)
    assert misorientation_deg(back[0], R, P) < 1e-6
    # about [0 0 1] and [1 1 0] (two-fold axes of 4/mmm) the twin is a symmetry equivalent: none
    for uvw in ([0, 0, 1], [1, 1, 0]):
        assert zone_axis_twins(_near_zone(xt, uvw, 2.0), *args).shape == (0, 3, 3)


def test_the_invariant_holds_on_a_hexagonal_cell():
    """An hcp cell (non-orthogonal axes, 6/mmm): 3° off [1 0 1] the twin shares every ZOLZ spot;
    about [0 0 1] and [1 0 0] (two-fold axes of 6/mmm) there is none."""
    from edorient.physics.crystal import Crystal
    from edorient.physics.symmetry import laue_group

    a, c = 3.21, 5.21
    cell = (a, a, c, 90.0, 90.0, 120.0)
    hcp = Crystal(name="hcp Mg", cell=cell, symbols=("Mg", "Mg"), numbers=np.array([12, 12]),
                  frac=np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]), occupancy=np.ones(2),
                  b_iso=np.full(2, 0.5), space_group="P 63/m m c", laue=laue_group("6/mmm"))
    sim = Simulator(hcp, SimulationConfig(image_size=128))
    rf = sim.reflections
    P = proper_rotations(hcp.laue)
    uvw = np.array([1, 0, 1])
    R = _near_zone(hcp, uvw, 3.0)
    found, _ = zone_axes_near(R[2], rf.hkl, rf.g_vectors, rf.intensity, hcp.direct_matrix)
    assert found[0].tolist() == uvw.tolist()
    (T,) = zone_axis_twins(R, rf.hkl, rf.g_vectors, rf.intensity, hcp.direct_matrix, P, max_twins=1)
    a_sp, b_sp = sim.spots(R), sim.spots(T)
    key_b = {tuple(h): i for i, h in enumerate(b_sp.hkl)}
    zolz = np.flatnonzero(a_sp.hkl @ uvw == 0)
    assert len(zolz) >= 6
    for i in zolz:
        j = key_b[tuple(-a_sp.hkl[i])]
        np.testing.assert_allclose(b_sp.position[j], a_sp.position[i], atol=1e-12)
        assert b_sp.intensity[j] == pytest.approx(a_sp.intensity[i], rel=1e-9)
    for two_fold in ([0, 0, 1], [1, 0, 0]):
        got = zone_axis_twins(_near_zone(hcp, two_fold, 2.0), rf.hkl, rf.g_vectors, rf.intensity,
                              hcp.direct_matrix, P)
        assert got.shape == (0, 3, 3), two_fold
