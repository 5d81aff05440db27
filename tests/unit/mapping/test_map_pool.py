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


def test_the_anchors_of_a_chunk_of_whole_rows_form_a_lattice():
    from edorient.mapping.index import _anchor_lattice, _nearest

    grid = np.stack(np.divmod(np.arange(40), 8), 1)  # 5 rows of 8
    anc = _anchor_lattice(grid, stride=4, row_stride=4)
    # rows 0 and 4 (every 4th, centred: 4 rows apart, the first and the last equally far), columns
    # 0, 4 and the row's last
    np.testing.assert_array_equal(grid[anc], [[0, 0], [0, 4], [0, 7], [4, 0], [4, 4], [4, 7]])
    # a chunk of 8 rows: rows 1 and 5 (the first row 1 from an anchor row, the last 2), not the
    # last row as well
    eight = np.stack(np.divmod(np.arange(64), 8), 1)
    assert np.unique(eight[_anchor_lattice(eight, 4, 4), 0]).tolist() == [1, 5]
    # a row missing a probe (no direct beam) still ends with an anchor
    gap = grid[grid[:, 0] * 8 + grid[:, 1] != 39]
    assert [4, 6] in gap[_anchor_lattice(gap, 4, 4)].tolist()
    near = _nearest(np.array([[1, 1], [3, 6]]), grid[anc], 2)
    assert set(map(tuple, grid[anc][near[0]])) == {(0, 0), (0, 4)}
    assert set(map(tuple, grid[anc][near[1]])) == {(4, 7), (4, 4)}


def test_a_chunk_of_whole_rows_indexes_its_rows_between_the_anchor_rows_from_them():
    # 3 rows of 4 probes of one grain: anchors in rows 0 and 2 only (anchor_rows 2, stride 4: the
    # first and the last of each such row), row 1 from their grains, every answer right
    single, _ = default_runs("anatase")
    ix = get_indexer(MapSettings(grains="1", run_single=single, anchor_stride=4, anchor_rows=2))
    laue = ix.crystal.laue
    R = np.stack([random_rotations(1, rng=7)[0]] * 12)
    from edorient.render import display_transform

    xs = display_transform(np.random.default_rng(1).poisson(ix.sim.linear_images(R) * 2e4) / 2e4)
    out = ix.index_prepared(xs, grid=np.stack(np.divmod(np.arange(12), 4), 1))
    np.testing.assert_array_equal(np.flatnonzero(out["anchor"]), [0, 3, 8, 11])
    assert (laue.angle(out["directions"][:, 0], laue.reduce(R[:, 2])) < 1.0).all()


@pytest.mark.parametrize("kw", [{"anchor_stride": 0}, {"anchor_rows": 0}, {"pool_fit_ratio": 0.0}, {"max_centre_px": -1.0}, {"uncertainty_factor": 0.0}, {"dictionary_candidates": 0}])
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
