"""Every unordered pair of N records, indexed without building the list.

Pair ``k`` of ``N`` records is ``(i, j)`` with ``i < j`` in lexicographic order::

    k:      0      1     ...  N-2      N-1    ...
    (i,j): (0,1)  (0,2)  ... (0,N-1)  (1,2)   ...

so row ``i`` starts at ``offset(i) = i (2N - i - 1) / 2``. Grain A of pair ``k`` is record
``i`` (the first of the pair), grain B record ``j``: the thesis order.
"""

from __future__ import annotations

import numpy as np

from edorient.errors import EdorientError


def n_pairs(n: int) -> int:
    """Number of unordered pairs C(n, 2).

    Examples
    --------
    >>> n_pairs(1000)
    499500
    """
    n = int(n)
    if n < 0:
        raise EdorientError(f"number of records must be >= 0, got {n}")
    return n * (n - 1) // 2


def _offset(i: np.ndarray, n: int) -> np.ndarray:
    return i * (2 * n - i - 1) // 2


def pair_from_index(k, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Records ``(i, j)``, ``i < j``, of pair index ``k`` (vectorised over ``k``).

    Parameters
    ----------
    k
        Pair index or array of indices in ``[0, C(n, 2))``.
    n
        Number of records.

    Returns
    -------
    tuple of numpy.ndarray
        int64 arrays ``i`` and ``j`` of the shape of ``k``.

    Examples
    --------
    >>> i, j = pair_from_index([0, 1, 2, 3, 4, 5], 4)
    >>> list(zip(i.tolist(), j.tolist()))
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    """
    n = int(n)
    k = np.asarray(k, dtype=np.int64)
    total = n_pairs(n)
    if k.size and (k.min() < 0 or k.max() >= total):
        raise EdorientError(f"pair index out of range [0, {total}) for {n} records")
    # i = largest row whose offset <= k: root of i^2 - (2n-1) i + 2k = 0, then fix rounding.
    b = 2.0 * n - 1.0
    i = np.floor((b - np.sqrt(np.maximum(b * b - 8.0 * k, 0.0))) / 2.0).astype(np.int64)
    i = np.clip(i, 0, max(n - 2, 0))
    for _ in range(2):
        i = np.where(_offset(i, n) > k, i - 1, i)
        i = np.where((i + 1 <= n - 2) & (_offset(i + 1, n) <= k), i + 1, i)
    j = k - _offset(i, n) + i + 1
    return i, j


def pair_to_index(i, j, n: int) -> np.ndarray:
    """Pair index of records ``(i, j)`` (either order; ``i != j``).

    Examples
    --------
    >>> pair_to_index([0, 3], [1, 2], 4).tolist()
    [0, 5]
    """
    n = int(n)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if np.any(lo == hi) or (lo.size and (lo.min() < 0 or hi.max() >= n)):
        raise EdorientError(f"a pair needs two different records in [0, {n})")
    return _offset(lo, n) + (hi - lo - 1)


def pairs_within(records, n: int) -> np.ndarray:
    """Sorted pair indices of every pair whose two records are both in ``records``.

    Examples
    --------
    >>> pairs_within([0, 2, 3], 4).tolist()
    [1, 2, 5]
    """
    r = np.unique(np.asarray(records, dtype=np.int64))
    if r.size < 2:
        return np.zeros(0, dtype=np.int64)
    a, b = np.triu_indices(r.size, k=1)
    return np.sort(pair_to_index(r[a], r[b], n))
