"""Tests of edorient.physics.symmetry against independent constructions and brute force."""

import itertools

import numpy as np
import pytest

from edorient.conventions import SECTOR_REFERENCE
from edorient.errors import EdorientError
from edorient.physics.symmetry import LAUE_GROUP_NAMES, LaueGroup, laue_group

ORDERS = {
    "-1": 2, "2/m": 4, "mmm": 8, "4/m": 8, "4/mmm": 16, "-3": 6, "-3m": 12,
    "6/m": 12, "6/mmm": 24, "m-3": 24, "m-3m": 48,
}


def _signed_permutations():
    """All 48 signed permutation matrices (the cubic holohedry m-3m), built independently."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for row, (col, s) in enumerate(zip(perm, signs)):
                m[row, col] = s
            out.append(m)
    return np.array(out)


def _rot(axis, deg):
    """Rotation by ``deg`` about ``axis`` (Rodrigues), independent of the package."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


def _same_set(a, b, atol=1e-9):
    a, b = np.asarray(a).reshape(-1, 1, 9), np.asarray(b).reshape(1, -1, 9)
    return a.shape[0] == b.shape[1] and np.abs(a - b).max(axis=2).min(axis=1).max() < atol


def _brute_reduce(group, v):
    """For each v: the image g v with the largest dot product with the reference."""
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    images = np.einsum("mij,nj->nmi", group.ops, u)
    best = np.argmax(images @ SECTOR_REFERENCE, axis=1)
    return images[np.arange(len(u)), best]


def _brute_angle(group, a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    images = np.einsum("mij,nj->nmi", group.ops, b)
    cos = np.clip(np.einsum("ni,nmi->nm", a, images), -1, 1)
    return np.degrees(np.arccos(cos)).min(axis=1)


@pytest.fixture(scope="module")
def groups():
    return {name: laue_group(name) for name in LAUE_GROUP_NAMES}


# --- the groups ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAUE_GROUP_NAMES)
def test_group_structure(groups, name):
    g = groups[name]
    ops = g.ops
    assert g.name == name and g.order == ORDERS[name] == len(ops)
    np.testing.assert_allclose(ops[0], np.eye(3))
    assert _same_set(-np.eye(3)[None], ops[[np.allclose(o, -np.eye(3)) for o in ops]])
    np.testing.assert_allclose(ops @ ops.transpose(0, 2, 1), np.broadcast_to(np.eye(3), ops.shape),
                               atol=1e-12)
    # no duplicates
    diffs = np.abs(ops[:, None] - ops[None]).max(axis=(2, 3))
    assert np.all(diffs[~np.eye(len(ops), dtype=bool)] > 1e-6)
    # closure: every product is in the group
    products = np.einsum("aij,bjk->abik", ops, ops).reshape(-1, 1, 9)
    assert np.abs(products - ops.reshape(1, -1, 9)).max(axis=2).min(axis=1).max() < 1e-9
    # the name is recovered from the group itself
    assert LaueGroup.from_operations(ops, np.eye(3)).name == name


def test_cubic_and_tetragonal_are_signed_permutations(groups):
    sp = _signed_permutations()
    assert _same_set(groups["m-3m"].ops, sp)
    fixes_z = sp[np.abs(sp[:, 2, 2]) == 1]
    assert _same_set(groups["4/mmm"].ops, fixes_z)
    diag = sp[np.all(np.abs(np.diagonal(sp, axis1=1, axis2=2)) == 1, axis=1)]
    assert _same_set(groups["mmm"].ops, diag)
    # m-3: signed even permutations (det of the unsigned permutation matrix = +1)
    even = sp[np.isclose(np.linalg.det(np.abs(sp)), 1)]
    assert _same_set(groups["m-3"].ops, even)


def test_hexagonal_matches_independent_rotations(groups):
    proper = [_rot([0, 0, 1], 60 * k) for k in range(6)]
    proper += [_rot([np.cos(np.radians(30 * k)), np.sin(np.radians(30 * k)), 0], 180)
               for k in range(6)]
    proper = np.array(proper)
    assert _same_set(groups["6/mmm"].ops, np.concatenate([proper, -proper]))
    six = proper[:6]
    assert _same_set(groups["6/m"].ops, np.concatenate([six, -six]))
    # -3m1: 3-folds about z and 2-folds along a (x) and its 120-degree images
    trig = [_rot([0, 0, 1], 120 * k) for k in range(3)]
    trig += [_rot([np.cos(np.radians(120 * k)), np.sin(np.radians(120 * k)), 0], 180)
             for k in range(3)]
    trig = np.array(trig)
    assert _same_set(groups["-3m"].ops, np.concatenate([trig, -trig]))
    assert _same_set(laue_group("-3m1").ops, groups["-3m"].ops)
    g31m = laue_group("-31m")
    assert g31m.name == "-3m" and g31m.order == 12
    assert not _same_set(g31m.ops, groups["-3m"].ops)
    # in -31m the 2-folds lie along a - b ... i.e. at 90 degrees (y) and its 120-degree images
    assert np.any(np.all(np.abs(g31m.ops - _rot([0, 1, 0], 180)) < 1e-9, axis=(1, 2)))


def test_from_operations_anatase_like_and_hexagonal_cell():
    # the 16 rotation parts of I4_1/amd on fractional coordinates (as gemmi's op.rot / 24)
    frac = []
    for perm in ([[1, 0, 0], [0, 1, 0]], [[0, 1, 0], [1, 0, 0]]):
        for sx, sy, sz in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), int)
            m[0] = np.array(perm[0]) * sx
            m[1] = np.array(perm[1]) * sy
            m[2, 2] = sz
            frac.append(m)
    a = np.diag([3.7845, 3.7845, 9.5143])
    g = LaueGroup.from_operations(np.array(frac), a)
    assert g.name == "4/mmm" and g.order == 16
    assert g == laue_group("4/mmm")
    # integer rotations of P6/mmm on a real hexagonal cell (a = 3.0, c = 5.0)
    ah, ch = 3.0, 5.0
    hexa = np.array([[ah, -ah / 2, 0], [0, ah * np.sqrt(3) / 2, 0], [0, 0, ch]])
    six = np.array([[1, -1, 0], [1, 0, 0], [0, 0, 1]])
    two = np.array([[1, -1, 0], [0, -1, 0], [0, 0, -1]])
    assert LaueGroup.from_operations([six, two], hexa) == laue_group("6/mmm")
    assert laue_group("6/mmm", hexa) == laue_group("6/mmm")


