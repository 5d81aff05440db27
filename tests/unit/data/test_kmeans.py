"""K-means balancing (thesis 3.5): elbow rule, equal-proportion subsets, features.

Expected values come from hand computation, from exact rational arithmetic done here in the
test (``Fraction``), or from the thesis' own tables (3.10, 3.11), never from the code itself.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from edorient.data import kmeans as km
from edorient.errors import EdorientError


# -- elbow rule --------------------------------------------------------------------------------
def test_elbow_hand_computed_curve():
    # normalised: x = (K-1)/9, y = (SSE-1)/99; 1 - x - y at K=3: .586, K=4: .626, K=5: .525
    assert km.elbow_k([100, 50, 20, 5, 4, 3, 2.5, 2, 1.5, 1]) == 4


def test_elbow_uses_given_ks_and_smallest_on_tie():
    # x = 0, .25, .5, .75, 1 and y = SSE: 1 - x - y = 0, .5, 0, .5, 0 -> K = 2 and 4 tie, 2 wins
    assert km.elbow_k([1.0, 0.25, 0.5, 0.25, 0.0]) == 2
    assert km.elbow_k([10, 2, 1], ks=[2, 3, 4]) == 3


def test_elbow_no_elbow_gives_one():
    assert km.elbow_k([5, 4, 3, 2, 1]) == 1          # a straight line
    assert km.elbow_k([5, 4.9, 4.5, 3, 1]) == 1      # concave: every point above the chord
    assert km.elbow_k([2, 2, 2]) == 1                # flat


def test_elbow_needs_three_points():
    with pytest.raises(EdorientError, match="at least 3"):
        km.elbow_k([3.0, 1.0])


def _four_blobs(n_per=60, dim=48, seed=3):
    rng = np.random.default_rng(seed)
    centres = np.eye(4, dim) * 10.0          # a regular simplex: every pair equally far apart
    truth = np.repeat(np.arange(4), n_per)
    X = centres[truth] + rng.normal(0, 0.5, size=(truth.size, dim))
    perm = rng.permutation(truth.size)
    return X[perm].astype(np.float32), truth[perm]


@pytest.mark.parametrize("algorithm", ["lloyd", "minibatch"])
def test_elbow_picks_four_on_four_clear_clusters(algorithm):
    X, truth = _four_blobs()
    res = km.cluster(X, km.KMeansConfig(kmax=10, seed=0, batch_size=120, epochs=2), algorithm=algorithm)
    assert res.k == 4 and res.k_rule == "elbow"
    assert res.ks.tolist() == list(range(1, 11))
    assert np.all(np.diff(res.sse[:4]) < 0)
    # each true blob is one cluster and vice versa
    pairs = set(zip(truth.tolist(), res.labels.tolist()))
    assert len(pairs) == 4 and len({p[1] for p in pairs}) == 4
    # SSE at K = 4 is the noise alone: ~ n * dim * 0.5^2 (within 15%)
    assert res.sse[3] == pytest.approx(X.shape[0] * X.shape[1] * 0.25, rel=0.15)


def test_given_k_skips_the_rule():
    X, _ = _four_blobs(n_per=20)
    res = km.cluster(X, km.KMeansConfig(kmax=0, k=3))
    assert res.k == 3 and res.k_rule == "given" and res.ks.size == 0
    assert set(res.labels.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"kmax": 1}, "kmax must be >= 2"), ({"kmax": 2}, "kmax >= 3"), ({"kmax": 0}, "kmax >= 3"),
     ({"k": 0}, "--k must be >= 1"), ({"algorithm": "dbscan"}, "unknown algorithm"),
     ({"tol": -1.0}, "tol must be >= 0")],
)
def test_config_validation(kwargs, match):
    with pytest.raises(EdorientError, match=match):
        km.KMeansConfig(**kwargs).validated()


def test_auto_algorithm_by_memory():
    cfg = km.KMeansConfig(max_feature_gb=10.0)
    assert km.feature_bytes(489_500, 56 * 56) == 489_500 * 3136 * 4  # 6.14 GB
    assert cfg.resolve_algorithm(489_500, 56 * 56) == "lloyd"
    assert cfg.resolve_algorithm(489_500, 224 * 224) == "minibatch"


# -- subsets with equal proportions ------------------------------------------------------------
def test_subset_sizes_thesis():
    assert km.subset_sizes(489_500) == [100_000] * 4 + [89_500]
    assert km.subset_sizes(97_900) == [20_000] * 4 + [17_900]  # scheme (ii) directories
    assert sum(km.subset_sizes(1234)) == 1234


def _check_within_one(counts, cluster_sizes, sizes):
    counts = np.asarray(counts)
    n = sum(cluster_sizes)
    assert counts.sum(axis=1).tolist() == list(sizes)
    assert counts.sum(axis=0).tolist() == list(cluster_sizes)
    for s, ns in enumerate(sizes):
        for c, mc in enumerate(cluster_sizes):
            exact = Fraction(ns * mc, n)
            assert abs(counts[s, c] - exact) < 1, (s, c, counts[s, c], exact)


def test_allocate_thesis_table_3_11():
    clusters = [39_662, 228_229, 171_303, 11_661, 38_645]  # Table 3.10
    sizes = [100_000] * 4 + [89_500]
    counts = km.allocate_counts(clusters, sizes)
    _check_within_one(counts, clusters, sizes)
    thesis_row = np.array([8_103, 46_625, 34_995, 2_383, 7_894])  # Table 3.11, subsets 1-4
    assert np.all(np.abs(counts[:4] - thesis_row) <= 1)


def test_allocate_needs_both_margins():
    # rounding each cluster alone would give every subset the same cluster; both margins force
    # a permutation
    counts = km.allocate_counts([1, 1, 1], [1, 1, 1])
    assert sorted(counts.sum(axis=0).tolist()) == [1, 1, 1]
    assert np.array_equal(np.sort(counts, axis=1), np.tile([0, 0, 1], (3, 1)))
    with pytest.raises(EdorientError, match="sum to"):
        km.allocate_counts([2, 2], [3, 2])


@pytest.mark.parametrize("seed", range(6))
def test_allocate_random_within_one(seed):
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 400, size=rng.integers(1, 11)).tolist()
    sizes = km.subset_sizes(sum(clusters))
    _check_within_one(km.allocate_counts(clusters, sizes), clusters, sizes)


def test_balanced_split_partitions_and_balances(rng):
    ids = np.sort(rng.choice(100_000, size=2_003, replace=False))
    labels = rng.choice(4, size=ids.size, p=[0.55, 0.3, 0.1, 0.05])
    sizes = km.subset_sizes(ids.size)
    subsets = km.balanced_split(ids, labels, sizes, np.random.default_rng(0))
    assert [s.size for s in subsets] == sizes
    allids = np.concatenate(subsets)
    assert np.array_equal(np.sort(allids), ids)          # a partition: every id exactly once
    lab = dict(zip(ids.tolist(), labels.tolist()))
    cluster_sizes = np.bincount(labels, minlength=4).tolist()
    counts = [[sum(lab[i] == c for i in s.tolist()) for c in range(4)] for s in subsets]
    _check_within_one(counts, cluster_sizes, sizes)
    again = km.balanced_split(ids, labels, sizes, np.random.default_rng(0))
    other = km.balanced_split(ids, labels, sizes, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))
    assert not all(np.array_equal(a, b) for a, b in zip(subsets, other))


def test_composition_counts(rng):
    ids = np.array([10, 3, 7, 5])
    labels = np.array([1, 0, 1, 0])
    assert km.composition([np.array([3, 10]), np.array([5, 7])], ids, labels).tolist() == [[1, 1], [1, 1]]


# -- the schemes on synthetic features ---------------------------------------------------------
def _features_from_table(X_all):
    def features(ids, name):
        return X_all[ids]
    return features


def test_scheme_i_and_ii_partition_training_set():
    X, truth = _four_blobs(n_per=50, dim=16)
    ids = np.arange(X.shape[0])
    cfg = km.KMeansConfig(kmax=6, seed=1)
    r1 = km.scheme_i(ids, _features_from_table(X), cfg)
    assert r1.scheme == km.SCHEME_I and r1.groups[0].result.k == 4
    assert np.array_equal(np.sort(np.concatenate(r1.subsets)), ids)
    assert [s.size for s in r1.subsets] == km.subset_sizes(ids.size)
    # equal proportions of the true blobs (the clusters found) in every subset
    _check_within_one([np.bincount(truth[s], minlength=4) for s in r1.subsets],
                      np.bincount(truth).tolist(), km.subset_sizes(ids.size))

    r2 = km.scheme_ii(ids, _features_from_table(X), km.KMeansConfig(kmax=0, k=4, seed=1))
    assert r2.scheme == km.SCHEME_II and len(r2.groups) == 5
    assert np.array_equal(np.sort(np.concatenate(r2.subsets)), ids)
    assert np.array_equal(np.sort(np.concatenate([g.ids for g in r2.groups])), ids)
    for g in r2.groups:
        assert np.array_equal(np.sort(np.concatenate(g.parts)), g.ids)
        for s, part in enumerate(g.parts):   # subset s holds exactly part s of every directory
            assert np.isin(part, r2.subsets[s]).all()
    tables = km.scheme_tables(r2)
    assert [t[0] for t in tables][-1] == "composition" and len(tables) == 11  # 3.12-3.22
    assert tables[-1][3][-1][-1] == ids.size


def test_tables_thesis_format():
    text = km.cluster_markdown([39_662, 38_645], ["A", "E"])
    assert "39,662 (7,932 × 5 + 2)" in text and "38,645 (7,729 × 5)" in text
    header, rows = km.composition_table(np.array([[1, 2], [3, 4]]), ["A", "B"])
    assert header == ["subset", "A", "B", "total"]
    assert rows == [["1", 1, 2, 3], ["2", 3, 4, 7], ["total", 4, 6, 10]]
    assert km.cluster_names(3, "1") == ["A1", "B1", "C1"] and km.cluster_names(28)[26:] == ["AA", "AB"]
    assert [km.roman(i) for i in (1, 4, 5, 9, 14)] == ["I", "IV", "V", "IX", "XIV"]


# -- features ----------------------------------------------------------------------------------
def test_area_downscale_block_means():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    y = km.area_downscale(x, 2)
    assert y.shape == (2, 2, 2)
    assert y[1].tolist() == [[18.5, 20.5], [26.5, 28.5]]  # 16 + the hand-computed block means
    assert np.array_equal(km.area_downscale(x, 4), x)


def test_resize_must_divide():
    with pytest.raises(EdorientError, match="must divide"):
        km.area_downscale(np.zeros((1, 32, 32)), 12)
    with pytest.raises(EdorientError, match="must divide"):
        km.check_resize(0, 32)


def test_compute_features_in_chunks():
    imgs = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    out = np.zeros((10, 16), dtype=np.float32)
    f = km.compute_features((imgs[a:a + 3] for a in range(0, 10, 3)), 10, 4, out=out)
    assert f is out
    assert np.allclose(f[7].reshape(4, 4)[1, 2], imgs[7, 2:4, 4:6].mean())
    with pytest.raises(EdorientError, match="9 images, 10 expected"):
        km.compute_features(iter([imgs[:9]]), 10, 4)
