"""The fast order statistics give numpy's median and percentile to the bit."""

import numpy as np
import pytest

from edorient._filter_kernels import order_pair
from edorient._utils.order_stats import median, percentile, select


def _arrays(rng):
    """Arrays of many sizes and kinds: continuous, mostly zero (a thresholded pattern), few
    distinct values (counts), float32, and values spanning 30 orders of magnitude of both signs."""
    for trial in range(1500):
        n = int(rng.integers(1, 60)) if trial % 3 == 0 else int(rng.integers(1, 20000))
        kind = trial % 6
        if kind == 0:
            yield rng.normal(size=n)
        elif kind == 1:
            yield np.clip(rng.normal(size=n) - 1.5, 0, None)
        elif kind == 2:
            yield rng.integers(0, 5, size=n).astype(float)
        elif kind == 3:
            yield rng.normal(size=n).astype(np.float32)
        elif kind == 4:
            yield np.clip(rng.normal(size=n) - 1.5, 0, None).astype(np.float32)
        else:
            yield np.exp(rng.normal(size=n) * 30) * rng.choice([-1.0, 1.0], size=n)


def test_the_median_is_numpy_s_to_the_bit_and_type():
    for v in _arrays(np.random.default_rng(0)):
        got, want = median(v), np.median(v)
        assert got == want and type(got) is type(want), (v.size, v.dtype)


@pytest.mark.parametrize("q", [0.0, 1.0, 50.0, 99.5, 99.9, 100.0, 37.25])
def test_the_percentile_is_numpy_s_linear_percentile_to_the_bit_and_type(q):
    for v in _arrays(np.random.default_rng(int(q * 100))):
        got, want = percentile(v, q), np.percentile(v, q)
        assert got == want and type(got) is type(want), (v.size, v.dtype, q)


def test_order_pair_is_the_sorted_values_at_k_and_k_plus_1():
    rng = np.random.default_rng(5)
    for v in _arrays(rng):
        v = v.astype(np.float64)
        s = np.sort(v)
        for k in {0, v.size // 2, v.size - 1, int(rng.integers(0, v.size))}:
            assert order_pair(v, k) == (s[k], s[min(k + 1, v.size - 1)])
    values = np.full(100, 3.0)  # all equal
    assert order_pair(values, 50) == (3.0, 3.0)


def test_the_input_is_left_as_it_was():
    v = np.random.default_rng(1).normal(size=1000)
    keep = v.copy()
    median(v), percentile(v, 99.5), order_pair(v, 10)
    np.testing.assert_array_equal(v, keep)


def test_select_is_numpy_s_partition_at_k():
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 10, 1000):
        for v in (rng.random(n), np.round(rng.random(n), 1), rng.random(n).astype(np.float32)):
            for k in {0, n // 2, n - 1}:
                got = select(v, k)
                assert got == np.partition(v, k)[k] and type(got) is type(np.partition(v, k)[k])


def test_order_pair_of_a_large_frame_bracketed_from_a_sample_or_binned():
    # more than _BRACKET_ABOVE values: bracketed from a sample where it can be (a top-hat's
    # skewed values, uniform, sorted), binned where the bracket fails (mostly ties: a counting
    # frame's 0s and 1s; all equal); the same ranks either way
    from edorient._filter_kernels import _BRACKET_ABOVE, _pair_bracketed

    rng = np.random.default_rng(8)
    n = _BRACKET_ABOVE + 1000
    skewed = rng.exponential(size=n) ** 6
    cases = [skewed, rng.random(n), np.sort(rng.random(n)), rng.poisson(0.3, n).astype(float), np.zeros(n)]
    for v in cases:
        s = np.sort(v)
        for k in (0, 1, n // 3, n // 2, n - 2, n - 1):
            assert order_pair(v, k) == (s[k], s[min(k + 1, n - 1)])
    assert _pair_bracketed(skewed, n // 2)[0]  # (the sample's bracket held the rank)
    assert not _pair_bracketed(cases[3], n // 2)[0]  # (mostly ties: too many in the bracket)
