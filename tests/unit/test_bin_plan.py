"""A frame much finer than the working frame is binned (predict.bin_plan; session 30)."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.predict import BIN_WORKING_PX, bin_image, bin_plan


def _frame(n: int, sigma: float) -> np.ndarray:
    """``n`` px, a lattice of Gaussian spots of ``sigma`` px (none saturated) on a flat ground."""
    img = np.full((n, n), 5.0)
    rr, cc = np.mgrid[:n, :n]
    step = n // 9
    for r in range(step, n - step // 2, step):
        for c in range(step, n - step // 2, step):
            h = 1000.0 * (1 + ((r // step) * 7 + c // step) % 5) / 5
            win = (slice(r - 12, r + 13), slice(c - 12, c + 13))
            img[win] += h * np.exp(-((rr[win] - r - 0.3) ** 2 + (cc[win] - c + 0.2) ** 2) / (2 * sigma**2))
    return img


def test_a_frame_of_many_pixels_a_working_pixel_is_binned_by_the_working_frame():
    img = _frame(2048, 1.6)
    cal = 2.56 / 2048  # the field's edge at 1.28 1/Å: 1024 px / 73 = 14 px a working pixel
    b, fwhm, why = bin_plan(img, cal, 150)
    assert fwhm == pytest.approx(2.355 * 1.6, abs=0.6)
    assert b == int(1024 / 73 // BIN_WORKING_PX) == 2 and "working frame" in why
    assert bin_plan(img, cal, 300)[0] == 1  # (a working frame twice as fine: 7 px a working pixel)
    assert bin_plan(img, None, 150)[0] == 1  # (no calibration: the spots alone decide)


def test_spots_too_sharp_for_the_working_frame_s_bin_lower_it():
    cal = 2.56 / 1024
    # a 40 px working frame: 512 / 18 = 28 px a working pixel, 4 by the working frame alone
    assert bin_plan(_frame(1024, 1.6), cal, 40)[0] == 4  # (spots 3.8 px: 0.95 px binned)
    b, fwhm, _ = bin_plan(_frame(1024, 0.5), cal, 40)  # spots ~1.2 px: 0.3 px binned 4x
    assert fwhm < 1.8 and b == 1


def test_bins_are_sums_so_a_counting_frame_stays_in_whole_counts():
    counts = np.random.default_rng(0).poisson(0.4, (64, 64)).astype(np.float32)
    binned, none = bin_image(counts, None, 2)
    assert none is None and np.array_equal(binned, binned.round()) and binned.sum() == counts.sum()


def test_spot_widths_measured_around_spots_found_on_a_binned_copy_are_the_whole_search_s():
    from edorient.indexing.spots import find_spots, spot_fwhm

    img = _frame(512, 1.6)
    whole = spot_fwhm(img)
    binned, _ = bin_image(img, None, 4)
    sp = find_spots(binned)
    near = (sp.positions[np.argsort(-sp.intensity)] + 0.5) * 4 - 0.5  # (up to 2 px off the peaks)
    assert spot_fwhm(img, near=near, reach=4) == pytest.approx(whole, rel=0.02)
    assert spot_fwhm(img, near=near[:2], reach=4) is None  # (fewer than 3 spots: no width)


def test_the_binned_copy_given_back_is_the_binning_of_the_frame():
    # predict takes bin_plan's binned copy instead of binning the frame again
    from edorient.predict import bin_image

    img = _frame(1024, 1.6)
    keep: dict = {}
    b, _, _ = bin_plan(img, 2.56 / 1024, 40, keep=keep)
    assert b in keep
    got, none = keep[b]
    want, want_none = bin_image(img, None, b)
    np.testing.assert_array_equal(got, want)
    assert none is None and want_none is None


def test_the_halo_around_a_beam_stop_is_not_a_broad_spot():
    # with a stop over the beam (and an arm to one side), the halo's brightest pixels ring the
    # stop, and over the stop's dark a stretch of that ring lay above half its peak: measured as
    # spots 21-40 px wide, simulated 256 px patterns were binned 4x and one answered 28.9° wrong
    # (bench_detector_size.py --beam-stop --find-centre, its recipe here; session 31)
    from edorient.indexing.spots import spot_fwhm
    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    n, field = 256, 2.56
    sim = Simulator(anatase(), SimulationConfig(image_size=n, calibration=field / n, spot_sigma_px=1.6))
    rr, cc = np.indices((n, n), dtype=float)
    halo = 0.01 * np.exp(-np.hypot(rr - (n - 1) / 2, cc - (n - 1) / 2) * field / n / 0.3) + 0.0005
    rng = np.random.default_rng(0)
    img = np.minimum(rng.poisson((sim.linear_image(random_rotations(5, rng=2929)[2]) + halo) * 3e4), 16000)
    img = img.astype(float)
    stop = (np.hypot(rr - n / 2, cc - n / 2) < 8) | ((np.abs(rr - n / 2) < 3) & (cc > n / 2))
    img[stop] = rng.poisson(0.05, int(stop.sum()))
    assert spot_fwhm(img) == pytest.approx(2.355 * 1.6, abs=0.6)  # (before: 34 px)
    assert bin_plan(img, field / n, 150)[0] == 1
