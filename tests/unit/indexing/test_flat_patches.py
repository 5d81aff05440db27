"""Flat patches (paint, a crop's padding) found by label counts: the pixels of the definition
with ndimage's labelled sums, minima and maxima (which sort every labelled pixel)."""

import numpy as np
import pytest
from scipy import ndimage

from edorient.indexing.preprocess import MIN_FLAT_AREA, _flat_patches, _flat_windows


def _reference(image: np.ndarray, min_area: int) -> np.ndarray:
    flat = _flat_windows(image)
    if int(flat.sum()) < min_area:
        return np.zeros_like(flat)
    lab, n = ndimage.label(flat)
    if n == 0:
        return np.zeros_like(flat)
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum(flat, lab, idx)
    values = ndimage.minimum(image, lab, idx)
    lo = float(image.min())
    border = np.zeros_like(flat)
    border[[0, -1], :] = border[:, [0, -1]] = True
    on_border = ndimage.maximum(border, lab, idx).astype(bool)
    padding = (values == lo) & on_border & (float(np.mean(image == lo)) < 0.3)
    keep = (sizes >= min_area) & ((values > np.median(image)) | padding)
    return ndimage.binary_dilation(np.isin(lab, 1 + np.flatnonzero(keep)), iterations=3)


def _cases():
    rng = np.random.default_rng(4)
    pattern = rng.poisson(40, (200, 240)).astype(float)
    painted = pattern.copy()
    painted[20:45, 150:220] = 255.0  # a label painted on
    painted[120:160, 30:60] = 7.0  # a dark flat patch inside: kept as data
    padded = np.pad(pattern, ((0, 30), (25, 0)))  # a crop's zero padding on two sides
    small = pattern.copy()
    small[50:58, 50:58] = 300.0  # 64 flat window centres... too small a patch
    counting = rng.poisson(0.2, (300, 300)).astype(float)  # many flat patches of 0 (no padding: > 30 %)
    counting[100:140, 200:260] = 9.0
    return [pattern, painted, padded, small, counting, np.zeros((64, 64)), np.full((40, 40), 3.0)]


@pytest.mark.parametrize("case", range(7))
def test_flat_patches_are_the_labelled_definition_s(case):
    x = _cases()[case]
    got = _flat_patches(x, MIN_FLAT_AREA)
    np.testing.assert_array_equal(got, _reference(x, MIN_FLAT_AREA))


def test_the_label_and_the_padding_are_found_and_the_dark_patch_is_not():
    painted, padded = _cases()[1], _cases()[2]
    assert _flat_patches(painted, MIN_FLAT_AREA)[25:40, 160:210].all()
    assert not _flat_patches(painted, MIN_FLAT_AREA)[125:155, 35:55].any()
    assert _flat_patches(padded, MIN_FLAT_AREA)[205:, :].all() and _flat_patches(padded, MIN_FLAT_AREA)[:, :20].all()
