"""The template search's working frame: the file's whole field at the given calibration, up to
``SearchConfig.max_g``; which scale's one-grain answer the pair is fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.indexing import pipeline as pl
from edorient.indexing.search import PatternSearch, SearchConfig
from edorient.structures import anatase

CAL = 0.0125


@pytest.fixture(scope="module")
def xtal():
    return anatase()


def _search(xtal, radius_px, **kw):
    return PatternSearch(xtal, CAL, radius_px, SearchConfig(n_directions=40, cache=False, **kw))


def test_the_frame_holds_the_whole_field_at_the_given_calibration(xtal):
    # a ±1.2 1/Å field (96 px at 0.0125): the frame's edge (size // 2 - 2 px) at 1.2 1/Å, on the
    # 1 % grid of working calibrations; before, it sat at the smallest scale (1.02 1/Å)
    s = _search(xtal, 96.0)
    edge_g = (s.config.size // 2 - 2) * s.working_calibration
    assert abs(edge_g / (96.0 * CAL) - 1) <= 0.005 + 1e-9, edge_g
    # the sampling of before: 150 px at the field, as 128 px at 0.85 of it
    assert s.working_calibration == pytest.approx(96.0 * CAL * 0.85 / 62, rel=0.02)


def test_a_wider_field_is_cut_at_max_g(xtal):
    # a ±2.0 1/Å field: the frame holds 1.4 1/Å (the kinematic model's reach on real patterns)
    s = _search(xtal, 160.0)
    assert (s.config.size // 2 - 2) * s.working_calibration == pytest.approx(1.4, rel=0.006)
    wide = _search(xtal, 160.0, max_g=2.5)
    assert (wide.config.size // 2 - 2) * wide.working_calibration == pytest.approx(2.0, rel=0.006)
    with pytest.raises(EdorientError, match="max_g"):
        _search(xtal, 96.0, max_g=0.0)


def test_a_try_that_moved_its_scale_yields_to_one_that_kept_it_with_the_same_answer(xtal):
    R = np.eye(3)
    a = np.radians(3.0)  # the same solution: within the search's 5° (a moved scale moves the direction too)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    other_zone = R[[1, 2, 0]]
    kept = {"calibration_scale": 1.01, "image_fit": 0.60, "rotation": tilt}
    moved = {"calibration_scale": 0.90, "image_fit": 0.66, "rotation": R}  # better fit, 10 % off its image's scale
    laue = xtal.laue
    assert pl.chosen_scale_try([("a", moved), ("b", kept)], 0.025, laue)[0] == "b"
    # of the same answer's tries, the one that moved its scale least
    nearer = dict(kept, calibration_scale=0.995, image_fit=0.58)
    assert pl.chosen_scale_try([("a", moved), ("b", kept), ("c", nearer)], 0.025, laue)[0] == "c"
    # another answer: the whole-image fit decides
    assert pl.chosen_scale_try([("a", moved), ("b", dict(kept, rotation=other_zone))], 0.025, laue)[0] == "a"
    # none kept its scale: the best fit
    assert pl.chosen_scale_try([("a", moved), ("b", dict(kept, calibration_scale=1.2))], 0.025, laue)[0] == "a"
    # a move just inside two grid steps counts as kept
    assert pl.chosen_scale_try([("a", dict(moved, calibration_scale=0.951)), ("b", kept)], 0.025, laue)[0] == "a"
    # a narrower notion of the same solution (1°) leaves the 3° pair to the fit
    assert pl.chosen_scale_try([("a", moved), ("b", kept)], 0.025, laue, same_deg=1.0)[0] == "a"

