"""Pair indexing: every unordered pair once, in lexicographic order, without building the list."""

import itertools
import math

import numpy as np
import pytest

from edorient.data.pairs import n_pairs, pair_from_index, pair_to_index, pairs_within
from edorient.errors import EdorientError


@pytest.mark.parametrize("n", [2, 3, 7, 20, 101])
def test_unrank_enumerates_every_pair_once_in_order(n):
    expected = list(itertools.combinations(range(n), 2))
    assert n_pairs(n) == math.comb(n, 2) == len(expected)
    i, j = pair_from_index(np.arange(n_pairs(n)), n)
    got = list(zip(i.tolist(), j.tolist()))
    assert got == expected  # lexicographic, so A = the first (smaller) record
    assert np.all(i < j)  # no self pairs
    assert len(set(got)) == len(got)  # no duplicates


def test_thesis_count():
    assert n_pairs(1000) == 499_500


def test_roundtrip_and_row_boundaries_at_large_n():
    n = 100_000
    # first pair of each row i is (i, i+1), last is (i, n-1); offsets by an independent sum
    rows = np.array([0, 1, 2, 500, 77_777, n - 3, n - 2])
    offsets = np.array([sum(n - 1 - r for r in range(i)) for i in rows.tolist()])
    i, j = pair_from_index(offsets, n)
    assert i.tolist() == rows.tolist() and j.tolist() == (rows + 1).tolist()
    i, j = pair_from_index(offsets + (n - 2 - rows), n)
    assert i.tolist() == rows.tolist() and np.all(j == n - 1)
    k = np.random.default_rng(0).integers(0, n_pairs(n), 10_000)
    i, j = pair_from_index(k, n)
    assert np.all((0 <= i) & (i < j) & (j < n))
    assert np.array_equal(pair_to_index(i, j, n), k)
    assert np.array_equal(pair_to_index(j, i, n), k)  # either order


def test_out_of_range_and_self_pair_rejected():
    with pytest.raises(EdorientError):
        pair_from_index([6], 4)
    with pytest.raises(EdorientError):
        pair_from_index([-1], 4)
    with pytest.raises(EdorientError):
        pair_to_index([2], [2], 4)


def test_pairs_within():
    assert pairs_within([3, 0, 2], 4).tolist() == [1, 2, 5]  # (0,2) (0,3) (2,3)
    assert pairs_within([1], 4).size == 0
