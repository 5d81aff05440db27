"""The pruned simulator paths against the unpruned reference.

``kinematic_spots``, ``Simulator.spots``, ``Simulator.spots_batch`` and
``Simulator.linear_images`` evaluate the shape factor only for reflections that the
excitation-error bound (``ExcitationBounds``) cannot rule out. Here they must give exactly the
spots of ``spot_intensities`` (every reflection) thresholded at ``min_intensity``, with values
within float32 rounding, and the images of the unpruned renderer input.
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient import conventions as cv
from edorient.errors import EdorientError
from edorient.physics.orientation import random_rotations
from edorient.physics.pattern import ExcitationBounds, kinematic_spots, spot_intensities
from edorient.render import (
    SimulationConfig,
    Simulator,
    _check_rotation,
    _check_rotation_fast,
    _render_batch,
    display_transform,
)
from edorient.structures import anatase

N_ORIENT = 200
CASES = [(shape, t) for shape in ("sinc2", "gaussian") for t in (50.0, 200.0)]


@pytest.fixture(scope="module")
def xtal():
    return anatase()


@pytest.fixture(scope="module")
def rotations():
    return random_rotations(N_ORIENT, rng=12345)


def _sim(xtal, shape, t, **kw):
    return Simulator(xtal, SimulationConfig(voltage_kv=200.0, shape=shape, thickness=t, image_size=96, **kw))


def _reference(sim, R):
    c = sim.config
    pos, s, inten = spot_intensities(sim.reflections, R, sim.wavelength, c.thickness, c.shape)
    img, ref = np.nonzero(inten >= c.min_intensity)
    return img, ref, pos[img, ref], s[img, ref], inten[img, ref]


def _assert_values(pos, s, inten, pos0, s0, inten0):
    # float64 throughout; sinc² itself is float32-precise, so compare at float32 rounding
    np.testing.assert_allclose(pos, pos0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s, s0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(inten, inten0, rtol=3e-7, atol=0)


@pytest.mark.parametrize("shape, t", CASES)
def test_batch_pairs_equal_unpruned(xtal, rotations, shape, t):
    sim = _sim(xtal, shape, t)
    img0, ref0, pos0, s0, inten0 = _reference(sim, rotations)
    img, ref, pos, s, inten = sim.spots_batch(rotations)
    np.testing.assert_array_equal(img, img0)
    np.testing.assert_array_equal(ref, ref0)
    _assert_values(pos, s, inten, pos0, s0, inten0)
    assert len(img0) > 5 * N_ORIENT  # a real test: several spots per pattern


@pytest.mark.parametrize("shape, t", CASES)
def test_single_orientation_paths_equal_unpruned(xtal, rotations, shape, t):
    sim = _sim(xtal, shape, t)
    c = sim.config
    img0, ref0, pos0, s0, inten0 = _reference(sim, rotations)
    for i, R in enumerate(rotations):
        sel = img0 == i
        a = sim.spots(R)
        b = kinematic_spots(sim.reflections, R, sim.wavelength, c.thickness, c.shape, c.min_intensity)
        for sp in (a, b):
            np.testing.assert_array_equal(sp.index, ref0[sel])
            np.testing.assert_array_equal(sp.hkl, sim.reflections.hkl[ref0[sel]])
            np.testing.assert_array_equal(sp.g, sim.reflections.g[ref0[sel]])
            _assert_values(sp.position, sp.s, sp.intensity, pos0[sel], s0[sel], inten0[sel])


@pytest.mark.parametrize("shape, t", CASES)
def test_linear_images_equal_unpruned_render(xtal, rotations, shape, t):
    sim = _sim(xtal, shape, t)
    c = sim.config
    R = rotations[:64]
    img0, _, pos0, _, inten0 = _reference(sim, R)
    ref = _render_batch(
        img0, pos0, inten0, len(R), c.image_size, c.resolved_calibration, c.spot_sigma_px, c.direct_beam
    )
    out = sim.linear_images(R)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1.2e-7)  # float32 rounding of the peak (1)
    assert np.count_nonzero(out > 1e-3) > 20 * len(R)


def test_render_equals_full_gaussian_sum():
    # independent reference: every spot's Gaussian on the whole image, summed in float64
    rng = np.random.default_rng(3)
    size, cal, sigma, n = 64, 0.02, 1.2, 3
    img = rng.integers(0, n, 40)
    pos = rng.uniform(-0.7, 0.7, (40, 2))
    inten = rng.uniform(1e-4, 0.5, 40)
    got = _render_batch(img, pos, inten, n, size, cal, sigma, 1.0)
    r0 = c0 = size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    want = np.zeros((n, size, size))
    for i in range(n):
        want[i] += np.exp(-((yy - r0) ** 2 + (xx - c0) ** 2) / (2 * sigma**2))
    for i, (gx, gy), a in zip(img, pos, inten):
        r, col = r0 - gy / cal, c0 + gx / cal
        want[i] += a * np.exp(-((yy - r) ** 2 + (xx - col) ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(got, want, rtol=0, atol=2.5e-7)


@pytest.mark.parametrize("shape, t", CASES)
def test_bound_holds_and_prunes(xtal, rotations, shape, t):
    sim = _sim(xtal, shape, t)
    b = sim._bounds
    img0, ref0, _, s0, _ = _reference(sim, rotations)
    assert np.all(np.abs(s0) <= b.s_max[ref0])  # no excited spot beyond its bound
    # ... and the bound is useful: the candidate pairs are a small fraction of n x K
    R = rotations
    z = np.concatenate([R[:, 2, :], np.ones((len(R), 1))], axis=1)
    n_cand = np.count_nonzero(np.abs(z @ b.scaled_t) <= 1.0)
    assert n_cand < 0.2 * len(R) * len(sim.reflections)
    assert n_cand >= len(img0)


def test_min_intensity_zero_keeps_every_reflection(xtal, rotations):
    sim = _sim(xtal, "sinc2", 50.0, min_intensity=0.0)
    img, ref, *_ = sim.spots_batch(rotations[:3])
    assert len(img) == 3 * len(sim.reflections)
    assert len(sim.spots(rotations[0])) == len(sim.reflections)


def test_spot_intensities_still_returns_all_reflections(xtal, rotations):
    sim = _sim(xtal, "sinc2", 50.0)
    pos, s, inten = spot_intensities(sim.reflections, rotations[:5], sim.wavelength, 50.0)
    K = len(sim.reflections)
    assert pos.shape == (5, K, 2) and s.shape == (5, K) and inten.shape == (5, K)


def test_bounds_reject_unknown_shape(xtal):
    sim = _sim(xtal, "sinc2", 50.0)
    with pytest.raises(EdorientError, match="unknown shape"):
        ExcitationBounds.build(sim.reflections, sim.wavelength, 50.0, "lorentz", 1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        np.diag([1.0, 1.0, -1.0]),  # improper
        np.eye(3) * 1.001,  # not orthonormal
        np.array([[1.0, 1e-5, 0], [0, 1, 0], [0, 0, 1]]),  # off-diagonal beyond atol
        np.full((3, 3), np.nan),
        np.eye(3)[:2],
    ],
)
def test_fast_rotation_check_rejects_as_slow_one(xtal, bad):
    with pytest.raises(EdorientError) as slow:
        _check_rotation(bad)
    with pytest.raises(EdorientError) as fast:
        _check_rotation_fast(bad)
    assert str(fast.value) == str(slow.value)
    sim = _sim(xtal, "sinc2", 50.0)
    with pytest.raises(EdorientError):
        sim.spots(bad)


def test_fast_rotation_check_accepts_rotations(rotations):
    for R in rotations[:50]:
        assert _check_rotation_fast(R) is not None
    _check_rotation_fast(rotations[0] + 5e-7)  # within allclose's tolerance, like the slow check
    _check_rotation(rotations[0] + 5e-7)


def test_display_transform_matches_float64_formula(xtal, rotations):
    """float32 ``log(1 + kI)`` is within two float32 ulps at 1 of float64 ``log1p(kI) / log1p(k)``."""
    img = _sim(xtal, "sinc2", 50.0).linear_images(rotations[:4])
    img[0, 0, 0] = -1.0  # negative and saturated pixels are clipped
    img[0, 0, 1] = 1e6
    img[0, 0, 2] = np.nan  # propagates, as in the formula
    img[0, 0, 3] = np.inf
    k = cv.DISPLAY_GAIN
    with np.errstate(invalid="ignore"):
        want = np.clip(np.log1p(k * np.clip(img.astype(np.float64), 0, None)) / np.log1p(k), 0.0, 1.0)
    got = display_transform(img)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1.2e-7)  # NaN where NaN
    assert np.abs(got[1:] - want[1:]).max() > 0  # float32 against float64: not a copy of itself
    np.testing.assert_array_equal(display_transform(img, invert=True), np.float32(1.0) - got)
    assert img[0, 0, 0] == -1.0  # input untouched
    assert np.isnan(got[0, 0, 2]) and got[0, 0, 1] == 1.0 and got[0, 0, 3] == 1.0 and got[0, 0, 0] == 0.0
    assert np.nanmin(got) >= 0.0 and np.nanmax(got) <= 1.0
    spots = img[1:] > 1e-3  # where it matters: spots on the uint8 scale
    assert np.array_equal(np.round(got[1:][spots] * 255), np.round(want[1:][spots] * 255))


def test_display_transform_out_and_in_place(xtal, rotations):
    img = _sim(xtal, "sinc2", 50.0).linear_images(rotations[:3])
    want = display_transform(img)
    buf = np.full_like(img, 7.0)
    assert display_transform(img, out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    assert display_transform(img, out=img) is img  # in place
    np.testing.assert_array_equal(img, want)
    with pytest.raises(EdorientError, match="out must be float32"):
        display_transform(img, out=np.empty(img.shape, dtype=np.float64))
