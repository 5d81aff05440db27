"""Tests of edorient.physics.orientation: conventions, round trips, uniformity, bad input."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation

from edorient.errors import EdorientError
from edorient.physics.orientation import (
    beam_direction,
    inplane_angle,
    random_rotations,
    rotation_from_direction,
    rotation_from_zone_axis,
    rz,
    sample_sector_directions,
    sector_triangle_4mmm,
    stereographic,
)
from edorient.physics.symmetry import laue_group

ANATASE_A = np.diag([3.7845, 3.7845, 9.5143])
EZ = np.array([0.0, 0.0, 1.0])


def _assert_proper(r):
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_rotation_from_direction_round_trip(rng):
    d = rng.normal(size=(300, 3)) * rng.uniform(0.01, 100, size=(300, 1))
    theta = rng.uniform(-720, 720, size=300)
    r = rotation_from_direction(d, theta)
    assert r.shape == (300, 3, 3)
    _assert_proper(r)
    np.testing.assert_allclose(beam_direction(r), _unit(d), atol=1e-12)
    np.testing.assert_allclose(r @ _unit(d)[..., None], np.broadcast_to(EZ[:, None], (300, 3, 1)),
                               atol=1e-12)
    # in-plane angle round trip, in [0, 360)
    got = inplane_angle(r)
    assert np.all((got >= 0) & (got < 360))
    diff = (got - theta + 180) % 360 - 180
    np.testing.assert_allclose(diff, 0, atol=1e-8)
    np.testing.assert_allclose(inplane_angle(r, degrees=False), np.radians(got))
    # rebuilding from (beam, theta) gives R back
    np.testing.assert_allclose(rotation_from_direction(beam_direction(r), got), r, atol=1e-10)


def test_beam_direction_independent_of_theta():
    d = np.array([0.3, -0.2, 0.9])
    r = rotation_from_direction(d, np.linspace(0, 360, 13))
    np.testing.assert_allclose(beam_direction(r), np.broadcast_to(_unit(d), (13, 3)), atol=1e-12)


def test_r0_is_the_smallest_rotation(rng):
    d = _unit(rng.normal(size=(200, 3)))
    r0 = rotation_from_direction(d)
    rv = Rotation.from_matrix(r0).as_rotvec()  # scipy as the independent code
    angle = np.linalg.norm(rv, axis=1)
    np.testing.assert_allclose(angle, np.arccos(np.clip(d[:, 2], -1, 1)), atol=1e-9)
    axis = _unit(np.cross(d, EZ))
    np.testing.assert_allclose(rv / angle[:, None], axis, atol=1e-9)


def test_special_directions():
    np.testing.assert_array_equal(rotation_from_direction([0, 0, 1]), np.eye(3))
    np.testing.assert_array_equal(rotation_from_direction([0, 0, -2]), np.diag([1.0, -1, -1]))
    # near the antipode the rotation stays orthonormal and exact
    for eps in (1e-3, 1e-7, 1e-12):
        d = np.array([eps, 0.0, -1.0])
        r = rotation_from_direction(d)
        _assert_proper(r)
        np.testing.assert_allclose(beam_direction(r), _unit(d), atol=1e-14)
        np.testing.assert_allclose(r, np.diag([-1.0, 1, -1]), atol=2 * eps)  # about y
    # [100] goes to e_z by a quarter turn about -y
    np.testing.assert_allclose(rotation_from_direction([1, 0, 0]),
                               [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-15)


def test_inplane_is_anticlockwise_on_the_detector():
    # beam along [001]: crystal a (x) should appear rotated anticlockwise by theta in lab x-y
    r = rotation_from_direction([0, 0, 1], 90.0)
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(rz(30.0) @ [1, 0, 0], [np.cos(np.pi / 6), 0.5, 0])
    assert inplane_angle(rotation_from_direction([0, 0, -1], 123.0)) == pytest.approx(123.0)


def test_broadcasting_shapes():
    assert rotation_from_direction([1.0, 2, 3], [0, 10, 20]).shape == (3, 3, 3)
    assert rotation_from_direction(np.ones((4, 2, 3)), 5.0).shape == (4, 2, 3, 3)
    assert rotation_from_direction(np.ones((4, 1, 3)), np.zeros((1, 5))).shape == (4, 5, 3, 3)
    r = rotation_from_direction(np.ones((2, 3)), [10.0, 20.0])
    assert beam_direction(r).shape == (2, 3) and inplane_angle(r).shape == (2,)


def test_zone_axis_anatase():
    np.testing.assert_allclose(beam_direction(rotation_from_zone_axis([0, 0, 1], ANATASE_A)), EZ,
                               atol=1e-15)
    expected = _unit(np.array([3.7845, 0.0, 9.5143]))
    np.testing.assert_allclose(beam_direction(rotation_from_zone_axis([1, 0, 1], ANATASE_A)),
                               expected, atol=1e-12)
    r = rotation_from_zone_axis([[1, 0, 1], [1, 1, 0]], ANATASE_A, inplane_deg=[0.0, 45.0])
    np.testing.assert_allclose(beam_direction(r[1]), _unit(np.array([1.0, 1, 0])), atol=1e-12)
    assert inplane_angle(r[1]) == pytest.approx(45.0)
    # a hexagonal cell: [1 0 0] is along x, [0 1 0] at 120 degrees
    hexa = np.array([[3.0, -1.5, 0], [0, 3.0 * np.sqrt(3) / 2, 0], [0, 0, 5.0]])
    np.testing.assert_allclose(beam_direction(rotation_from_zone_axis([0, 1, 0], hexa)),
                               [-0.5, np.sqrt(3) / 2, 0], atol=1e-12)


@pytest.mark.parametrize("uvw", [[0, 0, 0], [np.nan, 0, 1], [1, np.inf, 0]])
def test_zone_axis_bad_input(uvw):
    with pytest.raises(EdorientError, match="zone axis"):
        rotation_from_zone_axis(uvw, ANATASE_A)


def test_bad_input():
    with pytest.raises(EdorientError, match="zone axis"):
        rotation_from_zone_axis([[1, 0, 0], [0, 0, 0]], ANATASE_A)
    with pytest.raises(EdorientError, match="zone axis"):
        rotation_from_zone_axis([1, 0], ANATASE_A)
    with pytest.raises(EdorientError, match="direct_matrix"):
        rotation_from_zone_axis([1, 0, 0], np.zeros((3, 3)))
    with pytest.raises(EdorientError):
        rotation_from_direction([0, 0, 0])
    with pytest.raises(EdorientError):
        rotation_from_direction([np.nan, 0, 1])
    with pytest.raises(EdorientError, match="inplane"):
        rotation_from_direction([0, 0, 1], np.nan)
    with pytest.raises(EdorientError):
        beam_direction(np.eye(2))
    with pytest.raises(EdorientError):
        inplane_angle(np.full((3, 3), np.nan))
    with pytest.raises(EdorientError):
        random_rotations(-1, 0)
    with pytest.raises(EdorientError):
        stereographic([0, 0, 0])


def test_random_rotations_uniform():
    r = random_rotations(20000, np.random.default_rng(7))
    assert r.shape == (20000, 3, 3)
    _assert_proper(r)
    # Haar measure: E[R] = 0 (standard error of each entry ~ 1/sqrt(3 n) = 0.004)
    assert np.abs(r.mean(axis=0)).max() < 0.02
    # beam z-component uniform on [-1, 1] (Archimedes), in-plane angle uniform on [0, 360)
    assert stats.kstest(beam_direction(r)[:, 2], stats.uniform(-1, 2).cdf).pvalue > 0.01
    assert stats.kstest(inplane_angle(r[:5000]), stats.uniform(0, 360).cdf).pvalue > 0.01
    # E[trace] = 0 for Haar rotations (trace = 1 + 2 cos(omega))
    assert abs(np.trace(r, axis1=1, axis2=2).mean()) < 0.03
    # reproducible from a seed; an int seed works too
    np.testing.assert_array_equal(random_rotations(5, np.random.default_rng(3)),
                                  random_rotations(5, 3))
    assert random_rotations(0, 0).shape == (0, 3, 3)


def test_sample_sector_directions_uniform():
    g = laue_group("4/mmm")
    d = sample_sector_directions(20000, g, np.random.default_rng(11))
    assert d.shape == (20000, 3)
    assert np.all((d[:, 0] >= d[:, 1]) & (d[:, 1] >= 0) & (d[:, 2] >= 0))
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    # uniform over the sector: z (= |z| of a sphere point) uniform on [0, 1], and the azimuth
    # uniform on [0, 45] degrees
    assert stats.kstest(d[:, 2], stats.uniform(0, 1).cdf).pvalue > 0.01
    phi = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    assert stats.kstest(phi, stats.uniform(0, 45).cdf).pvalue > 0.01
    assert sample_sector_directions(0, g, 0).shape == (0, 3)
    m3m = laue_group("m-3m")
    assert np.all(m3m.in_sector(sample_sector_directions(500, m3m, 1)))


def test_stereographic_and_triangle():
    corners = sector_triangle_4mmm()
    np.testing.assert_allclose(np.linalg.norm(corners, axis=1), 1.0)
    p = stereographic(corners)
    np.testing.assert_allclose(p, [[0, 0], [1, 0], [np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-15)
    # the corners lie on the boundary of the 4/mmm sector
    assert np.all(laue_group("4/mmm").in_sector(corners))
    # projection of a direction at polar angle t is at radius tan(t / 2)
    t = np.radians(70.0)
    np.testing.assert_allclose(stereographic([np.sin(t), 0, np.cos(t)] * np.array(2.0)),
                               [np.tan(t / 2), 0])
    assert stereographic(np.ones((4, 5, 3))).shape == (4, 5, 2)
