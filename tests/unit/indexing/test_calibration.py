"""Calibration fit (scale, ellipticity), the units check and the calibration file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _measured import measured

from edorient.errors import EdorientError
from edorient.indexing.calibration import (
    Calibration,
    check_calibration_units,
    distortion_matrix,
    fit_calibration,
    load_calibration,
    metric_to_distortion,
    save_calibration,
    undistort_image,
    zone_cell,
)
from edorient.physics.orientation import rotation_from_direction
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase, get_crystal

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "realdata"
TRUE = 0.012


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=256, calibration=TRUE, spot_sigma_px=1.5))


def _pattern(sim, uvw, seed, ellipticity=1.03, angle=37.0, beam_stop=False):
    rng = np.random.default_rng(seed)
    d = sim.crystal.zone_axis_direction(uvw)
    t = rng.normal(size=3)
    t -= t.dot(d) * d
    t *= np.radians(0.3) / np.linalg.norm(t)
    R = rotation_from_direction((d + t) / np.linalg.norm(d + t), rng.uniform(0, 360))
    return measured(sim, R, size=256, calibration=TRUE, centre=(121.3, 134.8), ellipticity=ellipticity,
                    angle_deg=angle, beam_stop=beam_stop, rng=seed)


def _dphi(a, b):
    return (a - b + 90) % 180 - 90


@pytest.mark.parametrize("uvw, beam_stop, zone_given", [([0, 0, 1], False, True), ([1, 1, 1], True, False),
                                                       ([1, 0, 0], True, True), ([2, 0, 1], False, True)])
def test_recovers_scale_and_ellipticity(sim, uvw, beam_stop, zone_given):
    """A calibration 5 % off as the guess, 3 % ellipticity at 37°, noise, a beam stop."""
    img, mask, c = _pattern(sim, uvw, seed=sum(uvw), beam_stop=beam_stop)
    fit = fit_calibration(img, sim.crystal, zone=uvw if zone_given else None, guess=TRUE * 1.05,
                          mask=mask if beam_stop else None)
    assert fit.calibration == pytest.approx(TRUE, rel=2e-3)
    assert fit.ellipticity == pytest.approx(1.03, abs=3e-3)
    assert abs(_dphi(fit.angle_deg, 37.0)) < 3.0
    assert np.hypot(fit.centre[0] - c[0], fit.centre[1] - c[1]) < 0.3
    assert fit.n_spots >= 6 and fit.residual_px < 0.5


def test_no_distortion_gives_ellipticity_one(sim):
    img, _, _ = _pattern(sim, [1, 1, 0], seed=5, ellipticity=1.0)
    fit = fit_calibration(img, sim.crystal, zone=[1, 1, 0])
    assert fit.calibration == pytest.approx(TRUE, rel=2e-3) and fit.ellipticity < 1.004


def test_undistort_removes_the_ellipticity(sim):
    img, _, _ = _pattern(sim, [0, 0, 1], seed=6, ellipticity=1.04, angle=-20.0)
    fit = fit_calibration(img, sim.crystal, zone=[0, 0, 1])
    cal = Calibration(fit.calibration, fit.ellipticity, fit.angle_deg)
    again = fit_calibration(undistort_image(img, cal, fit.centre), sim.crystal, zone=[0, 0, 1])
    assert again.ellipticity < 1.005 and again.calibration == pytest.approx(TRUE, rel=3e-3)


def test_wrong_zone_or_scale_is_refused(sim):
    img, _, _ = _pattern(sim, [0, 0, 1], seed=7)
    with pytest.raises(EdorientError, match="matches no cell"):
        fit_calibration(img, sim.crystal, zone=[1, 1, 1])
    with pytest.raises(EdorientError, match="within 10%"):
        fit_calibration(img, sim.crystal, zone=[0, 0, 1], guess=TRUE * 1.3, tolerance=0.1)


def test_metric_round_trip():
    Di = np.linalg.inv(distortion_matrix(1.05, 123.0))
    kappa, e, phi = metric_to_distortion(0.0123**2 * Di @ Di)
    assert (kappa, e, phi) == pytest.approx((0.0123, 1.05, 123.0))


def test_zone_cells():
    xtal = anatase()
    c = zone_cell(xtal, [0, 0, 1])  # I-centring: 110
    assert np.sqrt(c.gram[0, 0]) == pytest.approx(np.sqrt(2) / 3.7845, rel=1e-6)
    c = zone_cell(xtal, [0, 0, 1], allowed_only=True)  # the d-glide leaves 200
    assert np.sqrt(c.gram[0, 0]) == pytest.approx(2 / 3.7845, rel=1e-6)
    with pytest.raises(EdorientError, match="not all zero"):
        zone_cell(xtal, [0, 0, 0])


@pytest.mark.parametrize("cal, ok", [(0.0134, True), (0.134, False), (0.00134, False), (0.05, True)])
def test_units_check_anatase(cal, ok):
    if ok:
        check_calibration_units(cal, anatase(), (224, 224))
    else:
        with pytest.raises(EdorientError) as info:
            check_calibration_units(cal, anatase(), (224, 224))
        hint = f"{cal / 10:.4g}" if cal > 0.05 else f"{cal * 10:.4g}"
        assert hint in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata not present")
@pytest.mark.parametrize("name, cif, zone, truth", [("al_001_sped.npy", "Al.cif", [0, 0, 1], 0.01901),
                                                   ("al_001_T1_sped.npy", "Al.cif", [0, 0, 1], 0.01901),
                                                   ("cuni_110_sad.png", "CuNi.cif", [1, 1, 0], 0.00979)])
def test_real_cases(name, cif, zone, truth):
    from edorient.io.images import read_image

    img = read_image(REAL / "images" / name)
    xtal = get_crystal(REAL / "cif" / cif)
    check_calibration_units(truth, xtal, img.shape)
    for bad in (truth * 10, truth / 10):  # 1/nm typed for 1/Å, and the reverse
        with pytest.raises(EdorientError, match="1/Å per px"):
            check_calibration_units(bad, xtal, img.shape)
    fit = fit_calibration(img, xtal, zone=zone, guess=truth * 1.1)
    assert fit.calibration == pytest.approx(truth, rel=5e-3)
    assert fit.ellipticity < 1.03
    free = fit_calibration(img, xtal)  # neither zone nor guess
    assert free.calibration == pytest.approx(truth, rel=5e-3)


def test_calibration_file_round_trip(tmp_path):
    cal = Calibration(0.0123, 1.02, 33.0, (10.5, 20.25), 200.0, "anatase", (0, 0, 1), "x.png", "2026-01-01", 0.1, 12)
    path = save_calibration(tmp_path / "cal.json", cal)
    assert json.loads(path.read_text())["format"] == "edorient-calibration/1"
    assert load_calibration(path) == cal
    assert load_calibration(str(path)) == cal
    assert load_calibration("0.0134") == Calibration(0.0134)
    assert load_calibration(0.02).calibration == 0.02
    np.testing.assert_allclose(cal.matrix() @ distortion_matrix(1.02, 33.0) @ [3.0, 4.0], [0.0369, 0.0492])


@pytest.mark.parametrize("content, match", [(None, "neither a number"), ("{", "cannot read"), ("[1]", "no 'calibration'"),
                                            ('{"calibration": -1}', "positive"), ('{"calibration": "x"}', "malformed"),
                                            ('{"calibration": 0.01, "ellipticity": 0.5}', "ellipticity")])
def test_bad_calibration_files(tmp_path, content, match):
    path = tmp_path / "c.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EdorientError, match=match):
        load_calibration(path)
    with pytest.raises(EdorientError, match="positive"):
        load_calibration("-0.01")


def test_distort_image_is_undone_by_undistort_image():
    # a simulated detector's distortion (the scan simulator's) and predict's / the map's correction
    # are inverses: the round trip returns the pattern inside the frame (bilinear twice: a blur)
    from edorient.indexing.calibration import distort_image

    rng = np.random.default_rng(0)
    rr, cc = np.indices((96, 96))
    img = sum(np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / 18.0) for r, c in rng.uniform(15, 81, (12, 2)))
    centre = (47.0, 49.0)
    d = distort_image(img, 1.05, 30.0, centre)
    inner = np.hypot(rr - centre[0], cc - centre[1]) < 35
    moved = np.abs(d - img)[inner].max()  # 0.15: it moved the spots
    back = undistort_image(d, Calibration(0.02, 1.05, 30.0), centre)
    assert np.abs(back - img)[inner].max() < 0.4 * moved  # 0.05 left: two bilinear resamplings
    # the correction about the other axis doubles the distortion instead
    assert np.abs(undistort_image(d, Calibration(0.02, 1.05, 120.0), centre) - img)[inner].max() > 1.5 * moved
    # a spot at detector vector u (lab x, y) lands at D u
    one = np.exp(-((rr - (centre[0] - 20.0)) ** 2 + (cc - centre[1]) ** 2) / 2.0)  # u = (0, 20)
    r, c = np.unravel_index(np.argmax(distort_image(one, 1.05, 30.0, centre)), one.shape)
    v = distortion_matrix(1.05, 30.0) @ [0.0, 20.0]
    assert abs(r - (centre[0] - v[1])) <= 0.5 and abs(c - (centre[1] + v[0])) <= 0.5


ZRO2 = Path(__file__).resolve().parents[2] / "data" / "zro2.cif"


@pytest.mark.parametrize("uvw", [[0, 0, 1], [1, 0, 0]])
def test_monoclinic_zone_is_calibrated_at_its_scale_without_a_guess(uvw):
    """ZrO2 [0 0 1]: 010 absent (2_1 along b) and 100 weak, so the strongest spots lie on the
    110-type lattice; its centred superlattice (adding 100) was never tried and the zone was
    labelled at half its scale (0.004 for 0.008). [1 0 0] came out at 1/sqrt(2). Now the right
    scale wins without --calibration, and the wrong one is reported as the runner-up."""
    from edorient.physics.reflections import structure_factors

    x = get_crystal(ZRO2)
    F2 = np.abs(structure_factors(x, np.array([[0, 1, 0], [1, 0, 0], [2, 0, 0]]))) ** 2
    assert F2[0] < 1e-6 * F2[2] and F2[1] < F2[2] / 2  # the pattern's trap, from the structure
    true = 0.008
    sim = Simulator(x, SimulationConfig(image_size=256, calibration=true, spot_sigma_px=1.5))
    R = rotation_from_direction(x.zone_axis_direction(uvw), 17.0)
    img, _, _ = measured(sim, R, size=256, calibration=true, centre=(121.3, 134.8), ellipticity=1.0,
                         angle_deg=0.0, beam_stop=False, rng=1)
    for zone in (uvw, None):
        fit = fit_calibration(img, x, zone=zone)
        assert fit.calibration == pytest.approx(true, rel=2e-3) and tuple(fit.zone) == tuple(uvw)
        assert fit.missing_share < 0.05
    assert fit.runner_up is not None and fit.runner_up["penalty_margin"] > 0
    with_zone = fit_calibration(img, x, zone=uvw)
    assert with_zone.runner_up is not None and abs(with_zone.runner_up["calibration"] / true - 1) > 0.2


def test_the_three_superlattices_of_index_two_are_tried():
    """L + a1/2, L + a2/2 and L + (a1 + a2)/2: the third is the centred one."""
    from edorient.indexing.calibration import _INDEX2

    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    added = set()
    for M in _INDEX2:
        B = A @ np.linalg.inv(M.T)
        assert abs(abs(np.linalg.det(B)) - 0.5) < 1e-12
        # the half-lattice point each superlattice adds, as a coset of Z^2
        pts = {tuple(np.round((B @ np.array(n)) % 1.0, 6)) for n in ((1, 0), (0, 1), (1, 1))}
        added |= pts - {(0.0, 0.0)}
    assert added == {(0.5, 0.0), (0.0, 0.5), (0.5, 0.5)}


def test_a_calibration_too_small_and_a_crop_too_tight_get_their_own_hints():
    """anatase's 101 (d = 3.52 Å) at 0.00134 1/Å per px lies 212 px out on a 224 px image: 10x
    too small (0.0134 puts it 21 px out). At 0.0134 on a 28 x 28 crop it lies 21 px out, beyond
    the crop's 20 px corner: the calibration is fine, the crop holds no reflection."""
    x = anatase()
    with pytest.raises(EdorientError, match=r"10x too small\? use 0\.0134"):
        check_calibration_units(0.00134, x, (224, 224))
    with pytest.raises(EdorientError, match="larger crop") as err:
        check_calibration_units(0.0134, x, (28, 28))
    assert "10x" not in str(err.value)
    check_calibration_units(0.0134, x, (64, 64))  # a crop that holds the 101 ring: fine
