"""The simulated polycrystal scan: inclined boundaries give two grains in varying ratios."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError

from edorient.mapping.simulate import ScanSimConfig, grain_shares, simulate_scan


def test_shares():
    cfg = ScanSimConfig(probes=(24, 24), n_grains=5, seed=2)
    ids, shares, crossed = grain_shares(cfg)
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    two = shares[..., 1] > 0
    assert 0.05 < two.mean() < 0.6  # boundaries: a band of two-grain probes, not the whole map
    assert len(np.unique(np.round(shares[two, 1], 2))) > 5  # varying ratio through the thickness
    assert (ids[~two, 1] == -1).all() and (crossed >= 1 + two).all()
    ids2, _, _ = grain_shares(cfg)
    np.testing.assert_array_equal(ids, ids2)  # seeded


def test_simulate_scan_truth():
    cfg = ScanSimConfig(probes=(3, 5), n_grains=2, detector_px=64, calibration=0.04, seed=1)
    counts, truth = simulate_scan(cfg)
    assert counts.shape == (3, 5, 64, 64) and counts.dtype == np.uint16
    assert truth["rotations"].shape == (3, 5, 2, 3, 3)
    # the direct beam carries the dose and sits where the truth says
    r, c = np.unravel_index(counts[1, 2].argmax(), (64, 64))
    assert abs(r - truth["centre_px"][1, 2, 0]) <= 1 and abs(c - truth["centre_px"][1, 2, 1]) <= 1


def test_discs_of_a_convergent_probe_keep_each_spots_counts():
    # discs of 4 px: the direct beam's counts (a Gaussian of sigma 1.2 px, ~9 px wide) spread over
    # the disc's ~50 px (its peak ~5x lower), their sum kept, its half-maximum radius the disc's
    base = dict(probes=(1, 1), n_grains=1, detector_px=64, calibration=0.04, seed=2, dose=20000.0, background=0.0,
                descan_px=0.0)
    sharp, _ = simulate_scan(ScanSimConfig(**base))
    disc, _ = simulate_scan(ScanSimConfig(**base, disc_px=4.0))
    a, b = sharp[0, 0].astype(float), disc[0, 0].astype(float)
    near = np.hypot(*(np.indices(a.shape) - 32)) <= 7
    assert b[near].sum() == pytest.approx(a[near].sum(), rel=0.02)
    assert b.max() < a.max() / 3
    assert 3.0 <= np.sqrt((b[near] > 0.5 * b.max()).sum() / np.pi) <= 5.0


def test_a_wedge_scan_has_each_columns_thickness():
    # a wedge 20 -> 80 Å over 3 columns: its first probe is the uniform 20 Å scan's (the same noise:
    # the probes after it draw other counts, so the streams part), the reversed wedge's first probe
    # the 80 Å scan's; the middle column is neither; the truth holds every probe's thickness
    from edorient.mapping.simulate import ScanSimConfig, simulate_scan

    base = dict(probes=(2, 3), n_grains=2, detector_px=64, dose=2000.0, seed=4)
    wedge, truth = simulate_scan(ScanSimConfig(**base, wedge=(20.0, 80.0)))
    back, _ = simulate_scan(ScanSimConfig(**base, wedge=(80.0, 20.0)))
    thin, _ = simulate_scan(ScanSimConfig(**base, thickness=20.0))
    thick, _ = simulate_scan(ScanSimConfig(**base, thickness=80.0))
    np.testing.assert_array_equal(wedge[0, 0], thin[0, 0])
    np.testing.assert_array_equal(back[0, 0], thick[0, 0])
    assert not np.array_equal(wedge[0, 0], thick[0, 0])
    np.testing.assert_allclose(truth["thickness"], [[20, 50, 80], [20, 50, 80]])
    with pytest.raises(EdorientError, match="wedge"):
        ScanSimConfig(wedge=(0.0, 50.0))
