"""The probe's diffraction discs: measured on the direct beam, deconvolved back to spots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edorient.indexing.discs import deconvolve_discs, disc_kernel, fit_disc, is_disc, mean_beam


def _beams(radius, sigma, n=32, seed=0, dose=2e4):
    """n noisy direct beams (81 x 81) of a disc of ``radius`` blurred by ``sigma``, each at a
    random sub-pixel centre (drawn by bilinear interpolation, as a descan shift is)."""
    rng = np.random.default_rng(seed)
    pats, centres = [], []
    k = disc_kernel(radius, sigma)
    for _ in range(n):
        c = (40 + rng.uniform(-0.5, 0.5), 40 + rng.uniform(-0.5, 0.5))
        x = np.zeros((81, 81))
        x[int(c[0]), int(c[1])] = 1.0
        x = ndimage.convolve(ndimage.shift(x, (c[0] - int(c[0]), c[1] - int(c[1])), order=1), k, mode="constant")
        pats.append(rng.poisson(x * dose + 20).astype(float))
        centres.append(c)
    return pats, centres


@pytest.mark.parametrize("radius,sigma", [(3.0, 1.0), (4.0, 2.0), (6.0, 1.5)])
def test_a_discs_radius_is_measured_on_the_direct_beam(radius, sigma):
    fit = fit_disc(mean_beam(*_beams(radius, sigma))[0])
    assert is_disc(fit)
    assert abs(fit["radius_px"] - radius) <= 0.25
    assert abs(fit["sigma_px"] - sigma) <= 0.3


@pytest.mark.parametrize("sigma", [1.0, 1.6, 2.2, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_spots_of_any_width_are_not_taken_for_discs(sigma, seed):
    # a Gaussian is a disc of radius 0: a fitted disc stays narrower than its blur, or than 1.5 px
    assert not is_disc(fit_disc(mean_beam(*_beams(0.0, sigma, seed=seed))[0]))


def test_a_beam_too_close_to_the_edge_is_left_out_and_none_left_gives_none():
    pats, centres = _beams(3.0, 1.0, n=2)
    assert mean_beam(pats, [(3.0, 40.0), (40.0, 78.0)]) == (None, 0)
    beam, used = mean_beam(pats, [(3.0, 40.0), centres[1]])
    assert beam is not None and used == 1


def test_a_saturated_direct_beam_is_not_taken_for_a_disc():
    # a Gaussian beam clipped by the detector has a flat top: left out, not measured as a disc
    pats, centres = _beams(0.0, 1.5, n=8)
    clipped = [np.minimum(p, 0.3 * p.max()) for p in pats]
    assert mean_beam(clipped, centres) == (None, 0)
    assert mean_beam(clipped[:4] + pats[4:], centres)[1] == 4


def _second_moment(img, at):
    rr, cc = np.indices(img.shape)
    w = img * (np.hypot(rr - at[0], cc - at[1]) <= 8)
    return float(np.sqrt((w * ((rr - at[0]) ** 2 + (cc - at[1]) ** 2)).sum() / w.sum()))


def test_deconvolution_turns_noisy_discs_back_into_compact_spots_in_place():
    # two Gaussian spots (sigma 1.2) drawn as 4 px discs, with Poisson noise: after the
    # deconvolution each is as compact as a spot again (RMS radius near the 1.7 px of the
    # spot, not the disc's 3.2), at the same place, and the counts are kept
    rng = np.random.default_rng(1)
    spots = np.zeros((96, 96))
    spots[30, 40] = 1.0
    spots[60, 55] = 0.5
    spots = ndimage.gaussian_filter(spots, 1.2)
    discs = ndimage.convolve(spots, disc_kernel(4.0), mode="constant")
    counts = rng.poisson(discs * 4e4 + 2).astype(float)
    out = deconvolve_discs(counts, 4.0)
    for at in ((30, 40), (60, 55)):
        before, after, truth = _second_moment(counts - 2, at), _second_moment(out - 2, at), _second_moment(spots, at)
        assert after < 0.7 * before and after < truth + 0.8
        win = out[at[0] - 4 : at[0] + 5, at[1] - 4 : at[1] + 5]
        peak = np.unravel_index(np.argmax(win), win.shape)
        assert abs(peak[0] - 4) <= 1 and abs(peak[1] - 4) <= 1
    assert abs(out.sum() / counts.sum() - 1) < 0.03


def test_ignored_pixels_neither_count_as_dark_nor_get_a_value():
    # a dead stripe and a NaN through a disc: with them given as not valid the disc is restored
    # as it is without the stripe (away from it), and they come out 0
    rng = np.random.default_rng(2)
    spots = np.zeros((64, 64))
    spots[32, 30] = 1.0
    counts = rng.poisson(ndimage.convolve(ndimage.gaussian_filter(spots, 1.2), disc_kernel(3.0), mode="constant") * 3e4
                         + 2).astype(float)
    clean = deconvolve_discs(counts, 3.0)
    broken = counts.copy()
    broken[33, :] = 0.0
    broken[20, 20] = np.nan
    valid = np.ones_like(counts, dtype=bool)
    valid[33, :] = False
    valid[20, 20] = False
    out = deconvolve_discs(broken, 3.0, valid=valid)
    assert np.isfinite(out).all() and (out[~valid] == 0).all()
    assert abs(out[32, 30] - clean[32, 30]) < 0.25 * clean[32, 30]
    blind = deconvolve_discs(np.nan_to_num(broken), 3.0)  # the stripe taken as dark data instead
    assert abs(blind[32, 30] - clean[32, 30]) > abs(out[32, 30] - clean[32, 30])


def test_a_batch_is_deconvolved_as_each_of_its_images():
    rng = np.random.default_rng(3)
    x = rng.poisson(5.0, size=(3, 40, 48)).astype(float)
    batch = deconvolve_discs(x, 2.5)
    np.testing.assert_allclose(batch[1], deconvolve_discs(x[1], 2.5), rtol=1e-5, atol=1e-5)
