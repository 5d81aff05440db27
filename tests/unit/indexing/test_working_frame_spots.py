"""A large pattern of sharp spots shrunk onto the search's working frame (issue 11).

The working frame (150 px by default) holds the pattern's whole field; a detector of 512 px or
more with spots a few pixels wide is shrunk 3x or more onto it. Low-passed by half an output
pixel only, a spot came out narrower than a working pixel (sigma 0.68 px), so its sampled peak
rose and fell by 20 % with where it fell between samples, and the whole-image fit read the
intensities -- the beam's tilt -- wrong: of eight simulated anatase patterns at 512 px (1.6 px
spots over a 2.56 1/Å field) four were indexed 5-52° off. The spots are now brought to the
templates' own width (:func:`edorient.io.images.shrink_sigma`), all eight within 0.8°
(docs/results.md, session 29).
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient import conventions as cv
from edorient.io.images import resample_to_model, shrink_sigma


def _shrunk_spots(spot_sigma_px):
    """(peak, second-moment sigma) of a 1.6 px Gaussian spot at 20 sub-pixel positions of a
    512 px image, each shrunk 3.5x onto a 150 px frame."""
    n, s_in, cal = 512, 1.6, 0.005
    rng = np.random.default_rng(0)
    rr, cc = np.indices((n, n))
    peaks, widths = [], []
    for _ in range(20):
        r0, c0 = 200 + rng.random(), 300 + rng.random()
        img = np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * s_in**2))
        out = resample_to_model(img, (256.0, 256.0), cal, 150, 3.5 * cal, spot_sigma_px=spot_sigma_px)
        i, j = np.unravel_index(np.argmax(out), out.shape)
        w = out[i - 4 : i + 5, j - 4 : j + 5]
        y, x = np.indices(w.shape)
        m = w.sum()
        my, mx = (w * y).sum() / m, (w * x).sum() / m
        peaks.append(out.max())
        widths.append(np.sqrt((w * ((y - my) ** 2 + (x - mx) ** 2)).sum() / m / 2))
    return np.array(peaks), np.array(widths)


def test_shrunk_spots_take_the_templates_width_wherever_they_fall():
    peaks, widths = _shrunk_spots(1.6)
    assert np.all(np.abs(widths - cv.DEFAULT_SPOT_SIGMA_PX) < 0.05)
    assert np.ptp(peaks) / peaks.mean() < 0.1
    # (half an output pixel's low-pass alone: 0.68 px wide, the peak 19 % up and down)
    peaks, widths = _shrunk_spots(None)
    assert np.all(widths < 0.8) and np.ptp(peaks) / peaks.mean() > 0.15


def test_shrink_sigma_never_blurs_less_than_before_nor_spots_already_broad():
    assert shrink_sigma(1.2) == 0.0 and shrink_sigma(1.2, 0.5) == 0.0  # (shrunk less than 1.5x: none)
    assert shrink_sigma(2.0, 0.5) == pytest.approx(np.sqrt(2.4**2 - 0.25))
    assert shrink_sigma(3.0, 10.0) == pytest.approx(1.5)  # broad spots: the anti-aliasing half pixel only
    assert shrink_sigma(0.8, 0.3) == 0.0  # enlarging: no low-pass


def test_a_large_pattern_of_sharp_spots_is_indexed():
    from edorient.indexing.pipeline import IndexConfig, index_pattern
    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    x, n = anatase(), 512
    cal = 2.56 / n
    R = random_rotations(5, rng=2929)[0]  # 52° off, `no match`, before
    sim = Simulator(x, SimulationConfig(image_size=n, calibration=cal, spot_sigma_px=1.6))
    rr, cc = np.indices((n, n), dtype=float)
    halo = 0.01 * np.exp(-np.hypot(rr - (n - 1) / 2, cc - (n - 1) / 2) * cal / 0.3) + 0.0005
    img = np.random.default_rng(n).poisson((sim.linear_image(R) + halo * (256 / n) ** 2) * 3e4)
    res = index_pattern(np.minimum(img, 16000).astype(float), IndexConfig(cal, (n / 2, n / 2)), x, cache={})
    g = res.grains[0]
    assert float(x.laue.angle(R[2][None], g.rotation[2][None])[0]) < 1.0
    assert g.verdict != "no match", g.reasons
    assert res.pre.steps["spot_fwhm_px"] == pytest.approx(2.355 * 1.6, rel=0.25)  # measured, and reported
