"""Pure metric functions of the evaluation layer (numpy only).

The thesis' metrics (section 3.2, eq. 3.1-3.3) and the evaluation protocols of its chapters 3
and 4, plus an angular error modulo crystal symmetry that the thesis did not have.

Symbols
-------
- ``pred``, ``true``: directions as ``(..., 3)`` arrays; a bicrystal sample is ``(n, 2, 3)``
  with grain/head axis 1. ``true`` is the sector-reduced label in thesis order (A first),
  ``pred`` the raw network output (head 1 first).
- ``a``: the thesis error of one direction, ``a_i = |x̂_i - x_i| + |ŷ_i - y_i| + |ẑ_i - z_i|``
  (the summand of eq. 3.2).
- ``MAE = mean(a)`` (eq. 3.1/3.2); ``σ = sqrt(mean((a - MAE)^2))`` (eq. 3.3, the population
  standard deviation, divisor n).

Protocols
---------
- Method 1 (thesis section 3.1): head 1 against grain A and head 2 against grain B gives
  ``MAE_1, σ_1, MAE_2, σ_2``. ``order="free"`` lets each sample match its heads to {A, B}
  whichever way gives the smaller summed error (a bicrystal label is an unordered pair).
- Method 2, stage 1: keep one of the two heads. The thesis kept the one with the smaller *true*
  error (an oracle, :func:`method2_oracle`); a user without labels keeps the head whose
  simulated pattern correlates best with the image (:func:`method2_pick_by_score`, the scores
  come from elsewhere).
- Error concentration (thesis section 4.4, Tables 4.15/4.16): the range of the errors and the
  number of samples whose errors are at or below the mean ("平均以下": 7,792 of 10,000 for
  Method 1 with both directions at or below their means; 8,170 for Method 2).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from edorient.errors import EdorientError

__all__ = [
    "ORDERS",
    "AngleGroup",
    "angular_errors",
    "angular_errors_pairs",
    "angular_summary",
    "count_below_mean",
    "error_range",
    "evaluate_predictions",
    "mae_sigma",
    "method1_errors",
    "method2_oracle",
    "method2_pick_by_score",
    "select_heads",
    "thesis_errors",
    "worst_indices",
]

#: Valid values of the ``order`` argument of :func:`method1_errors`.
ORDERS: tuple[str, ...] = ("thesis", "free")

#: Thresholds (degrees) of the "share below" entries of :func:`angular_summary`.
ANGLE_THRESHOLDS_DEG: tuple[float, ...] = (1.0, 2.0, 5.0)


class AngleGroup(Protocol):
    """What :func:`angular_errors` needs of a Laue group.

    :class:`edorient.physics.symmetry.LaueGroup` satisfies it.
    """

    def angle(self, a: np.ndarray, b: np.ndarray, degrees: bool = True) -> np.ndarray:
        """Smallest angle between ``a`` and ``b`` over the group's operations."""
        ...


# ----------------------------------------------------------------------------------------------
# eq. 3.1-3.3


