"""The calibration-scale scan of a large frame of sharp spots (issue 11; session 30).

Shrunk onto the working frame, a file is low-passed in linear intensity and display-transformed
after (``search.working_image``); the scan, which reads the file's pixels directly, transformed
first: the counting noise that passes the floor of a 1024 px frame's brighter halo (~1.4 % of its
pixels), amplified by the logarithm to half a spot's level, outweighed the sharp spots, and the
scan's scores were flat (0.31-0.33 at every scale), so the search started at a wrong scale and
three of four noise draws of this orientation came out 23-37° off (``no match``).
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient.indexing.preprocess import preprocess
from edorient.indexing.search import PatternSearch, SearchConfig
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase

N = 1024
FIELD = 2.56  # 1/Å across the detector (benchmarks/bench_detector_size.py's recipe)


def _frame(seed: int) -> np.ndarray:
    """A 1024 px counting frame: 1.6 px spots, a diffuse halo, Poisson counts, clipped."""
    R = random_rotations(5, rng=2929)[4]  # (the benchmark's eighth orientation)
    sim = Simulator(anatase(), SimulationConfig(image_size=N, calibration=FIELD / N, spot_sigma_px=1.6))
    c = (N - 1) / 2
    rr, cc = np.indices((N, N), dtype=float)
    halo = 0.01 * np.exp(-np.hypot(rr - c, cc - c) * FIELD / N / 0.3) + 0.0005
    counts = np.random.default_rng(seed).poisson((sim.linear_image(R) + halo * (256 / N) ** 2) * 3e4)
    return np.minimum(counts, 16000).astype(np.float64)


@pytest.mark.parametrize("seed", [100, 103])
def test_the_scale_scan_peaks_at_the_true_scale_on_a_large_frame(seed):
    pre = preprocess(_frame(seed), (N / 2, N / 2))
    search = PatternSearch(anatase(), FIELD / N, pre.data_radius_px, SearchConfig())
    assert search.working_calibration / search.calibration > 5  # (shrunk 7x: the low-pass applies)
    grid, _ = search._scale_scores(pre)
    k = int(np.argmax(grid))
    assert abs(search.scales[k] - 1.0) <= search.config.scale_step + 1e-9
    assert grid[k] - np.median(grid) > 0.05  # a peak, not a flat curve's largest value
