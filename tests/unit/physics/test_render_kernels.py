"""The compiled spot renderer (edorient._render_kernels), through ``f.py_func`` and ``f``.

The independent reference (every Gaussian on the whole image, float64) is
``test_render_speedpaths.test_render_equals_full_gaussian_sum``; here: the compiled kernels
equal their pure-Python source, and the window, margin and buffer rules hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient import _render_kernels as k
from edorient.errors import EdorientError
from edorient.physics.orientation import random_rotations
from edorient.render import (
    SimulationConfig,
    Simulator,
    _render_batch,
    compose,
    display_transform,
    render_spots,
    spot_half_width,
)
from edorient.structures import anatase

SIGMA = 1.2
H = spot_half_width(SIGMA)
MARGIN = 4 * SIGMA


def _spots(rng, m, size):
    rows = rng.uniform(-8, size + 8, m)  # some beyond the margin, some on the edges
    cols = rng.uniform(-8, size + 8, m)
    return rows, cols, rng.uniform(1e-4, 0.5, m)


def test_half_width_puts_tail_below_float32_eps():
    assert H == 7  # sigma 1.2: exp(-7^2 / 2.88) = 4.1e-8 < 1.19e-7 < exp(-6^2 / 2.88) = 3.7e-6
    assert np.exp(-(H**2) / (2 * SIGMA**2)) < np.finfo(np.float32).eps < np.exp(-((H - 1) ** 2) / (2 * SIGMA**2))


def test_single_compiled_equals_python():
    rng = np.random.default_rng(0)
    rows, cols, inten = _spots(rng, 30, 40)
    got = np.full((40, 40), 9.0, dtype=np.float32)  # garbage: the kernel zeroes it
    k._render_single(rows, cols, inten, 20.0, 20.0, 1.0, SIGMA, H, MARGIN, got)
    want = np.full((40, 40), 9.0, dtype=np.float32)
    k._render_single.py_func(rows, cols, inten, 20.0, 20.0, 1.0, SIGMA, H, MARGIN, want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)  # exp of two libms: last bits
    assert got[20, 20] >= 1.0 and np.count_nonzero(got) > 100


def test_add_spot_compiled_equals_python_and_window_rule():
    gy, gx = np.empty(2 * H + 1), np.empty(2 * H + 1)
    got = np.zeros((32, 32), dtype=np.float32)
    k._add_spot(got, 10.3, 12.6, 0.5, 1 / (2 * SIGMA**2), H, MARGIN, gy, gx)
    want = np.zeros((32, 32), dtype=np.float32)
    k._add_spot.py_func(want, 10.3, 12.6, 0.5, 1 / (2 * SIGMA**2), H, MARGIN, gy, gx)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    rows, cols = np.nonzero(got)  # the (2h + 1)^2 window around rint(centre) = (10, 13)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10 - H, 10 + H, 13 - H, 13 + H)
    np.testing.assert_allclose(got[10, 13], 0.5 * np.exp(-(0.3**2 + 0.4**2) / (2 * SIGMA**2)), rtol=1e-6)


@pytest.mark.parametrize("r, drawn", [(-MARGIN + 0.01, True), (-MARGIN - 0.01, False), (31 + MARGIN - 0.01, True)])
def test_margin_rule(r, drawn):
    gy, gx = np.empty(2 * H + 1), np.empty(2 * H + 1)
    img = np.zeros((32, 32), dtype=np.float32)
    k._add_spot(img, r, 16.0, 1.0, 1 / (2 * SIGMA**2), H, MARGIN, gy, gx)
    assert (np.count_nonzero(img) > 0) == drawn


def test_2d_equals_one_image_at_a_time():
    rng = np.random.default_rng(1)
    rows, cols, inten = _spots(rng, 50, 24)
    starts = np.array([0, 10, 10, 35, 50], dtype=np.int64)  # image 1 has no spot
    out = np.empty((4, 24, 24), dtype=np.float32)
    k._render_2d(starts, rows, cols, inten, 12.0, 12.0, 0.0, SIGMA, H, MARGIN, out)
    for i in range(4):
        one = np.empty((24, 24), dtype=np.float32)
        sl = slice(starts[i], starts[i + 1])
        k._render_single(rows[sl].copy(), cols[sl].copy(), inten[sl].copy(), 12.0, 12.0, 0.0, SIGMA, H, MARGIN, one)
        np.testing.assert_array_equal(out[i], one)
    assert not out[1].any()  # no spots, no direct beam (peak 0)


def test_render_batch_writes_into_out_and_sorts_images():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 3, 30)
    pos = rng.uniform(-0.5, 0.5, (30, 2))
    inten = rng.uniform(1e-3, 0.5, 30)
    want = _render_batch(img, pos, inten, 3, 48, 0.03, SIGMA, 1.0)
    out = np.full((3, 48, 48), -1.0, dtype=np.float32)
    assert _render_batch(img, pos, inten, 3, 48, 0.03, SIGMA, 1.0, out=out) is out
    np.testing.assert_array_equal(out, want)
    order = np.argsort(img, kind="stable")  # unsorted input gives the sorted input's image
    np.testing.assert_array_equal(_render_batch(img[order], pos[order], inten[order], 3, 48, 0.03, SIGMA, 1.0), want)
    single = render_spots(pos[img == 0], inten[img == 0], 48, 0.03, SIGMA)
    np.testing.assert_array_equal(single, want[0])


def test_linear_images_out():
    sim = Simulator(anatase(), SimulationConfig(image_size=32))
    R = random_rotations(5, rng=4)
    want = sim.linear_images(R)
    buf = np.full((5, 32, 32), 3.0, dtype=np.float32)
    assert sim.linear_images(R, out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    with pytest.raises(EdorientError, match="out must be"):
        sim.linear_images(R, out=np.empty((4, 32, 32), dtype=np.float32))


def test_images_and_bicrystals_equal_composed_linear_images():
    sim = Simulator(anatase(), SimulationConfig(image_size=48))
    Ra, Rb = random_rotations(40, rng=5), random_rotations(40, rng=6)  # > one batch of 32
    a, b = sim.linear_images(Ra), sim.linear_images(Rb)
    np.testing.assert_array_equal(sim.images(Ra), display_transform(a))
    np.testing.assert_array_equal(sim.images(Ra, invert=True), display_transform(a, invert=True))
    for ratio in (0.5, 0.3):
        want = display_transform(compose(a, b, ratio))
        np.testing.assert_array_equal(sim.bicrystal_images(Ra, Rb, ratio), want)
    buf = np.empty((40, 48, 48), dtype=np.float32)
    assert sim.bicrystal_images(Ra, Rb, out=buf) is buf
    with pytest.raises(EdorientError, match="grain B"):
        sim.bicrystal_images(Ra, Rb[:3])
    with pytest.raises(EdorientError, match="ratio"):
        sim.bicrystal_images(Ra, Rb, 1.5)


def test_display_transform_overlapping_and_strided_outputs():
    rng = np.random.default_rng(7)
    img = rng.uniform(-0.1, 1.2, (3, 20, 20)).astype(np.float32)
    want = display_transform(img)
    shifted = np.concatenate([img.reshape(-1), np.zeros(5, np.float32)])
    view_in, view_out = shifted[:-5].reshape(img.shape), shifted[5:].reshape(img.shape)
    display_transform(view_in, out=view_out)  # overlapping but not the same memory
    np.testing.assert_array_equal(view_out, want)
    strided = np.empty((3, 20, 40), dtype=np.float32)[:, :, ::2]
    display_transform(img, out=strided)
    np.testing.assert_array_equal(strided, want)
    np.testing.assert_array_equal(display_transform(img[:, :, ::-1]), want[:, :, ::-1])


def test_gaussian_row_recurrence_equals_exp():
    g = np.empty(15)
    for d0, peak in [(-7.4, 1.0), (-7.5, 0.3), (-6.6, 2.0)]:
        k._gaussian_row(d0, 15, peak, 1 / (2 * SIGMA**2), g)
        want = peak * np.exp(-((d0 + np.arange(15)) ** 2) / (2 * SIGMA**2))
        np.testing.assert_allclose(g, want, rtol=1e-13, atol=0)
        py = np.empty(15)
        k._gaussian_row.py_func(d0, 15, peak, 1 / (2 * SIGMA**2), py)
        np.testing.assert_allclose(py, want, rtol=1e-13, atol=0)


def test_display_kernels_compiled_equal_python():
    x = np.array([np.nan, -1.0, 0.0, 1e-9, 0.25, 1.0, 7.0, np.inf], dtype=np.float32)
    a, b = x.copy(), x.copy()
    k._display_pre(a, np.float32(1000.0))
    k._display_pre.py_func(b, np.float32(1000.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1:], np.float32([1.0, 1.0, 1.0 + 1e-6, 251.0, 1001.0, 1001.0, 1001.0]))
    assert np.isnan(a[0])
    c, d = a.copy(), a.copy()
    k._display_post(c, np.float32(2.0))
    k._display_post.py_func(d, np.float32(2.0))
    np.testing.assert_array_equal(c, d)
    np.testing.assert_array_equal(c[1:], np.float32([0.5, 0.5, 0.5 + 5e-7, 1.0, 1.0, 1.0, 1.0]))
