"""A counting detector's frame of mostly 0-1 counts (issue 11): the noise floor is not 0.

Half the pixels at the median make the median absolute deviation 0, and a floor of 0 kept every
counted pixel: on 2048 px frames the working image filled with the halo's single counts and 2 of
8 simulated patterns were missed (docs/results.md, session 29).
"""

from __future__ import annotations

import numpy as np

from edorient.indexing.preprocess import _counts, preprocess


def _frame(background: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    rng = np.random.default_rng(3)
    n = 256
    rr, cc = np.indices((n, n), dtype=float)
    spots = [(60, 70), (200, 90), (100, 210), (180, 180), (40, 160)]
    lam = np.full((n, n), background)
    lam += 3000 * np.exp(-((rr - 128) ** 2 + (cc - 128) ** 2) / (2 * 2.0**2))  # the direct beam
    for r, c in spots:
        lam += 40 * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 1.6**2))
    return rng.poisson(lam).astype(float), spots


def test_single_counts_are_floored_and_spots_kept():
    x, spots = _frame(0.2)
    pre = preprocess(x, (128.0, 128.0))
    assert pre.steps["noise_floor"] > 0
    away = np.ones(x.shape, bool)
    for r, c in spots + [(128, 128)]:
        away[r - 6 : r + 7, c - 6 : c + 7] = False
    assert np.count_nonzero(pre.image[away]) < 0.001 * away.sum()  # (a floor of 0: ~18 %, every count)
    assert all(pre.image[r, c] > 0 for r, c in spots)


def test_only_whole_numbers_are_taken_for_counts():
    # the fallback is for a detector's counts; a simulation's floats with a deviation of 0 keep
    # their floor of 0 (a noise-free pattern's weak spots are signal)
    assert _counts(np.array([[0.0, 1.0], [2.0, 7.0]]))
    assert not _counts(np.array([[0.0, 0.5], [2.0, 7.0]]))
