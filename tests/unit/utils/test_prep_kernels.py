"""The compiled preprocessing steps give the bits of the numpy and scipy code they replace."""

import numpy as np
import pytest
from scipy import ndimage

from edorient import _prep_kernels as kern


def test_radii_are_numpy_s_hypot():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        r0, c0 = rng.uniform(-10, h + 10), rng.uniform(-10, w + 10)
        want = np.hypot(np.arange(h, dtype=float)[:, None] - r0, np.arange(w, dtype=float)[None, :] - c0)
        np.testing.assert_array_equal(kern.radii(h, w, r0, c0), want)


def test_connected_to_keeps_the_labelled_regions_that_hold_a_seed():
    # scipy.ndimage.label's default structure (4-connected), then the labels found under the seeds
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        inside = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        seeds = rng.random((h, w)) < rng.uniform(0.0, 0.05)
        lab, _ = ndimage.label(inside)
        want = np.isin(lab, np.unique(lab[seeds & (lab > 0)]))
        np.testing.assert_array_equal(kern.connected_to(inside, seeds), want)


def _two_numpy_passes(src, rows, cols):
    """The resampling as it was written with numpy (np.take along each axis in turn)."""
    def along(a, pos, axis):
        n = a.shape[axis]
        inside = (pos >= 0) & (pos <= n - 1)
        lo = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
        f = np.where(inside, pos - lo, 0.0)
        w = np.where(inside, 1.0 - f, 0.0)
        shape = [1, 1]
        shape[axis] = -1
        return np.take(a, lo, axis) * w.reshape(shape) + np.take(a, np.minimum(lo + 1, n - 1), axis) * f.reshape(shape)

    return along(along(src, rows, 0), cols, 1).astype(np.float32)


def test_the_bilinear_grid_is_the_two_numpy_passes_to_the_bit():
    from edorient.io.images import _linear_weights

    rng = np.random.default_rng(2)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        src = rng.random((h, w)) * 1000
        rows = np.sort(rng.uniform(-5, h + 5, int(rng.integers(1, 140))))
        cols = rng.uniform(-5, w + 5, int(rng.integers(1, 140)))
        got = kern.bilinear_grid(src, *_linear_weights(rows, h), *_linear_weights(cols, w))
        np.testing.assert_array_equal(got, _two_numpy_passes(src, rows, cols))


def test_flat_windows_are_the_min_max_filters_definition_for_any_window():
    # windows of 1 to 7 px, images smaller than the window, constant and empty images
    rng = np.random.default_rng(3)
    images = [np.zeros((20, 30)), np.full((5, 3), 2.0)]
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        x = rng.integers(0, int(rng.integers(1, 4)), (h, w)).astype(np.float64)
        if rng.random() < 0.5:
            x[: h // 2, : w // 3] = 7.0
        images.append(x)
    for i, x in enumerate(images):
        half = i % 4
        size = 2 * half + 1
        want = (ndimage.maximum_filter(x, size) - ndimage.minimum_filter(x, size)) == 0
        np.testing.assert_array_equal(kern.flat_windows(x, half), want)


def test_rings_are_numpy_s_rounded_radii_even_at_exact_halves():
    # centres on half pixels make radii of exactly k + 0.5 (e.g. hypot(1.5, 2) = 2.5): rounded to even
    for r0, c0 in [(10.5, 12.0), (7.25, 3.5), (31.7, 30.2), (-3.5, 40.5)]:
        r, rings = kern.radii_rings(40, 50, r0, c0)
        np.testing.assert_array_equal(r, kern.radii(40, 50, r0, c0))
        np.testing.assert_array_equal(rings, np.round(r).astype(np.int64))


def test_the_fused_preprocessing_passes_are_the_numpy_steps():
    rng = np.random.default_rng(4)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(8, 90, 2))
        x = rng.poisson(5.0, (h, w)).astype(np.float64)
        r, rings = kern.radii_rings(h, w, rng.uniform(0, h), rng.uniform(0, w))
        profile = rng.normal(size=int(rings.max()) + 1)
        mask = rng.random((h, w)) < 0.9
        inner = float(rng.uniform(1, 6))
        y, far = kern.subtract_rings(x, profile, rings, r, mask, inner)
        want = x - profile[rings]
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(far, want[mask & (r > inner)])
        below, flank = float(rng.normal()), 2 * inner
        assert kern.count_dark(y, below, mask, r, flank) == int(((y < below) & mask & ~(r <= flank)).sum())
        floor = float(rng.uniform(0, 2))
        z = y.copy()
        kern.floor_noise(z, floor, mask)
        want = np.clip(y - floor, 0, None)
        want[~mask] = 0.0
        np.testing.assert_array_equal(z, want)
        beam_r = float(rng.uniform(2, 8))
        vals = kern.clear_beam(z, r, beam_r, mask, inner)
        want[r <= beam_r] = 0.0
        np.testing.assert_array_equal(z, want)
        np.testing.assert_array_equal(vals, want[mask & (r > inner)])


