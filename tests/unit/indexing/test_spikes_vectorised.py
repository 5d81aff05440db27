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
