"""Anchors and pools (``MapSettings.anchor_stride``): patterns between anchors refine their
neighbouring anchors' grains; a grain no anchor saw gets the whole chain."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping import MapSettings, default_runs
from edorient.mapping.index import get_indexer
from edorient.physics.orientation import random_rotations


def _indexer(stride):
    single, _ = default_runs("anatase")
    return get_indexer(MapSettings(grains="1", run_single=single, anchor_stride=stride))


def test_pool_follows_the_anchors_and_reindexes_a_grain_they_missed():
    ix = _indexer(4)
    laue = ix.crystal.laue
    A, C = random_rotations(2, rng=42)
    R = np.stack([A] * 9)
    R[6] = C  # one probe of another grain between the anchors 4 and 8 (both A)
    rng = np.random.default_rng(0)
    lin = ix.sim.linear_images(R)
    from edorient.render import display_transform

    xs = display_transform(rng.poisson(lin * 2e4) / 2e4)
    out = ix.index_prepared(xs)
    err = laue.angle(out["directions"][:, 0], laue.reduce(R[:, 2]))
    assert (err < 1.0).all(), err
    anchors = np.zeros(9, dtype=bool)
    anchors[[0, 4, 8, 6]] = True  # every 4th, the last, and the probe whose grain no anchor has
    np.testing.assert_array_equal(out["anchor"], anchors)
    assert (out["n_grains"] == 1).all() and np.isfinite(out["image_fit"]).all()
    # the same answers as the whole chain on every pattern (stride 1), to well within a degree
    whole = _indexer(1).index_prepared(xs)
    assert whole["anchor"].all()
    assert (laue.angle(whole["directions"][:, 0], out["directions"][:, 0]) < 0.2).all()


@pytest.mark.parametrize("kw", [{"anchor_stride": 0}, {"pool_fit_ratio": 0.0}, {"max_centre_px": -1.0}, {"uncertainty_factor": 0.0}, {"dictionary_candidates": 0}])
def test_bad_pool_settings_are_refused(kw):
    with pytest.raises(EdorientError):
        MapSettings(**kw)


def test_map_uncertainties_carry_the_calibrated_factor():
    from edorient.indexing.refine import Refiner
    from edorient.mapping.index import MAP_UNCERTAINTY_FACTOR

    ix = _indexer(None)
    base = Refiner(ix.crystal, ix.sim.config)
    ref = ix.estimators["1"].refiner
    assert ref.uncertainty_scale == pytest.approx(base.uncertainty_scale * MAP_UNCERTAINTY_FACTOR)
    assert ref.max_centre_px == 1.0 and MAP_UNCERTAINTY_FACTOR > 1
