"""The ground under a much-shrunk working frame (issue 11; session 31).

A file's noise floor is set by the whole frame's noise; under a halo of counts the noise near the
beam is higher and some of it passes. Where a working pixel averages tens of file pixels (a 1024
px counting frame shrunk 7x) what passed adds up into a smooth bright ground around the beam,
under spots diluted as much: two grains were both found in 4 of 8 such frames, 8 of 8 at 512 px
(docs/results.md, session 31). The working frame now loses the median of each of its rings.
"""

from __future__ import annotations

import numpy as np

from edorient import conventions as cv
from edorient.indexing.preprocess import preprocess
from edorient.indexing.search import GROUND_SHRINK, spot_sigma, working_image
from edorient.io.images import resample_to_model
from edorient.render import display_transform

N = 1024
SIZE = 150


def _frame() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Poisson counts: a halo of ~20 counts near the beam and ~1 far out, a beam, five spots."""
    rng = np.random.default_rng(8)
    rr, cc = np.indices((N, N), dtype=float)
    r = np.hypot(rr - N / 2, cc - N / 2)
    lam = 19.0 * np.exp(-r / 120.0) + 1.0 + 3e4 * np.exp(-(r**2) / (2 * 1.6**2))
    spots = [(400, 430), (620, 600), (512, 700), (330, 560), (700, 380)]
    for a, b in spots:
        lam += 600.0 * np.exp(-((rr - a) ** 2 + (cc - b) ** 2) / (2 * 1.6**2))
    return rng.poisson(lam).astype(float), spots


def _unground(pre, cal_in: float, shrink: float) -> np.ndarray:
    """The working image as it was drawn before: resampled (spots low-passed), display-transformed."""
    x = resample_to_model(pre.image, pre.centre, cal_in, SIZE, cal_in * shrink, spot_sigma_px=spot_sigma(pre))
    return display_transform(np.clip(x, 0, None).astype(np.float32))


def _rings(size: int) -> np.ndarray:
    c = cv.centre_pixel(size)
    return np.round(np.hypot(*(np.indices((size, size)) - np.array(c)[:, None, None]))).astype(int)


def test_a_much_shrunk_frame_loses_its_ground_and_keeps_its_spots():
    x, spots = _frame()
    pre = preprocess(x, (N / 2, N / 2))
    cal_in, shrink = 0.0025, 7.0
    assert shrink >= GROUND_SHRINK
    before = _unground(pre, cal_in, shrink)
    after = working_image(pre, cal_in, SIZE, cal_in * shrink)
    rings = _rings(SIZE)
    near = (rings >= 6) & (rings <= 25)  # (out to ~175 file px, where the halo's noise is high)
    # the ground: every near working pixel lit before (a third of the display's range), at its
    # rings' median 0 after, only the noise above the median left
    assert np.mean(before[near] > 0) > 0.95 and np.median(before[near]) > 0.2
    assert np.median(after[near]) == 0.0
    assert np.mean(after[near]) < 0.4 * np.mean(before[near])
    c = np.array(cv.centre_pixel(SIZE))
    for a, b in spots:  # each spot's working pixel stays bright
        i, j = np.round(c + (np.array([a, b]) - N / 2) / shrink).astype(int)
        assert after[i - 1 : i + 2, j - 1 : j + 2].max() > 0.5 * before[i - 1 : i + 2, j - 1 : j + 2].max()


def test_a_frame_shrunk_less_is_drawn_as_before():
    x, _ = _frame()
    pre = preprocess(x, (N / 2, N / 2))
    cal_in, shrink = 0.0025, GROUND_SHRINK - 1.5
    np.testing.assert_array_equal(working_image(pre, cal_in, SIZE, cal_in * shrink), _unground(pre, cal_in, shrink))
