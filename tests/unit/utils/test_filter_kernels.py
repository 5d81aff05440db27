"""The compiled Gaussian blur gives scipy.ndimage's bits."""

import numpy as np
import pytest
from scipy import ndimage

from edorient._filter_kernels import gaussian_filter, gaussian_filter_stack32


@pytest.mark.parametrize("shape", [(128, 128), (37, 53), (6, 9), (1, 5), (3, 1)])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_the_blur_is_scipy_s_to_the_bit(shape, sigma):
    # (small shapes: the kernel, radius 12 at sigma 3, reaches past the image and reflects again)
    rng = np.random.default_rng(hash((shape, sigma)) % 2**32)
    for image in (rng.random(shape), rng.poisson(3.0, shape).astype(float) * 1e-3):
        np.testing.assert_array_equal(gaussian_filter(image, sigma), ndimage.gaussian_filter(image, sigma))


def test_a_float32_image_is_blurred_in_float64_as_scipy_blurs_a_float64_copy():
    image = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    out = gaussian_filter(image, 1.0)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ndimage.gaussian_filter(image.astype(np.float64), 1.0))


@pytest.mark.parametrize("shape", [(4, 150, 150), (3, 37, 53), (2, 6, 9), (2, 1, 5), (2, 3, 1)])
@pytest.mark.parametrize("sigma", [0.5, 1.5, 3.0])
def test_a_float32_stack_is_blurred_as_scipy_blurs_each_float32_image(shape, sigma):
    # scipy keeps float32 between its two passes; the stack kernel must too (the polar
    # transform's templates and images depend on those bits)
    x = (np.random.default_rng(2).random(shape) ** 3).astype(np.float32)
    out = gaussian_filter_stack32(x, sigma)
    assert out.dtype == np.float32
    for a, b in zip(out, x):
        np.testing.assert_array_equal(a, ndimage.gaussian_filter(b, sigma))


@pytest.mark.parametrize("bad", [dict(images=np.zeros((4, 5), np.float32), sigma=1.0),
                                 dict(images=np.zeros((2, 8, 8), np.float32), sigma=0.0)])
def test_the_stack_blur_refuses_one_image_or_no_blur(bad):
    with pytest.raises(ValueError):
        gaussian_filter_stack32(**bad)


@pytest.mark.parametrize("bad", [dict(image=np.zeros((3, 4, 5)), sigma=1.0), dict(image=np.zeros((8, 8)), sigma=0.0)])
def test_a_stack_or_no_blur_is_refused(bad):
    with pytest.raises(ValueError, match="2-D image and sigma > 0"):
        gaussian_filter(**bad)


@pytest.mark.parametrize("shape", [(128, 128), (37, 53), (6, 9), (1, 5), (3, 1), (11, 22), (95, 70)])
@pytest.mark.parametrize("size", [1, 3, 7, 11, 31])  # (31: a 2048 px frame's opening; blocks wider than some images)
def test_the_extreme_filters_and_the_opening_are_scipy_s_to_the_bit(shape, size):
    from edorient._filter_kernels import grey_opening, maximum_filter, minimum_filter

    rng = np.random.default_rng(size)
    for image in (rng.random(shape), np.round(rng.random(shape), 1)):  # (ties too)
        np.testing.assert_array_equal(maximum_filter(image, size), ndimage.maximum_filter(image, size=size, mode="nearest"))
        np.testing.assert_array_equal(maximum_filter(image, size), ndimage.maximum_filter(image, size=size))
        np.testing.assert_array_equal(minimum_filter(image, size), ndimage.minimum_filter(image, size=size))
        np.testing.assert_array_equal(grey_opening(image, size), ndimage.grey_opening(image, size=(size, size)))


def test_an_even_window_is_refused():
    from edorient._filter_kernels import maximum_filter

    with pytest.raises(ValueError, match="odd window size"):
        maximum_filter(np.zeros((8, 8)), 4)


def test_group_medians_are_numpy_s_medians_group_by_group():
    from edorient._filter_kernels import group_medians

    rng = np.random.default_rng(3)
    for _ in range(200):
        n, m = int(rng.integers(1, 30)), int(rng.integers(0, 400))
        groups = rng.integers(0, n, m)
        values = np.round(rng.normal(size=m), int(rng.integers(0, 3)))  # (ties too)
        expected = [np.median(values[groups == g]) if (groups == g).any() else np.nan for g in range(n)]
        medians, counts = group_medians(groups, values, n)
        np.testing.assert_array_equal(medians, expected)
        np.testing.assert_array_equal(counts, np.bincount(groups, minlength=n))