def _as_vectors(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise EdorientError(f"{name} must have shape (..., 3), got {arr.shape}")
    return arr


def thesis_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Thesis error ``a_i = |x̂-x| + |ŷ-y| + |ẑ-z|`` per direction (summand of eq. 3.2).

    Parameters
    ----------
    pred, true
        Directions, shape ``(..., 3)``; broadcast against each other. No normalisation is
        applied (the thesis compares the raw network output with the unit label).

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``, float64.

    Examples
    --------
    >>> float(thesis_errors([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    2.0
    """
    p = _as_vectors("pred", pred)
    t = _as_vectors("true", true)
    try:
        return np.abs(p - t).sum(axis=-1)
    except ValueError as exc:
        raise EdorientError(f"pred {p.shape} and true {t.shape} do not broadcast") from exc


def mae_sigma(a: np.ndarray) -> tuple[float, float]:
    """MAE and σ of per-sample errors (eq. 3.1/3.2 and eq. 3.3).

    Parameters
    ----------
    a
        Per-sample errors ``a_i``, any shape (flattened), at least one element.

    Returns
    -------
    tuple of float
        ``(MAE, σ)`` with ``MAE = mean(a)`` and ``σ = sqrt(mean((a - MAE)**2))`` (population
        standard deviation, divisor n, as eq. 3.3).

    Examples
    --------
    >>> mae_sigma([1.0, 3.0])
    (2.0, 1.0)
    """
    arr = np.asarray(a, dtype=np.float64).ravel()
    if arr.size == 0:
        raise EdorientError("mae_sigma needs at least one error value, got an empty array")
    mae = float(arr.mean())
    sigma = float(np.sqrt(np.mean((arr - mae) ** 2)))
    return mae, sigma


# ----------------------------------------------------------------------------------------------
# Method 1 and Method 2 stage 1


def _check_pairs(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_vectors("pred", pred)
    t = _as_vectors("true", true)
    if p.ndim != 3 or p.shape[1] != 2 or p.shape != t.shape:
        raise EdorientError(
            f"pred and true must both have shape (n, 2, 3), got {p.shape} and {t.shape}"
        )
    return p, t


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise EdorientError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")


def _free_pairing(cost_same: np.ndarray, cost_swap: np.ndarray) -> np.ndarray:
    """True where the swapped assignment (head 1 -> B, head 2 -> A) costs strictly less."""
    return cost_swap.sum(axis=1) < cost_same.sum(axis=1)


def method1_errors(
    pred: np.ndarray,
    true: np.ndarray,
    order: Literal["thesis", "free"] = "thesis",
    return_swapped: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-sample thesis errors of the two heads of a bicrystal prediction (Method 1).

    Parameters
    ----------
    pred
        Network output, shape ``(n, 2, 3)`` (head 1, head 2).
    true
        Labels, shape ``(n, 2, 3)`` in thesis order (grain A, grain B).
    order
        ``"thesis"``: head 1 is scored against A and head 2 against B, as the thesis.
        ``"free"``: per sample, heads are matched to {A, B} the way that gives the smaller
        summed error ``a_1 + a_2`` (ties keep the thesis order).
    return_swapped
        Also return the boolean ``(n,)`` mask of samples where head 1 was matched to B.

    Returns
    -------
    errors : numpy.ndarray
        Shape ``(n, 2)``; column ``j`` is the error of head ``j + 1`` against the grain it is
        matched to. ``errors.mean(0)`` are ``MAE_1, MAE_2`` of the thesis' Tables 3.1 etc.
    swapped : numpy.ndarray
        Only with ``return_swapped``; all False for ``order="thesis"``.

    Examples
    --------
    >>> p = [[[0, 0, 1], [1, 0, 0]]]
    >>> t = [[[1, 0, 0], [0, 0, 1]]]
    >>> method1_errors(p, t).tolist(), method1_errors(p, t, order="free").tolist()
    ([[2.0, 2.0]], [[0.0, 0.0]])
    """
    _check_order(order)
    p, t = _check_pairs(pred, true)
    same = thesis_errors(p, t)  # (n, 2): head j vs grain j
    if order == "thesis":
        swapped = np.zeros(p.shape[0], dtype=bool)
        errors = same
    else:
        swap = thesis_errors(p, t[:, ::-1])  # head j vs the other grain
        swapped = _free_pairing(same, swap)
        errors = np.where(swapped[:, None], swap, same)
    return (errors, swapped) if return_swapped else errors


def method2_oracle(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Method 2 stage 1 as the thesis: keep the head with the smaller true error.

    Parameters
    ----------
    errors
        Per-head errors, shape ``(n, 2)`` (from :func:`method1_errors`).

    Returns
    -------
    kept : numpy.ndarray
        ``(n,)`` the smaller error of each sample.
    head : numpy.ndarray
        ``(n,)`` int, the kept head (0 or 1); ties keep head 0.

    Examples
    --------
    >>> kept, head = method2_oracle([[0.3, 0.1], [0.2, 0.2]])
    >>> kept.tolist(), head.tolist()
    ([0.1, 0.2], [1, 0])
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != 2:
        raise EdorientError(f"errors must have shape (n, 2), got {e.shape}")
    head = np.argmin(e, axis=1).astype(np.int64)
    return select_heads(e, head), head


def method2_pick_by_score(scores: np.ndarray) -> np.ndarray:
    """Method 2 stage 1 without labels: keep the head with the highest score.

    Parameters
    ----------
    scores
        Shape ``(n, 2)``: for each head, how well the pattern simulated from its direction
        matches the image (e.g. a normalised cross-correlation; computed elsewhere).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int, the kept head (0 or 1); ties keep head 0.

    Examples
    --------
    >>> method2_pick_by_score([[0.2, 0.9], [0.5, 0.1]]).tolist()
    [1, 0]
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise EdorientError(f"scores must have shape (n, 2), got {s.shape}")
    return np.argmax(s, axis=1).astype(np.int64)


def select_heads(errors: np.ndarray, head: np.ndarray) -> np.ndarray:
    """``errors[i, head[i]]`` for every sample ``i``: the error of the kept head."""
    e = np.asarray(errors, dtype=np.float64)
    h = np.asarray(head, dtype=np.int64)
    if e.ndim != 2 or h.shape != (e.shape[0],):
        raise EdorientError(f"errors (n, k) and head (n,) do not match: {e.shape}, {h.shape}")
    return e[np.arange(e.shape[0]), h]


# ----------------------------------------------------------------------------------------------
# Angular errors modulo symmetry


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, v / norm, np.nan)


def angular_errors(pred: np.ndarray, true: np.ndarray, laue: AngleGroup) -> np.ndarray:
    """Angle (degrees) between predicted and true directions modulo the Laue group.

    Parameters
    ----------
    pred
        Predicted directions ``(..., 3)``; normalised here. A zero or non-finite
        prediction gives NaN (the group is not called for it).
    true
        True directions, same shape.
    laue
        Anything with ``angle(a, b, degrees=True)`` returning the smallest angle between
        ``a`` and ``b`` over the group's operations, e.g.
        :class:`edorient.physics.symmetry.LaueGroup`. Called on ``(m, 3)`` arrays; a
        group whose ``angle`` takes single vectors only is called row by row.

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``, degrees in ``[0, 180]``.
    """
    p = _as_vectors("pred", pred)
    t = _as_vectors("true", true)
    if p.shape != t.shape:
        raise EdorientError(f"pred and true must have the same shape, got {p.shape}, {t.shape}")
    shape = p.shape[:-1]
    pf = _normalise(p.reshape(-1, 3))
    tf = _normalise(t.reshape(-1, 3))
    out = np.full(pf.shape[0], np.nan)
    ok = np.all(np.isfinite(pf), axis=1) & np.all(np.isfinite(tf), axis=1)
    if not ok.any():
        return out.reshape(shape)
    pv, tv = pf[ok], tf[ok]
    res: np.ndarray | None = None
    try:
        res = np.asarray(laue.angle(pv, tv, degrees=True), dtype=np.float64)
    except (TypeError, ValueError, IndexError):  # angle() takes single vectors only: row by row below
        res = None
    if res is None or res.shape != (pv.shape[0],):
        res = np.array(
            [float(laue.angle(a, b, degrees=True)) for a, b in zip(pv, tv)], dtype=np.float64
        )
    out[ok] = res
    return out.reshape(shape)


def angular_errors_pairs(
    pred: np.ndarray,
    true: np.ndarray,
    laue: AngleGroup,
    order: Literal["thesis", "free"] = "thesis",
) -> np.ndarray:
    """Angular errors (degrees) of the two heads of a bicrystal prediction.

    As :func:`method1_errors`, but with the angle modulo symmetry; ``order="free"`` matches
    heads to grains by the smaller summed angle.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 2)``; column ``j`` belongs to head ``j + 1``.
    """
    _check_order(order)
    p, t = _check_pairs(pred, true)
    same = angular_errors(p, t, laue)
    if order == "thesis":
        return same
    swap = angular_errors(p, t[:, ::-1], laue)
    return np.where(_free_pairing(same, swap)[:, None], swap, same)


def grain_errors(pred: np.ndarray, true: np.ndarray, laue) -> tuple[np.ndarray, np.ndarray]:
    """Per-grain angles (degrees, modulo the Laue group) in the *true* grains' order.

    ``pred`` and ``true`` are (n, g, 3) with g = 1 or 2; two grains are matched to the estimates
    the way with the smaller summed angle (order-free). Returns the errors (n, g) and, for each
    image, whether the estimates were swapped (n,) bool.
    """
    same = np.stack([laue.angle(pred[:, k], true[:, k]) for k in range(true.shape[1])], axis=1)
    if true.shape[1] == 1:
        return same, np.zeros(len(true), dtype=bool)
    swap = np.stack([laue.angle(pred[:, 1], true[:, 0]), laue.angle(pred[:, 0], true[:, 1])], axis=1)
    swapped = swap.sum(1) < same.sum(1)
    return np.where(swapped[:, None], swap, same), swapped


def angular_summary(deg: np.ndarray) -> dict[str, float | int]:
    """Summary of angular errors (degrees).

    Returns
    -------
    dict
        ``n``, ``n_nan`` (NaN angles: zero or non-finite predictions), ``median``,
        ``mean``, ``p90``, ``p99`` (of the finite angles; linear-interpolated percentiles)
        and ``share_below_1deg``, ``share_below_2deg``, ``share_below_5deg`` (fraction of
        all ``n`` strictly below, in [0, 1]; a NaN angle counts as not below).
    """
    d = np.asarray(deg, dtype=np.float64).ravel()
    if d.size == 0:
        raise EdorientError("angular_summary needs at least one angle, got an empty array")
    f = d[np.isfinite(d)]
    nan = float("nan")
    out: dict[str, float | int] = {
        "n": int(d.size),
        "n_nan": int(d.size - f.size),
        "median": float(np.median(f)) if f.size else nan,
        "mean": float(np.mean(f)) if f.size else nan,
        "p90": float(np.percentile(f, 90)) if f.size else nan,
        "p99": float(np.percentile(f, 99)) if f.size else nan,
    }
    for thr in ANGLE_THRESHOLDS_DEG:
        out[f"share_below_{thr:g}deg"] = float(np.mean(d < thr))
    return out


# ----------------------------------------------------------------------------------------------
# Error concentration (thesis section 4.4)


def count_below_mean(a: np.ndarray) -> int:
    """Number of samples whose errors are at or below the mean (thesis section 4.4).

    Parameters
    ----------
    a
        ``(n,)`` errors, or ``(n, k)``: then a sample counts only when every column is at or
        below that column's mean (the thesis' Method 1 count, 7,792 of 10,000, needs both
        directions at or below their MAE).

    Examples
    --------
    >>> count_below_mean([0.0, 1.0, 5.0])
    2
    """
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise EdorientError(f"errors must have shape (n,) or (n, k) with n > 0, got {arr.shape}")
    return int(np.all(arr <= arr.mean(axis=0), axis=1).sum())


def worst_indices(a: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest errors, largest first (for the worst-images plot).

    ``a`` is ``(n,)``, or ``(n, m)`` ranked by the row sum. NaN ranks as the worst.

    Examples
    --------
    >>> worst_indices([0.1, 0.9, 0.5], 2).tolist()
    [1, 2]
    """
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.sum(axis=1)
    if arr.ndim != 1:
        raise EdorientError(f"errors must have shape (n,) or (n, m), got {np.shape(a)}")
    key = np.where(np.isnan(arr), np.inf, arr)
    order = np.argsort(-key, kind="stable")
    return order[: max(int(k), 0)].astype(np.int64)


def error_range(a: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of the errors, as the thesis' Tables 4.15/4.16.

    Examples
    --------
    >>> error_range([0.5, 0.1, 2.0])
    (0.1, 2.0)
    """
    arr = np.asarray(a, dtype=np.float64).ravel()
    if arr.size == 0:
        raise EdorientError("error_range needs at least one error value, got an empty array")
    return float(arr.min()), float(arr.max())


# ----------------------------------------------------------------------------------------------
# Everything the tables need


def _m1_entry(errors: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for j in range(errors.shape[1]):
        mae, sigma = mae_sigma(errors[:, j])
        out[f"mae_{j + 1}"] = mae
        out[f"sigma_{j + 1}"] = sigma
    return out


def _m2_entry(kept: np.ndarray) -> dict[str, float]:
    mae, sigma = mae_sigma(kept)
    return {"mae": mae, "sigma": sigma}


def _evaluate_block(
    pred: np.ndarray,
    true: np.ndarray,
    laue: AngleGroup | None,
    scores: np.ndarray | None,
) -> dict[str, Any]:
    """All metrics of one block of samples (one subset, or all of them)."""
    n, k = pred.shape[:2]
    res: dict[str, Any] = {"n": int(n)}
    below: dict[str, int] = {}
    ranges: dict[str, list[float]] = {}
    angular: dict[str, dict[str, float]] = {}

    if k == 1:
        e = thesis_errors(pred, true)  # (n, 1)
        res["method1"] = _m1_entry(e)
        below["method1"] = count_below_mean(e)
        ranges["method1_1"] = list(error_range(e[:, 0]))
        if laue is not None:
            ang = angular_errors(pred, true, laue)
            angular["grain_1"] = angular_summary(ang[:, 0])
            angular["all"] = angular_summary(ang)
        res.update(below_mean=below, range=ranges, angular=angular or None)
        return res

    for order in ORDERS:
        suffix = "" if order == "thesis" else "_free"
        e = method1_errors(pred, true, order=order)
        res[f"method1{suffix}"] = _m1_entry(e)
        kept, _ = method2_oracle(e)
        res[f"method2_oracle{suffix}"] = _m2_entry(kept)
        below[f"method1{suffix}"] = count_below_mean(e)
        below[f"method2_oracle{suffix}"] = count_below_mean(kept)
        ranges[f"method1{suffix}_1"] = list(error_range(e[:, 0]))
        ranges[f"method1{suffix}_2"] = list(error_range(e[:, 1]))
        ranges[f"method2_oracle{suffix}"] = list(error_range(kept))
        if scores is not None:
            kept_s = select_heads(e, method2_pick_by_score(scores))
            res[f"method2_score{suffix}"] = _m2_entry(kept_s)
            below[f"method2_score{suffix}"] = count_below_mean(kept_s)
            ranges[f"method2_score{suffix}"] = list(error_range(kept_s))
        if laue is not None:
            ang = angular_errors_pairs(pred, true, laue, order=order)
            angular[f"grain_1{suffix}"] = angular_summary(ang[:, 0])
            angular[f"grain_2{suffix}"] = angular_summary(ang[:, 1])
            angular[f"all{suffix}"] = angular_summary(ang)
    res.update(below_mean=below, range=ranges, angular=angular or None)
    return res


def _mean_of(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over subsets of MAE/σ, angular summaries, counts (the thesis' 平均 row)."""
    out: dict[str, Any] = {"n": float(np.mean([b["n"] for b in blocks]))}
    for key, value in blocks[0].items():
        if key.startswith("method"):
            out[key] = {s: float(np.mean([b[key][s] for b in blocks])) for s in value}
    if blocks[0].get("angular"):
        out["angular"] = {
            g: {s: float(np.mean([b["angular"][g][s] for b in blocks])) for s in summary}
            for g, summary in blocks[0]["angular"].items()
        }
    out["below_mean"] = {
        s: float(np.mean([b["below_mean"][s] for b in blocks])) for s in blocks[0]["below_mean"]
    }
    return out


def evaluate_predictions(
    pred: np.ndarray,
    true: np.ndarray,
    laue: AngleGroup | None = None,
    subsets: list[np.ndarray] | None = None,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every number the thesis' evaluation tables need, per test subset and averaged.

    Parameters
    ----------
    pred
        Network output, ``(n, 2, 3)`` for bicrystals, ``(n, 3)`` or ``(n, 1, 3)`` for single
        crystals.
    true
        Sector-reduced labels in thesis order, same shape as ``pred``.
    laue
        Group for the angular errors (anything with ``angle(a, b, degrees=True)``); None
        skips them (``"angular"`` entries are None).
    subsets
        Index arrays into the first axis, one per test subset (the thesis' 5 x 10,000 of
        pre-experiment 1). None: one subset holding every sample.
    scores
        ``(n, 2)`` per-head scores for Method 2 stage 1 by score (bicrystals only); None
        omits the ``method2_score*`` entries.

    Returns
    -------
    dict
        JSON-serialisable, with keys

        - ``n_grains`` (1 or 2), ``n_subsets``;
        - ``subsets``: one block per subset; ``all``: one block over the union of the
          subsets (the pooled numbers, as the thesis' chapter 4 hold-out);
        - ``mean``: the mean over subsets of every MAE/σ, angular summary value and
          below-mean count (the thesis' "平均" row is the mean of the per-subset values);

        where a block holds

        - ``n``: number of samples;
        - ``method1`` / ``method1_free``: ``mae_1, sigma_1, mae_2, sigma_2`` in thesis order /
          order-free (single crystals: ``method1`` with ``mae_1, sigma_1`` only);
        - ``method2_oracle`` / ``method2_oracle_free``: ``mae, sigma`` of the smaller error;
        - ``method2_score`` / ``method2_score_free`` (with ``scores``): ``mae, sigma`` of the
          head with the higher score;
        - ``below_mean``: for each of the above, the number of samples at or below the mean
          (Method 1: both heads at or below their MAE);
        - ``range``: ``[min, max]`` of ``method1_1``, ``method1_2``, ``method2_oracle`` etc.;
        - ``angular``: :func:`angular_summary` of ``grain_1``, ``grain_2`` and ``all`` (both
          heads pooled), each also with ``_free``; None without ``laue``.
    """
    p = _as_vectors("pred", pred)
    t = _as_vectors("true", true)
    if p.ndim == 2:
        p, t = p[:, None, :], t[:, None, :]
    if p.shape != t.shape or p.ndim != 3 or p.shape[1] not in (1, 2) or p.shape[0] == 0:
        raise EdorientError(
            f"pred and true must both have shape (n, 2, 3), (n, 1, 3) or (n, 3) with n > 0,"
            f" got {np.shape(pred)} and {np.shape(true)}"
        )
    n, k = p.shape[:2]
    s: np.ndarray | None = None
    if scores is not None:
        if k != 2:
            raise EdorientError("scores apply to bicrystal predictions (n, 2, 3) only")
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (n, 2):
            raise EdorientError(f"scores must have shape ({n}, 2), got {s.shape}")
    if subsets is None:
        subsets = [np.arange(n)]
    if len(subsets) == 0:
        raise EdorientError("subsets must hold at least one index array, or be None")
    idx_list = []
    for i, idx in enumerate(subsets):
        ix = np.asarray(idx)
        if ix.dtype == bool:
            ix = np.flatnonzero(ix)
        ix = ix.astype(np.int64).ravel()
        if ix.size == 0 or ix.min() < -n or ix.max() >= n:
            raise EdorientError(f"subset {i} must be a non-empty index array into 0..{n - 1}")
        idx_list.append(ix)

    blocks = [
        _evaluate_block(p[ix], t[ix], laue, None if s is None else s[ix]) for ix in idx_list
    ]
    union = np.unique(np.concatenate(idx_list) % n)
    pooled = _evaluate_block(p[union], t[union], laue, None if s is None else s[union])
    return {
        "n_grains": int(k),
        "n_subsets": len(blocks),
        "subsets": blocks,
        "mean": _mean_of(blocks),
        "all": pooled,
    }
