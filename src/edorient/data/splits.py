"""Hold-out splits and the thesis' training subsets, stored as index files.

Sample ids run over ``[0, len(data set))`` (pair indices in thesis mode). Every index file is a
sorted int32 (or int64 for > 2^31 samples) ``.npy`` array under ``DIR/splits``::

    splits/<split>/trainval.npy   training + validation ids
    splits/<split>/train.npy      8:2 split of trainval ...
    splits/<split>/val.npy        ... (random, from the seed)
    splits/<split>/test.npy       test ids
    splits/<split>/test_<k>.npy   the test set as 5 subsets (k = 0..4)
    splits/<split>/<scheme>/subset_<k>.npy, subset_<k>_train.npy, subset_<k>_val.npy

``<split>`` is ``random`` (the thesis hold-out: 10,000 of 499,500 for test, proportional at
other sizes) or ``disjoint`` (thesis mode: a fraction of the N orientations is held out; the
test pairs use only held-out orientations, the training pairs none; mixed pairs are unused.
In random and single modes every sample has its own orientations, so ``disjoint`` is the same
as ``random``). ``<scheme>`` is ``thesis`` (subsets in the proportions
100k/100k/100k/100k/89.5k, pre-experiment 2 and experiment 1) or ``equal`` (five equal
subsets, experiment 2); :func:`write_subsets` adds others (K-means) in the same form.
Subsets are numbered from 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edorient.data import _storage as st
from edorient.data.pairs import pairs_within
from edorient._utils.rng import seeded_rng
from edorient.errors import EdorientError

#: Test fraction of the thesis hold-out: 10,000 of 499,500 images.
THESIS_TEST_FRACTION = 10_000 / 499_500
#: Relative sizes of the thesis' five training subsets (100k x 4 + 89.5k).
THESIS_SUBSET_WEIGHTS = (100_000, 100_000, 100_000, 100_000, 89_500)
#: Validation fraction inside every training set (Keras validation_split=0.2).
VAL_FRACTION = 0.2
N_TEST_SUBSETS = 5
SPLITS = ("random", "disjoint")
PARTS = ("train", "val", "trainval", "test")
# spawn keys of the split streams (the generator uses 0 and 1)
_KEY_SPLIT, _KEY_HOLDOUT, _KEY_SUBSETS = 10, 11, 12


def default_holdout_fraction(test_fraction: float = THESIS_TEST_FRACTION) -> float:
    """Fraction of orientations held out so that C(n_test, 2) ~ test_fraction x C(N, 2)."""
    return float(np.sqrt(test_fraction))




def _dtype(n: int):
    return np.int32 if n < 2**31 else np.int64


def proportional_sizes(total: int, weights) -> list[int]:
    """Split ``total`` into parts proportional to ``weights`` summing exactly to ``total``.

    Examples
    --------
    >>> proportional_sizes(489_500, THESIS_SUBSET_WEIGHTS)
    [100000, 100000, 100000, 100000, 89500]
    >>> proportional_sizes(10, THESIS_SUBSET_WEIGHTS)
    [2, 2, 2, 2, 2]
    """
    w = np.asarray(weights, dtype=float)
    bounds = np.rint(total * np.cumsum(w) / w.sum()).astype(np.int64)
    return np.diff(np.concatenate([[0], bounds])).tolist()


def train_val(ids: np.ndarray, rng: np.random.Generator, val_fraction: float = VAL_FRACTION):
    """Random ``(train, val)`` of ``ids`` (both sorted), ``round(val_fraction * n)`` for val."""
    ids = np.asarray(ids)
    n_val = int(round(val_fraction * ids.size))
    perm = rng.permutation(ids.size)
    return np.sort(ids[perm[n_val:]]), np.sort(ids[perm[:n_val]])


def make_splits(
    mode: str,
    n_records: int,
    n_samples: int,
    seed: int,
    test_fraction: float = THESIS_TEST_FRACTION,
    holdout_fraction: float | None = None,
    val_fraction: float = VAL_FRACTION,
    n_test_subsets: int = N_TEST_SUBSETS,
) -> dict[str, np.ndarray]:
    """All index arrays of a data set, as ``{relative path: ids}`` (deterministic in ``seed``).

    Parameters
    ----------
    mode
        ``"thesis"`` (samples are pairs of ``n_records`` orientations) or ``"random"`` /
        ``"single"`` (samples are records).
    n_records, n_samples
        Records stored and samples served.
    seed
        The data set's seed.
    test_fraction
        Test share of the random hold-out (default 10,000 / 499,500, the thesis').
    holdout_fraction
        Share of orientations held out for the disjoint test (thesis mode; at least 2); default
        ``sqrt(test_fraction)``, which makes the disjoint test about as large as the random one.
    val_fraction
        Validation share inside every training set.
    n_test_subsets
        Number of test subsets (the thesis: 5).
    """
    if not 0 < test_fraction < 1:
        raise EdorientError(f"test fraction must lie in (0, 1), got {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise EdorientError(f"validation fraction must lie in [0, 1), got {val_fraction}")
    out: dict[str, np.ndarray] = {}
    # random hold-out
    n_test = min(max(1, int(round(test_fraction * n_samples))), n_samples - 1)
    perm = seeded_rng(seed, _KEY_SPLIT).permutation(n_samples)
    parts = {"random": (np.sort(perm[n_test:]), np.sort(perm[:n_test]))}
    # disjoint hold-out
    if mode == "thesis":
        frac = default_holdout_fraction(test_fraction) if holdout_fraction is None else holdout_fraction
        n_hold = max(2, int(round(frac * n_records)))
        if n_hold < 2 or n_records - n_hold < 2:
            raise EdorientError(
                f"the disjoint split needs >= 2 held-out and >= 2 training orientations; "
                f"{n_records} orientations with hold-out fraction {frac:.3f} give {n_hold}: "
                "use more orientations (-n) or another --holdout-fraction"
            )
        hold = np.sort(seeded_rng(seed, _KEY_HOLDOUT).permutation(n_records)[:n_hold])
        keep = np.setdiff1d(np.arange(n_records), hold)
        parts["disjoint"] = (pairs_within(keep, n_records), pairs_within(hold, n_records))
        out["disjoint/holdout_records.npy"] = hold
    else:
        parts["disjoint"] = parts["random"]
    for si, (split, (trainval, test)) in enumerate(parts.items()):
        rng = seeded_rng(seed, _KEY_SUBSETS, si)
        out[f"{split}/trainval.npy"] = trainval
        out[f"{split}/test.npy"] = test
        for k, sub in enumerate(np.array_split(test[rng.permutation(test.size)], n_test_subsets)):
            out[f"{split}/test_{k}.npy"] = np.sort(sub)
        out[f"{split}/train.npy"], out[f"{split}/val.npy"] = train_val(trainval, rng, val_fraction)
        shuffled = trainval[rng.permutation(trainval.size)]
        sizes = proportional_sizes(trainval.size, THESIS_SUBSET_WEIGHTS)
        thesis = np.split(shuffled, np.cumsum(sizes)[:-1])
        out.update(_subset_files(split, "thesis", thesis, rng, val_fraction))
        shuffled = trainval[rng.permutation(trainval.size)]
        equal = np.array_split(shuffled, len(THESIS_SUBSET_WEIGHTS))
        out.update(_subset_files(split, "equal", equal, rng, val_fraction))
    return {k: v.astype(_dtype(n_samples)) for k, v in out.items()}


def _subset_files(split, scheme, subsets, rng, val_fraction) -> dict[str, np.ndarray]:
    out = {}
    for k, sub in enumerate(subsets):
        sub = np.sort(np.asarray(sub))
        out[f"{split}/{scheme}/subset_{k}.npy"] = sub
        tr, va = train_val(sub, rng, val_fraction)
        out[f"{split}/{scheme}/subset_{k}_train.npy"] = tr
        out[f"{split}/{scheme}/subset_{k}_val.npy"] = va
    return out


def save_splits(root: str | Path, files: dict[str, np.ndarray]) -> None:
    """Write index files under ``root/splits`` atomically."""
    for rel, ids in files.items():
        st.atomic_save_npy(Path(root) / st.SPLITS / rel, ids)


def write_subsets(
    root: str | Path,
    split: str,
    scheme: str,
    subsets: list,
    seed: int,
    val_fraction: float = VAL_FRACTION,
) -> None:
    """Store training subsets under a new ``scheme`` name (e.g. ``"kmeans1"``).

    Each subset gets a random 8:2 train/validation split drawn from ``seed`` and the scheme
    name, so it is reproducible. The subsets must lie inside ``split``'s trainval ids.
    """
    root = Path(root)
    if split not in SPLITS:
        raise EdorientError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if not scheme or not scheme.replace("_", "").isalnum():
        raise EdorientError(f"scheme name must be letters, digits or _, got {scheme!r}")
    trainval = np.load(root / st.SPLITS / split / "trainval.npy")
    allowed = np.zeros(int(trainval.max()) + 1 if trainval.size else 0, dtype=bool)
    allowed[trainval] = True
    for k, sub in enumerate(subsets):
        sub = np.asarray(sub, dtype=np.int64)
        if sub.size and (sub.min() < 0 or sub.max() >= allowed.size or not allowed[sub].all()):
            raise EdorientError(
                f"subset {k} of scheme {scheme!r} has ids outside the {split} trainval set; "
                "build subsets from EDData.index(split, 'trainval')"
            )
    key = [ord(c) for c in scheme]
    rng = seeded_rng(seed, _KEY_SUBSETS, 100, *key)
    files = _subset_files(split, scheme, subsets, rng, val_fraction)
    save_splits(root, {k: v.astype(trainval.dtype) for k, v in files.items()})
