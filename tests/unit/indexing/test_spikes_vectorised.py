"""The hot-pixel spikes of a pattern (:func:`edorient.indexing.preprocess._spikes`), found for
every cluster at once: the same pixels as the cluster-by-cluster definition.

A 2048 px frame of a counting detector (mostly 0-1 counts) has a noise of 0 by its median
absolute deviation, so every counted pixel is a candidate: 180,000 clusters, each grown and
checked in Python took 4.2 s of a 13 s call; all at once, 1.6 s (docs/benchmarks.md, session 29).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edorient.indexing.preprocess import HOT_MAX_CLUSTER, HOT_RATIO, HOT_SIGMAS, _spikes


def _reference(image: np.ndarray) -> np.ndarray:
    """The definition, cluster by cluster: candidates 4x their 5 x 5 median and 8 robust sigmas
    above it; clusters of at most HOT_MAX_CLUSTER touching pixels whose faintest pixel is
    HOT_RATIO times the brightest pixel around the cluster."""
    x = np.asarray(image, dtype=np.float64)
    local = ndimage.median_filter(x, size=5, mode="nearest")
    diff = x - ndimage.median_filter(x, size=3, mode="nearest")
    noise = 1.4826 * float(np.median(np.abs(diff - np.median(diff))))
    cand = (x > HOT_RATIO * np.maximum(local, 0.0)) & (x - local > HOT_SIGMAS * noise) & (x > 0)
    out = np.zeros_like(cand)
    lab, _ = ndimage.label(cand, structure=np.ones((3, 3)))
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mine = lab[grown] == k
        if mine.sum() > HOT_MAX_CLUSTER:
            continue
        ring = ndimage.binary_dilation(mine, structure=np.ones((3, 3))) & ~mine
        m = x[grown]
        if not ring.any() or m[mine].min() > HOT_RATIO * max(float(m[ring].max()), 0.0):
            out[grown] |= mine
    return out


def _planted() -> np.ndarray:
    x = np.random.default_rng(1).poisson(20, (128, 128)).astype(float)
    x[10, 10] = 5000  # a hot pixel
    x[0, 0] = 4000  # one in a corner (its ring cut by the border)
    x[127, 5:7] = 3000  # a pair on the edge
    x[60:62, 60:62] = 2000  # a 2 x 2 cluster
    x[90:93, 90:93] = 2500  # 9 pixels: a spot, not a spike
    return x


@pytest.mark.parametrize("image", [
    np.random.default_rng(0).poisson(0.3, (300, 300)).astype(float),  # counting: noise 0, every count a candidate
    np.random.default_rng(0).poisson(50, (200, 200)).astype(float),
    _planted(),
    np.zeros((40, 40)),
    np.pad(np.array([[100.0]]), 1),  # one pixel with its whole ring
    np.full((2, 2), 7.0),
])
def test_spikes_are_the_definitions_pixels(image):
    want = _reference(image)
    np.testing.assert_array_equal(_spikes(image), want)


def test_the_planted_spikes_are_found_and_the_spot_is_not():
    found = _spikes(_planted())
    assert found[10, 10] and found[0, 0] and found[127, 5:7].all() and found[60:62, 60:62].all()
    assert not found[90:93, 90:93].any()


def _whole_image_bright_spikes(x: np.ndarray) -> np.ndarray:
    """bright_spikes' definition on the whole image: the spikes at least half as bright as the
    brightest pixel that is not one."""
    sp = _reference(x)
    if not sp.any() or sp.all():
        return np.zeros_like(sp)
    return sp & (x >= 0.5 * float(x[~sp].max()))


def _bright_cases():
    rng = np.random.default_rng(7)
    beam = np.exp(-np.hypot(*np.mgrid[-150:150, -150:150]) / 3.0)
    counting = rng.poisson(3e3 * beam + 0.3).astype(float)  # noise 0 by the MAD
    spiky = rng.poisson(3e3 * beam + 20.0).astype(float)
    spiky[[10, 280, 150], [20, 5, 140]] = 2e4  # brighter than the beam's peak, one beside it (on a
    # counting frame of mostly 0-1 counts a lone bright pixel touches counted ones: no spike)
    spiky[0, 0] = 1.5e4  # a corner
    spiky[200:202, 33] = 1.2e4  # a pair
    spiky[60:63, 60:63] = 1.9e4  # 9 pixels: no spike
    faint = spiky.copy()
    faint[100, 100] = 900  # a spike, but under half the brightest non-spike
    flat_bright = rng.poisson(50, (300, 300)).astype(float)  # half the maximum: most pixels (the whole image)
    flat_bright[5, 5] = 1e6
    return [counting, spiky, faint, flat_bright, np.zeros((300, 300)), np.full((300, 300), 7.0),
            np.pad(np.full((2, 2), 5e3), 149)]


@pytest.mark.parametrize("case", range(7))
def test_bright_spikes_from_the_brightest_down_are_the_whole_image_s(case):
    from edorient.indexing.preprocess import _SCAN_PIXELS, bright_spikes

    x = _bright_cases()[case]
    assert x.size > _SCAN_PIXELS  # (the scan, not the whole image, answers)
    np.testing.assert_array_equal(bright_spikes(x), _whole_image_bright_spikes(x))


def test_the_scan_finds_the_spikes_brighter_than_the_beam():
    from edorient.indexing.preprocess import _bright_spikes_scan

    found = _bright_spikes_scan(_bright_cases()[1])
    assert found is not None  # (decided from the brightest pixels, not handed to the whole image)
    assert found[10, 20] and found[280, 5] and found[150, 140] and found[0, 0] and found[200:202, 33].all()
    assert not found[60:63, 60:63].any()