def test_read_only_inputs_are_taken():
    # a compiled kernel's explicit signature matches no read-only array (a broadcast, a
    # memory-mapped file): the entry points copy those (a broadcast mask made predict fail)
    from edorient._filter_kernels import gaussian_filter, grey_opening
    from edorient._utils.order_stats import median, percentile
    from edorient.indexing.preprocess import preprocess
    from edorient.indexing.matching import masked_correlations
    from edorient.io.images import resample_to_model

    rng = np.random.default_rng(5)
    image = rng.poisson(5.0, (64, 64)).astype(np.float64)
    image[30:34, 30:34] = 500.0
    ro = image.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(gaussian_filter(ro, 1.0), gaussian_filter(image, 1.0))
    np.testing.assert_array_equal(grey_opening(ro, 5), grey_opening(image, 5))
    flat = ro.ravel()
    assert median(flat) == np.median(image) and percentile(flat, 99.5) == np.percentile(image, 99.5)
    pre_ro, pre = preprocess(ro, (31.5, 31.5)), preprocess(image, (31.5, 31.5))
    np.testing.assert_array_equal(pre_ro.image, pre.image)
    np.testing.assert_array_equal(resample_to_model(ro, (31.5, 31.5), 0.02, 48, 0.03),
                                  resample_to_model(image, (31.5, 31.5), 0.02, 48, 0.03))
    y = rng.random((1, 100)).astype(np.float32)
    models = rng.random((1, 2, 100)).astype(np.float32)
    valid = np.broadcast_to(rng.random(100) < 0.9, (1, 100))  # read-only
    np.testing.assert_array_equal(masked_correlations(y, models, valid), masked_correlations(y, models, valid.copy()))


def test_the_3x3_median_is_scipy_s_nearest_median_filter():
    from edorient._prep_kernels import median3_nearest

    rng = np.random.default_rng(11)
    for shape in [(64, 80), (1, 7), (5, 1), (2, 2), (1, 1), (33, 3)]:
        for x in (rng.random(shape), rng.poisson(0.7, shape).astype(float), np.round(rng.normal(size=shape), 1)):
            np.testing.assert_array_equal(median3_nearest(x), ndimage.median_filter(x, size=3, mode="nearest"))


@pytest.mark.parametrize("shape, centre, cal_in, size, cal_out", [
    ((512, 512), (256.3, 250.7), 0.005, 150, 0.017),  # a large frame shrunk 3.4x
    ((300, 200), (140.2, 90.1), 0.01, 64, 0.03),  # the grid past the image's edge: zeros there
    ((40, 900), (20.0, 450.0), 0.001, 50, 0.02),  # the kernel longer than the image is tall (reflected twice)
    ((1, 50), (0.0, 25.0), 0.01, 20, 0.03),
])
def test_the_blur_read_at_the_samples_is_the_whole_image_blurred_then_sampled(shape, centre, cal_in, size, cal_out):
    from edorient._filter_kernels import gaussian_kernel_half
    from edorient._prep_kernels import blurred_bilinear_grid
    from edorient.io.images import _linear_weights, model_axes, shrink_sigma

    x = np.random.default_rng(3).random(shape) ** 4
    sigma = shrink_sigma(cal_out / cal_in, 1.0)
    rows, cols = model_axes(centre, cal_in, size, cal_out)
    want = ndimage.map_coordinates(ndimage.gaussian_filter(x, sigma), np.stack(np.meshgrid(rows, cols, indexing="ij")),
                                   order=1, mode="constant", cval=0.0)
    got = blurred_bilinear_grid(x, gaussian_kernel_half(sigma), *_linear_weights(rows, shape[0]),
                                *_linear_weights(cols, shape[1]))
    assert got.dtype == np.float32 and got.shape == (size, size)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * float(want.max()))
    assert (want == 0).sum() == (got == 0).sum()  # (outside the image: exactly 0, as scipy's constant mode)
