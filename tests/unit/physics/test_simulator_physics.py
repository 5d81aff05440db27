"""The kinematic simulator against independent facts (not against its own output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.physics.crystal import Crystal
from edorient.physics.orientation import random_rotations, rotation_from_zone_axis
from edorient.physics.pattern import excitation_errors, kinematic_spots, shape_factor
from edorient.physics.reflections import compute_reflections, structure_factors
from edorient.physics.scattering import electron_scattering_factor
from edorient.physics.wavelength import electron_wavelength
from edorient.render import SimulationConfig, Simulator, compose, display_transform
from edorient.structures import anatase, get_crystal, read_cif

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def xtal():
    return anatase()


# -- wavelength --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kv, expected",
    # Williams & Carter, Transmission Electron Microscopy, Table 1.1 (relativistic λ, nm -> Å).
    [(100, 0.03701), (200, 0.02508), (300, 0.01969)],
)
def test_wavelength_table(kv, expected):
    assert electron_wavelength(kv) == pytest.approx(expected, abs=1e-5)


def test_wavelength_200kv_published():
    # diffsims/ITC value quoted in the project brief: 0.0250793 Å at 200 kV.
    assert electron_wavelength(200.0) == pytest.approx(0.0250793, abs=5e-7)


@pytest.mark.parametrize("bad", [0.0, -200.0, float("nan"), float("inf")])
def test_wavelength_rejects_bad_voltage(bad):
    with pytest.raises(EdorientError, match="voltage"):
        electron_wavelength(bad)


# -- structure ---------------------------------------------------------------------------
def test_anatase_cell_and_bond_lengths(xtal):
    assert len(xtal) == 12
    assert sorted(xtal.symbols) == ["O"] * 8 + ["Ti"] * 4
    A = xtal.direct_matrix
    cart = xtal.cartesian
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T @ A.T
    ti = cart[np.array(xtal.symbols) == "Ti"][0]
    o = cart[np.array(xtal.symbols) == "O"]
    dist = np.linalg.norm(o[:, None, :] + shifts[None] - ti, axis=-1).ravel()
    bonds = np.sort(dist[dist < 2.2])
    # Horn et al. (1972): 4 equatorial Ti-O of 1.934 Å and 2 apical of 1.980 Å.
    assert len(bonds) == 6
    np.testing.assert_allclose(bonds[:4], 1.934, atol=1e-3)
    np.testing.assert_allclose(bonds[4:], 1.980, atol=1e-3)


@pytest.mark.parametrize(
    "hkl, d",
    # Anatase powder pattern (ICDD 21-1272, Horn et al. 1972 cell).
    [((1, 0, 1), 3.5165), ((1, 0, 3), 2.4308), ((0, 0, 4), 2.3786), ((1, 1, 2), 2.3323),
     ((2, 0, 0), 1.8922), ((1, 0, 5), 1.7001), ((2, 1, 1), 1.6663), ((2, 0, 4), 1.4808)],
)
def test_anatase_d_spacings(xtal, hkl, d):
    assert xtal.d_spacing(hkl) == pytest.approx(d, rel=5e-4)
    refl = compute_reflections(xtal, 1 / 1.4)
    row = np.flatnonzero(np.all(refl.hkl == hkl, axis=1))
    assert len(row) == 1, f"{hkl} should be an allowed reflection"
    assert refl.d[row[0]] == pytest.approx(d, rel=5e-4)


def test_anatase_extinction_rule(xtal):
    grid = np.array(np.meshgrid(np.arange(-6, 7), np.arange(-6, 7), np.arange(-16, 17), indexing="ij"))
    hkl = grid.reshape(3, -1).T
    hkl = hkl[np.any(hkl != 0, axis=1)]
    f2 = np.abs(structure_factors(xtal, hkl)) ** 2
    present = f2 > 1e-8 * f2.max()
    h, k, l = hkl.T
    expected = ((h + k + l) % 2 == 0) & ((l % 2 == 1) | ((2 * h + l) % 4 == 0))
    mismatch = hkl[present != expected]
    assert len(mismatch) == 0, f"extinction rule broken for {mismatch[:10].tolist()}"
    for special in ([2, 0, 2], [2, 0, 6], [3, 1, 4]):  # special-position absences
        assert not present[np.flatnonzero(np.all(hkl == special, axis=1))[0]]


def test_structure_factor_by_hand(xtal):
    # I4_1/amd origin 1: every atom has x, y in {0, 1/2}, so for 200 all phases are 1:
    # F(200) = 4 f_Ti DW_Ti + 8 f_O DW_O.  For 004 the Ti z are multiples of 1/4 and the 8 O sit
    # at +-z (mod 1/4 shifts), so F(004) = 4 f_Ti DW_Ti + 8 f_O DW_O cos(8 pi z_O).
    z_o = 0.2081
    for hkl, o_phase in (((2, 0, 0), 1.0), ((0, 0, 4), np.cos(8 * np.pi * z_o))):
        g = 1 / xtal.d_spacing(hkl)
        s2 = (g / 2) ** 2
        expected = 4 * electron_scattering_factor(22, g) * np.exp(-0.40 * s2) + 8 * electron_scattering_factor(
            8, g
        ) * np.exp(-0.60 * s2) * o_phase
        F = structure_factors(xtal, np.array([hkl]))[0]
        assert F.real == pytest.approx(expected, rel=1e-9)
        assert abs(F.imag) < 1e-9 * abs(F)


def test_friedel_pairs_equal(xtal):
    refl = compute_reflections(xtal, 1.5)
    lookup = {tuple(h): i for i, h in enumerate(refl.hkl)}
    for i, h in enumerate(refl.hkl):
        j = lookup[tuple(-h)]
        assert abs(refl.F[i]) == pytest.approx(abs(refl.F[j]), rel=1e-12)


def test_cif_matches_builtin(xtal):
    cif = read_cif(DATA / "anatase.cif")
    assert cif.laue.name == "4/mmm"
    a = compute_reflections(xtal, 1.5)
    b = compute_reflections(cif, 1.5)
    np.testing.assert_array_equal(a.hkl, b.hkl)
    np.testing.assert_allclose(np.abs(a.F), np.abs(b.F), rtol=1e-6)


@pytest.mark.parametrize("name, match", [("anatase_nosymmetry.cif", "space group"), ("corrupt.cif", "cannot read"),
                                         ("missing.cif", "not found")])
def test_bad_cif(name, match):
    with pytest.raises(EdorientError, match=match):
        get_crystal(str(DATA / name))


def test_unknown_crystal_name():
    with pytest.raises(EdorientError, match="unknown crystal"):
        get_crystal("rutile-ish")


# -- patterns ----------------------------------------------------------------------------
def test_excitation_error_on_ewald_sphere():
    lam = electron_wavelength(200)
    # A point on the sphere |g - e_z/λ| = 1/λ has s = 0; the origin too.
    theta = 0.05
    g = np.array([np.sin(theta), 0.0, 1 - np.cos(theta)]) / lam
    assert excitation_errors(g, lam) == pytest.approx(0.0, abs=1e-12)
    # Zero-order Laue zone: s = -λ g² / 2.
    assert excitation_errors(np.array([0.5, 0.0, 0.0]), lam) == pytest.approx(-lam * 0.125)


def test_shape_factor_limits():
    s = np.linspace(-0.2, 0.2, 4001)
    for shape in ("sinc2", "gaussian"):
        f = shape_factor(s, 50.0, shape)
        assert f.max() == pytest.approx(1.0)
        # both integrate to 1/t over s
        assert np.trapezoid(f, s) == pytest.approx(1 / 50.0, rel=0.03)


def test_zone_law_and_laue_zones(xtal):
    lam = electron_wavelength(200)
    refl = compute_reflections(xtal, 2.0)
    for uvw in ([0, 0, 1], [1, 0, 1], [1, 1, 0], [2, 0, 1], [1, 1, 1]):
        R = rotation_from_zone_axis(uvw, xtal.direct_matrix, inplane_deg=17.0)
        spots = kinematic_spots(refl, R, lam, thickness=50.0)
        n = spots.hkl @ np.asarray(uvw)  # Laue-zone index h u + k v + l w
        r = np.linalg.norm(xtal.direct_matrix @ np.asarray(uvw, float))
        g_lab = (R @ refl.g_vectors[spots.index].T).T
        np.testing.assert_allclose(g_lab[:, 2], n / r, atol=1e-10)
        zolz = n == 0
        assert zolz.sum() >= 4
        # every zero-order spot lies in the plane perpendicular to the beam
        np.testing.assert_allclose(g_lab[zolz, 2], 0.0, atol=1e-12)


def test_first_order_laue_zone_ring(xtal):
    # Along [001] the first-order Laue zone (l = 1 layer, spacing 1/c) meets the Ewald sphere
    # at g ≈ sqrt(2 / (λ c)) = 2.90 1/Å; a thick crystal (narrow relrods) excites n = 1 spots
    # there and nowhere else.
    lam = electron_wavelength(200)
    refl = compute_reflections(xtal, 3.5)
    R = rotation_from_zone_axis([0, 0, 1], xtal.direct_matrix)
    spots = kinematic_spots(refl, R, lam, thickness=1000.0, shape="gaussian", min_intensity=1e-6)
    holz = spots.hkl[:, 2] != 0
    assert holz.any()
    g_ring = np.sqrt(2 / (lam * xtal.cell[2]))
    g_in_plane = np.linalg.norm(spots.position[holz], axis=1)
    first = spots.hkl[holz, 2] == 1
    assert first.sum() >= 4
    assert np.all(np.abs(g_in_plane[first] - g_ring) < 0.1)


def test_001_pattern_fourfold(xtal):
    sim = Simulator(xtal, SimulationConfig(image_size=65))
    R = rotation_from_zone_axis([0, 0, 1], xtal.direct_matrix)
    sp = sim.spots(R)
    pts = {(round(x, 6), round(y, 6)): I for (x, y), I in zip(sp.position, sp.intensity)}
    for (x, y), I in pts.items():
        assert pts[(round(-y, 6) + 0.0, round(x, 6) + 0.0)] == pytest.approx(I, rel=1e-9)
    img = sim.linear_image(R)  # odd size: the centre pixel is the array centre
    np.testing.assert_allclose(np.rot90(img), img, atol=1e-6)


def test_doubling_cell_halves_spot_spacing(xtal):
    big = Crystal(
        name="anatase x2", cell=tuple(2 * x for x in xtal.cell[:3]) + xtal.cell[3:],
        symbols=xtal.symbols, numbers=xtal.numbers, frac=xtal.frac, occupancy=xtal.occupancy,
        b_iso=xtal.b_iso, space_group=xtal.space_group, laue=xtal.laue,
    )
    lam = electron_wavelength(200)
    out = []
    for c in (xtal, big):
        refl = compute_reflections(c, 1.2)
        R = rotation_from_zone_axis([0, 0, 1], c.direct_matrix)
        sp = kinematic_spots(refl, R, lam, thickness=50.0, min_intensity=0)
        zolz = sp.hkl[:, 2] == 0
        out.append(np.sort(np.linalg.norm(sp.position[zolz], axis=1))[0])
    assert out[1] == pytest.approx(out[0] / 2, rel=1e-9)


def test_vectorised_matches_single(xtal, rng):
    sim = Simulator(xtal, SimulationConfig(image_size=48))
    Rs = random_rotations(4, rng)
    many = sim.linear_images(Rs)
    for R, img in zip(Rs, many):
        np.testing.assert_allclose(sim.linear_image(R), img, atol=1e-6)


def test_image_geometry(xtal):
    cfg = SimulationConfig(image_size=64)
    sim = Simulator(xtal, cfg)
    R = rotation_from_zone_axis([0, 0, 1], xtal.direct_matrix)
    img = sim.linear_image(R)
    assert np.unravel_index(np.argmax(img), img.shape) == (32, 32)  # direct beam, centre pixel
    # the 200 spot sits 1/d(200) / calibration pixels from the centre along a lab axis
    r = (1 / 1.8922) / cfg.resolved_calibration
    col = int(round(32 + r))
    assert img[32, col] > 0.1 * img[32, 32 + 3]


def test_compose_is_linear_mix(xtal, rng):
    sim = Simulator(xtal, SimulationConfig(image_size=32))
    a, b = sim.linear_images(random_rotations(2, rng))
    np.testing.assert_allclose(compose(a, b, 0.5), 0.5 * (a + b), rtol=1e-6)
    # the display transform is applied after mixing, not before
    assert not np.allclose(display_transform(compose(a, b)), 0.5 * (display_transform(a) + display_transform(b)))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"image_size": 8}, "image size"), ({"voltage_kv": -1}, "voltage"), ({"thickness": float("nan")}, "finite"),
     ({"shape": "lorentz"}, "shape")],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(EdorientError, match=match):
        SimulationConfig(**kwargs)


def test_zero_zone_axis_rejected(xtal):
    with pytest.raises(EdorientError, match="zone axis"):
        rotation_from_zone_axis([0, 0, 0], xtal.direct_matrix)


def test_silicon_cif_diamond_extinctions_and_structure_factor():
    # tests/data/si.cif (benchmarks/bench_dynamical.py's Si): d(111) = a / sqrt(3) = 3.1356 Å; the
    # diamond glide forbids hkl all even with h + k + l = 4n + 2 (002, 222) beyond the F centring;
    # by hand: the 8 atoms are the 4 centring points times (0 0 0, 1/4 1/4 1/4), so for hkl the
    # centring allows F = 4 f DW (1 + exp(i pi (h + k + l) / 2)): |F(111)| = 4 sqrt(2) f DW,
    # F(004) = F(220) = 8 f DW, F(002) = F(222) = 0.
    si = get_crystal(DATA / "si.cif")
    assert len(si.frac) == 8 and si.laue.name == "m-3m"
    assert si.d_spacing((1, 1, 1)) == pytest.approx(5.431020511 / np.sqrt(3), rel=1e-9)
    f = {hkl: structure_factors(si, np.array([hkl]))[0] for hkl in [(1, 1, 1), (0, 0, 2), (0, 0, 4), (2, 2, 2), (2, 2, 0)]}
    for hkl, mult in (((1, 1, 1), 4 * np.sqrt(2)), ((0, 0, 4), 8.0), ((2, 2, 0), 8.0)):
        g = 1 / si.d_spacing(hkl)
        expected = mult * electron_scattering_factor(14, g) * np.exp(-0.46 * (g / 2) ** 2)
        assert abs(f[hkl]) == pytest.approx(expected, rel=1e-9)
    assert abs(f[(0, 0, 2)]) < 1e-9 * abs(f[(1, 1, 1)]) and abs(f[(2, 2, 2)]) < 1e-9 * abs(f[(1, 1, 1)])
