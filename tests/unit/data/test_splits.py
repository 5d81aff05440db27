"""Hold-out splits and training subsets: the thesis' sizes, disjointness, reproducibility."""

import numpy as np
import pytest

from edorient.data.pairs import n_pairs, pair_from_index
from edorient.data.splits import make_splits, proportional_sizes
from edorient.errors import EdorientError


@pytest.fixture(scope="module")
def thesis_1000():
    return make_splits("thesis", 1000, n_pairs(1000), seed=0)


def test_thesis_sizes_at_n_1000(thesis_1000):
    s = thesis_1000
    # the thesis: 489,500 training(+validation) and 10,000 test images
    assert s["random/trainval.npy"].size == 489_500
    assert s["random/test.npy"].size == 10_000
    assert [s[f"random/test_{k}.npy"].size for k in range(5)] == [2000] * 5
    assert [s[f"random/thesis/subset_{k}.npy"].size for k in range(5)] == [100_000] * 4 + [89_500]
    assert [s[f"random/equal/subset_{k}.npy"].size for k in range(5)] == [97_900] * 5
    for k in range(5):  # 8:2 inside each subset
        tr, va = s[f"random/thesis/subset_{k}_train.npy"], s[f"random/thesis/subset_{k}_val.npy"]
        assert va.size == round(0.2 * s[f"random/thesis/subset_{k}.npy"].size)
        assert np.array_equal(np.union1d(tr, va), s[f"random/thesis/subset_{k}.npy"])
        assert np.intersect1d(tr, va).size == 0
    assert s["random/val.npy"].size == 97_900 and s["random/train.npy"].size == 391_600


@pytest.mark.parametrize("split", ["random", "disjoint"])
def test_parts_partition_the_samples(thesis_1000, split):
    s = thesis_1000
    trainval, test = s[f"{split}/trainval.npy"], s[f"{split}/test.npy"]
    assert np.intersect1d(trainval, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([s[f"{split}/test_{k}.npy"] for k in range(5)])), test)
    for scheme in ("thesis", "equal"):
        subs = np.concatenate([s[f"{split}/{scheme}/subset_{k}.npy"] for k in range(5)])
        assert subs.size == trainval.size and np.array_equal(np.sort(subs), trainval)


def test_disjoint_split_shares_no_orientation(thesis_1000):
    s = thesis_1000
    ti, tj = pair_from_index(s["disjoint/test.npy"], 1000)
    ri, rj = pair_from_index(s["disjoint/trainval.npy"], 1000)
    test_records = np.union1d(ti, tj)
    train_records = np.union1d(ri, rj)
    assert np.intersect1d(test_records, train_records).size == 0
    hold = s["disjoint/holdout_records.npy"]
    assert np.array_equal(test_records, hold)
    # default hold-out sqrt(10000/499500) of 1000 orientations = 141 -> C(141, 2) test pairs
    assert hold.size == 141 and s["disjoint/test.npy"].size == 141 * 140 // 2
    assert s["disjoint/trainval.npy"].size == 859 * 858 // 2


def test_proportional_at_small_n():
    s = make_splits("thesis", 20, n_pairs(20), seed=1)
    assert s["random/test.npy"].size == round(190 * 10_000 / 499_500)  # 4
    sizes = [s[f"random/thesis/subset_{k}.npy"].size for k in range(5)]
    assert sum(sizes) == 186 and sizes == proportional_sizes(186, (100, 100, 100, 100, 89.5))


def test_same_seed_same_splits_other_seed_other_splits():
    a = make_splits("random", 500, 500, seed=7)
    b = make_splits("random", 500, 500, seed=7)
    c = make_splits("random", 500, 500, seed=8)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["random/test.npy"], c["random/test.npy"])


def test_too_few_orientations_for_disjoint():
    with pytest.raises(EdorientError, match="disjoint"):
        make_splits("thesis", 3, n_pairs(3), seed=0)
