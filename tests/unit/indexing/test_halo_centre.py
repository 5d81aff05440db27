"""The centre from the diffuse background's point symmetry, where the spots' Friedel pairs do not
decide (a beam stop over the direct beam, a pattern off its zone: few spots in pairs; session 30)."""

from __future__ import annotations

import numpy as np

from edorient.indexing.preprocess import validity_mask
from edorient.indexing.spots import halo_centre, point_symmetry_at
from edorient.predict import PredictConfig, _find_centre


def _stopped(n: int = 256, centre=(131.4, 120.7), seed: int = 0) -> np.ndarray:
    """A halo around ``centre``, six spots none of whose Friedel partners is there (one brighter
    than anything else), Poisson counts, a dark beam stop over the direct beam and to the right."""
    rng = np.random.default_rng(seed)
    rr, cc = np.indices((n, n), dtype=float)
    r = np.hypot(rr - centre[0], cc - centre[1])
    img = 300 * np.exp(-r / 20.0) + 2.0
    for dr, dc, a in [(40, 25, 3000.0), (-33, 48, 800.0), (55, -20, 600.0), (-60, -45, 500.0), (20, -70, 400.0),
                      (-15, 80, 300.0)]:
        img += a * np.exp(-((rr - centre[0] - dr) ** 2 + (cc - centre[1] - dc) ** 2) / (2 * 1.6**2))
    img = rng.poisson(img).astype(float)
    stop = (r < 9) | ((np.abs(rr - centre[0]) < 4) & (cc > centre[1]))
    img[stop] = rng.poisson(0.05, int(stop.sum()))
    return img


def test_the_halo_centre_is_the_beam_behind_the_stop():
    img = _stopped()
    r, c, sym = halo_centre(img)
    assert abs(r - 131.4) < 1.0 and abs(c - 120.7) < 1.0 and sym > 0.8
    assert point_symmetry_at(img, None, (171.4, 145.7)) < sym - 0.3  # (about the brightest spot: far less)


def test_predict_takes_the_halo_centre_where_friedel_pairs_fail():
    img = _stopped()
    (r, c), info = _find_centre(img, PredictConfig(calibration=0.01), validity_mask(img))
    assert info["method"] == "halo symmetry" and not info["ok"]
    assert abs(r - 131.4) < 1.5 and abs(c - 120.7) < 1.5


def test_a_visible_beam_is_left_to_the_friedel_centre():
    img = _stopped()
    rr, cc = np.indices(img.shape, dtype=float)
    img += np.random.default_rng(1).poisson(2e4 * np.exp(-((rr - 131.4) ** 2 + (cc - 120.7) ** 2) / (2 * 2.0**2)))
    (r, c), info = _find_centre(img, PredictConfig(calibration=0.01), validity_mask(img))
    assert info["method"] != "halo symmetry" and abs(r - 131.4) < 1.0 and abs(c - 120.7) < 1.0
