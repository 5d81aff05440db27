"""Reflections the structure forbids, lit by double diffraction, do not mislead the answer (issue 11).

A real Si [1 1 0] pattern shows 002 and 222, which the diamond glide forbids kinematically: each
is the sum of two allowed reflections (1-11 + -111 ...), and double diffraction puts intensity
there. The simulator draws none, so the image holds spots no kinematic answer explains. Here they
are drawn from the crystal's lattice (an atom on each F-centring point: every reflection the
centring allows) at 30 % of the brightest spot, the allowed ones' intensities are broken by
log-normal factors as dynamical scattering breaks them, and the known zone must still come back
within 1° and not ``no match``. (Not necessarily ``confident``: the beam's tilt off the zone is
read from the intensities, which are scrambled here, so a tilt a degree away can fit as well; 5 of
7 intensity draws were ``confident``, all 7 within 1°. ``benchmarks/bench_dynamical.py`` measures
more zones and crystals.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edorient.indexing.pipeline import IndexConfig, index_pattern
from edorient.physics.orientation import rotation_from_direction
from edorient.render import SimulationConfig, Simulator, _render_batch
from edorient.structures import anatase, centring_lattice, get_crystal

CIF = Path(__file__).resolve().parents[2] / "data" / "si.cif"
SIZE, CAL = 192, 0.0125
CFG = SimulationConfig(image_size=SIZE, calibration=CAL, spot_sigma_px=1.6)


def _drawn(crystal, R, sigma, rng):
    """The linear pattern of ``crystal`` at rotations ``R`` (1, 3, 3), every reflection's intensity
    times exp(N(0, sigma)), scaled to its brightest pixel."""
    orient, _, pos, _, inten = (np.array(a) for a in Simulator(crystal, CFG).spots_batch(R))
    out = _render_batch(orient, pos, inten * np.exp(rng.normal(0, sigma, len(inten))), 1, SIZE, CAL, 1.6, 0.0)[0]
    return out / out.max()


def _halo():
    c = (SIZE - 1) / 2
    rr, cc = np.indices((SIZE, SIZE), dtype=float)
    return 0.02 * np.exp(-np.hypot(rr - c, cc - c) / 25.0) + 0.002


def test_si_110_with_its_forbidden_002_and_222_lit_is_still_found():
    si = get_crystal(CIF)
    lattice = centring_lattice(si)  # an atom on each F-centring point
    R = rotation_from_direction(si.zone_axis_direction((1, 1, 0))[None], np.array([23.0]))
    rng = np.random.default_rng(3)
    lit = _drawn(lattice, R, 0.0, rng)
    # the forbidden reflections are there: the lattice's pattern is bright where Si's is dark
    # (002 at 1 / 2.7155 Å⁻¹ = 29.5 px from the beam, along the [0 0 1] row of the zone)
    kin = _drawn(si, R, 0.0, rng)
    forbidden = (lit > 0.2) & (kin < 1e-3)
    rows, cols = np.nonzero(forbidden)
    r = np.hypot(rows - (SIZE - 1) / 2, cols - (SIZE - 1) / 2)
    assert forbidden.sum() > 20 and np.abs(r - 29.5).min() < 2, "the 002 spots are not drawn"
    assert (lit > 0.2).sum() > (kin > 0.2).sum()
    c = (SIZE - 1) / 2
    image = rng.poisson((_drawn(si, R, 0.7, rng) + 0.3 * lit + _halo()) * 2e5).astype(np.float64)
    res = index_pattern(image, IndexConfig(CAL, (c, c), grains=1), si)
    g = res.grains[0]
    err = float(si.laue.angle(R[0, 2][None], g.rotation[2][None])[0])
    assert err < 1.0, (err, g.verdict)
    assert g.verdict != "no match", (g.verdict, g.reasons)


def test_anatase_001_with_scrambled_intensities_is_not_taken_for_531_at_another_scale():
    # anatase [0 0 1], every reflection's intensity times exp(N(0, 1)) and the glide-forbidden
    # ones (110 ...) lit by the I lattice at 30 %: before session 32, 7 of 12 such draws came back
    # [5 3 1] at a calibration 13 % high (67° off, `no match` for 4.7 % ellipticity): the zone's own
    # scale was never tried (its scan peak 0.79 under the scan's best, 0.84 at 1.13), and tried,
    # [5 3 1] still fitted the whole image better. Now 12 of 12 within 0.31° (these are two of them).
    x = anatase()
    lattice = centring_lattice(x)  # I: an atom at 0 0 0 and 1/2 1/2 1/2
    R = rotation_from_direction(x.zone_axis_direction((0, 0, 1))[None], np.array([17.0]))
    c = (SIZE - 1) / 2
    cache: dict = {}
    for seed in (3, 4):
        rng = np.random.default_rng(seed)
        image = rng.poisson((_drawn(x, R, 1.0, rng) + 0.3 * _drawn(lattice, R, 1.0, rng) + _halo()) * 2e5)
        image = image.astype(np.float64)
        res = index_pattern(image, IndexConfig(CAL, (c, c), grains=1), x, cache=cache)
        g = res.grains[0]
        err = float(x.laue.angle(R[0, 2][None], g.rotation[2][None])[0])
        assert err < 1.0 and g.verdict != "no match", (seed, err, g.verdict, res.calibration_scale)
        assert abs(res.calibration_scale - 1) < 0.02