def test_from_operations_wrong_cell_raises():
    six = np.array([[1, -1, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(EdorientError, match="not orthogonal"):
        LaueGroup.from_operations([six], np.diag([3.0, 3.0, 5.0]))
    with pytest.raises(EdorientError, match="not orthogonal"):
        laue_group("4/mmm", np.diag([3.0, 3.1, 5.0]))
    with pytest.raises(EdorientError):
        LaueGroup.from_operations([np.eye(3)], np.zeros((3, 3)))
    with pytest.raises(EdorientError):
        LaueGroup.from_operations(np.eye(2), np.eye(3))


def test_constructor_validation():
    with pytest.raises(EdorientError, match="inversion"):
        LaueGroup("1", np.eye(3)[None])
    with pytest.raises(EdorientError, match="identity"):
        LaueGroup("-1", np.array([-np.eye(3), np.eye(3)]))
    with pytest.raises(EdorientError, match="duplicates"):
        LaueGroup("-1", np.array([np.eye(3), -np.eye(3), np.eye(3)]))
    with pytest.raises(EdorientError, match="orthogonal"):
        LaueGroup("-1", np.array([np.eye(3), -2 * np.eye(3)]))
    with pytest.raises(EdorientError, match="unknown Laue group"):
        laue_group("4/mm")


# --- reduce ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAUE_GROUP_NAMES)
def test_reduce_matches_brute_force_and_is_invariant(groups, name, rng):
    g = groups[name]
    v = rng.normal(size=(500, 3)) * rng.uniform(0.1, 10, size=(500, 1))
    r = g.reduce(v)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(r, _brute_reduce(g, v), atol=1e-12)
    assert np.all(g.in_sector(r))
    for op in g.ops:  # invariant under any op applied to the input
        np.testing.assert_allclose(g.reduce(v @ op.T), r, atol=1e-9)
    np.testing.assert_allclose(g.reduce(r), r, atol=1e-12)  # idempotent
    # r is an equivalent of v
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.all(np.abs(np.einsum("nmi,ni->nm", g.equivalents(u), r) - 1).min(axis=1) < 1e-12)


def test_reduce_4mmm_is_the_triangle(groups, rng):
    g = groups["4/mmm"]
    r = g.reduce(rng.normal(size=(20000, 3)))
    assert np.all((r[:, 0] >= r[:, 1]) & (r[:, 1] >= 0) & (r[:, 2] >= 0))
    # and in_sector agrees with the triangle on unreduced vectors
    v = rng.normal(size=(5000, 3))
    tri = (v[:, 0] >= v[:, 1]) & (v[:, 1] >= 0) & (v[:, 2] >= 0)
    np.testing.assert_array_equal(g.in_sector(v, atol=0.0), tri)


def test_reduce_known_values_and_shapes(groups):
    g = groups["4/mmm"]
    np.testing.assert_allclose(g.reduce([0, -1, -1]), [1 / np.sqrt(2), 0, 1 / np.sqrt(2)])
    np.testing.assert_allclose(g.reduce([0, 0, -5]), [0, 0, 1])
    np.testing.assert_allclose(g.reduce([-1, -1, 0]), [np.sqrt(0.5), np.sqrt(0.5), 0])
    np.testing.assert_allclose(g.reduce([1, 2, -3]), np.array([2, 1, 3]) / np.sqrt(14))
    assert g.reduce(np.ones((2, 4, 3))).shape == (2, 4, 3)
    r, idx = g.reduce([[0, 0, -1]], return_index=True)
    np.testing.assert_allclose(g.ops[idx[0]] @ [0, 0, -1], r[0])
    # the reference itself is in every sector
    for grp in groups.values():
        np.testing.assert_allclose(grp.reduce(SECTOR_REFERENCE), SECTOR_REFERENCE)


@pytest.mark.parametrize("bad", [[0, 0, 0], [np.nan, 0, 1], [np.inf, 0, 0], [1, 2], 3.0])
def test_reduce_bad_input(groups, bad):
    with pytest.raises(EdorientError):
        groups["4/mmm"].reduce(bad)


# --- angle and equivalents --------------------------------------------------------------------
@pytest.mark.parametrize("name", LAUE_GROUP_NAMES)
def test_angle_matches_brute_force_and_is_symmetric(groups, name, rng):
    g = groups[name]
    a, b = rng.normal(size=(2, 400, 3))
    ang = g.angle(a, b)
    np.testing.assert_allclose(ang, _brute_angle(g, a, b), atol=1e-6)
    np.testing.assert_allclose(g.angle(b, a), ang, atol=1e-9)
    np.testing.assert_allclose(g.angle(a, b, degrees=False), np.radians(ang))
    # equal to the plain angle between the reduced vectors? not in general, but <= it
    ra, rb = g.reduce(a), g.reduce(b)
    plain = np.degrees(np.arccos(np.clip(np.sum(ra * rb, axis=1), -1, 1)))
    assert np.all(ang <= plain + 1e-9)
    # zero for an equivalent
    op = g.ops[rng.integers(g.order, size=400)]
    np.testing.assert_allclose(g.angle(a, np.einsum("nij,nj->ni", op, b)), ang, atol=1e-9)
    np.testing.assert_allclose(g.angle(a, np.einsum("nij,nj->ni", op, a) * 3.0), 0, atol=1e-9)
    # never more than 90 degrees: the inversion is in every Laue group
    assert np.all(ang <= 90 + 1e-9)


def test_angle_known_values(groups):
    g = groups["4/mmm"]
    assert g.angle([1, 0, 1], [0, -1, -1]) == pytest.approx(0.0, abs=1e-12)
    assert g.angle([1, 0, 0], [1, 1, 0]) == pytest.approx(45.0)
    assert g.angle([1, 0, 0], [0, 1, 0]) == pytest.approx(0.0, abs=1e-12)
    assert g.angle([0, 0, 1], [1, 0, 0]) == pytest.approx(90.0)
    assert g.angle([0, 0, 1], [0, 0, -1]) == pytest.approx(0.0, abs=1e-12)
    assert groups["m-3m"].angle([1, 0, 0], [0, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert groups["m-3m"].angle([1, 1, 1], [1, 0, 0]) == pytest.approx(
        np.degrees(np.arccos(1 / np.sqrt(3))))
    assert groups["mmm"].angle([1, 0, 0], [0, 1, 0]) == pytest.approx(90.0)
    assert groups["6/mmm"].angle([1, 0, 0], [np.cos(np.radians(50)), np.sin(np.radians(50)), 0]) \
        == pytest.approx(10.0)
    assert groups["-1"].angle([1, 0, 0], [-1, 0.0, 0]) == pytest.approx(0.0, abs=1e-12)


def test_angle_broadcasting_and_bad_input(groups):
    g = groups["4/mmm"]
    a = np.array([1.0, 0, 0])
    b = np.array([[1.0, 1, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(g.angle(a, b), [45, 0, 90])
    assert g.angle(np.ones((2, 1, 3)), np.ones((5, 3))).shape == (2, 5)
    with pytest.raises(EdorientError, match="a must be non-zero"):
        g.angle([0, 0, 0], [1, 0, 0])
    with pytest.raises(EdorientError, match="b must be finite"):
        g.angle([1, 0, 0], [np.nan, 0, 0])


def test_equivalents(groups):
    g = groups["4/mmm"]
    eq = g.equivalents([1, 2, 3])
    assert eq.shape == (16, 3)
    expected = {tuple(s * np.array(p)) for p in ((1, 2, 3), (2, 1, 3))
                for s in itertools.product((1, -1), (1, -1), (1, -1))}
    got = {tuple(int(c) for c in np.round(x * np.sqrt(14))) for x in eq}
    assert got == {tuple(int(c) for c in e) for e in expected}
    assert g.equivalents(np.ones((4, 3))).shape == (4, 16, 3)
    # [001] sits on the 4-fold: only two distinct directions
    assert len(np.unique(np.round(g.equivalents([0, 0, 1]), 9), axis=0)) == 2


def test_in_sector_tolerance(groups):
    g = groups["4/mmm"]
    assert g.in_sector([1, -1e-12, 1])
    assert not g.in_sector([1, -1e-3, 1])
    assert g.in_sector(np.eye(3)).tolist() == [True, False, True]


def test_hashable_and_equality(groups):
    assert laue_group("4/mmm") == groups["4/mmm"]
    assert groups["4/mmm"] != groups["4/m"]
    assert len({laue_group("mmm"), groups["mmm"]}) == 1
    assert "4/mmm" in repr(groups["4/mmm"])
    with pytest.raises(ValueError):
        groups["4/mmm"].ops[0, 0, 0] = 2.0  # read-only


@pytest.mark.parametrize("name", ["4/mmm", "m-3m", "6/mmm"])
def test_pairwise_apart_matches_the_angle(name):
    # the dictionary's distinct-entry table: the same booleans as the pairwise angle, as products
    g = laue_group(name)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 3))
    b = np.concatenate([rng.normal(size=(200, 3)), g.equivalents(a[:20]).reshape(-1, 3)[::7]])
    ang = g.angle(a[:, None], b[None])
    for deg in (1.0, 4.0, 20.0):
        np.testing.assert_array_equal(g.apart(a, b, deg, chunk=64), ang > deg)


@pytest.mark.parametrize("name", ["4/mmm", "m-3m", "6/mmm", "2/m", "-1"])
def test_reported_rotation_is_one_writing_of_each_orientation(name):
    from edorient.physics.orientation import random_rotations
    from edorient.physics.symmetry import misorientation_deg, proper_rotations, reported_rotation

    g = laue_group(name)
    P = proper_rotations(g)
    R = random_rotations(500, rng=3)
    C = reported_rotation(R, g)
    assert misorientation_deg(R, C, P).max() < 1e-4  # the same orientation
    # its beam on (within 2° of) the grain's label, or of the label's opposite
    along = np.einsum("ij,ij->i", C[:, 2, :], g.reduce(R[:, 2, :]))
    assert (np.abs(along) >= np.cos(np.radians(2.0))).all()
    # every symmetry-equivalent writing of an orientation gives the same one
    S = P[np.random.default_rng(0).integers(0, len(P), len(R))]
    np.testing.assert_allclose(reported_rotation(np.einsum("nij,nkj->nik", R, S), g), C, atol=1e-9)



def test_reported_in_plane_angle_does_not_jump_across_a_zone_axis():
    # two fits 0.05° either side of [1 0 1] of a cubic crystal (a two-fold axis) with the same
    # in-plane angle are written with the same angle, not 180° apart
    from edorient.physics.orientation import inplane_angle, rotation_from_direction
    from edorient.physics.symmetry import reported_rotation

    g = laue_group("m-3m")
    z = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)
    t = np.radians(0.05) * np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
    a = rotation_from_direction(z + t, 96.0)
    b = rotation_from_direction(z - t, 96.0)
    ia, ib = (float(inplane_angle(reported_rotation(R, g))) for R in (a, b))
    assert abs(ia - ib) < 0.2, (ia, ib)
