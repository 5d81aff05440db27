"""Metric functions against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.evaluation.metrics import (
    angular_errors,
    angular_errors_pairs,
    angular_summary,
    count_below_mean,
    error_range,
    evaluate_predictions,
    mae_sigma,
    method1_errors,
    method2_oracle,
    method2_pick_by_score,
    select_heads,
    thesis_errors,
    worst_indices,
)


# ---------------------------------------------------------------------------------------------
# A stand-in for edorient.physics.symmetry.LaueGroup: 4/mmm built here, by hand.


class Stand4mmm:
    """The 16 operations of 4/mmm: signed permutations of (x, y) times z -> ±z."""

    def __init__(self) -> None:
        ops = []
        for perm in ((0, 1), (1, 0)):
            for sx, sy, sz in itertools.product((1, -1), repeat=3):
                m = np.zeros((3, 3))
                m[0, perm[0]] = sx
                m[1, perm[1]] = sy
                m[2, 2] = sz
                ops.append(m)
        self.ops = np.array(ops)
        assert len(self.ops) == 16

    def angle(self, a, b, degrees=True):
        a = np.asarray(a, float)
        b = np.asarray(b, float)
        a = a / np.linalg.norm(a, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
        ga = np.einsum("gij,...j->...gi", self.ops, a)  # every image of a
        cos = np.einsum("...gi,...i->...g", ga, b).max(axis=-1)
        ang = np.arccos(np.clip(cos, -1.0, 1.0))
        return np.degrees(ang) if degrees else ang


class ScalarOnly4mmm(Stand4mmm):
    """Same group, but angle() accepts single vectors only (tests the row-by-row fallback)."""

    def angle(self, a, b, degrees=True):
        if np.ndim(a) != 1:
            raise TypeError("single vectors only")
        return float(super().angle(a, b, degrees))


LAUE = Stand4mmm()


# ---------------------------------------------------------------------------------------------
# eq. 3.1-3.3


def test_thesis_errors_hand_values():
    pred = np.array([[0.1, 0.2, 0.9], [0.5, -0.5, 0.7]])
    true = np.array([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8]])
    # row 0: 0.1 + 0.2 + 0.1 = 0.4 ; row 1: 0.1 + 0.5 + 0.1 = 0.7
    np.testing.assert_allclose(thesis_errors(pred, true), [0.4, 0.7], atol=1e-12)


def test_thesis_errors_not_normalised():
    # The thesis compares the raw output: [2, 0, 0] vs [1, 0, 0] is 1, not 0.
    assert thesis_errors([2.0, 0.0, 0.0], [1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_mae_sigma_population_sigma():
    a = [0.1, 0.2, 0.3, 0.6]
    # MAE = 1.2 / 4 = 0.3 ; deviations -0.2 -0.1 0 0.3 ; squares 0.04 0.01 0 0.09 = 0.14
    # sigma = sqrt(0.14 / 4) = sqrt(0.035) = 0.18708287 (divisor n, eq. 3.3; n-1 gives 0.216)
    mae, sigma = mae_sigma(a)
    assert mae == pytest.approx(0.3)
    assert sigma == pytest.approx(0.18708286933869706)


def test_mae_sigma_empty_raises():
    with pytest.raises(EdorientError):
        mae_sigma([])


# ---------------------------------------------------------------------------------------------
# Method 1


A = [0.0, 0.0, 1.0]
B = [1.0, 0.0, 0.0]


def _method1_case():
    true = np.array([[A, B], [A, B], [A, B], [A, [0.0, 1.0, 0.0]]])
    pred = np.array(
        [
            [B, A],  # heads swapped: thesis 2 and 2, free 0 and 0
            [[0.0, 0.1, 0.9], [0.8, 0.0, 0.0]],  # same 0.2+0.2, swap 2.0+1.8: keep
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # tie (1+1 either way): keep thesis order
            [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]],  # same 1.0+0, swap 1.0+2.0: keep
        ]
    )
    return pred, true


def test_method1_thesis_order():
    pred, true = _method1_case()
    # sample 0: head 1 = B vs A: 1+0+1 = 2 ; head 2 = A vs B: 2
    # sample 1: [0,.1,.9] vs A: 0+.1+.1 = .2 ; [.8,0,0] vs B: .2
    # sample 2: 0 vs A: 1 ; 0 vs B: 1
    # sample 3: [0,.5,.5] vs A: 0+.5+.5 = 1 ; [0,1,0] vs [0,1,0]: 0
    expected = [[2.0, 2.0], [0.2, 0.2], [1.0, 1.0], [1.0, 0.0]]
    np.testing.assert_allclose(method1_errors(pred, true), expected, atol=1e-12)


def test_method1_order_free():
    pred, true = _method1_case()
    err, swapped = method1_errors(pred, true, order="free", return_swapped=True)
    expected = [[0.0, 0.0], [0.2, 0.2], [1.0, 1.0], [1.0, 0.0]]
    np.testing.assert_allclose(err, expected, atol=1e-12)
    assert swapped.tolist() == [True, False, False, False]


def test_method1_free_uses_summed_error_not_each_head():
    # head 1 alone would prefer B (0.1 < 1.9), but the summed error prefers the thesis order
    true = np.array([[A, B]])
    pred = np.array([[[0.9, 0.0, 0.0], B]])
    # head 1 [.9,0,0] vs A: .9+0+1 = 1.9 ; vs B: .1 ; head 2 = B vs B: 0 ; vs A: 2
    # same = 1.9 + 0 = 1.9 ; swap = 0.1 + 2 = 2.1 -> keep the thesis order
    np.testing.assert_allclose(method1_errors(pred, true, order="free"), [[1.9, 0.0]])


def test_method1_bad_order_lists_options():
    pred, true = _method1_case()
    with pytest.raises(EdorientError, match="thesis, free"):
        method1_errors(pred, true, order="best")


def test_method1_bad_shape():
    with pytest.raises(EdorientError):
        method1_errors(np.zeros((3, 2, 3)), np.zeros((3, 1, 3)))


# ---------------------------------------------------------------------------------------------
# Method 2 stage 1


def test_method2_oracle_keeps_smaller_error():
    errors = [[0.3, 0.1], [0.2, 0.5], [0.4, 0.4]]
    kept, head = method2_oracle(errors)
    # row 0 -> head 1 (0.1) ; row 1 -> head 0 (0.2) ; row 2 tie -> head 0 (0.4)
    np.testing.assert_allclose(kept, [0.1, 0.2, 0.4])
    assert head.tolist() == [1, 0, 0]
    mae, sigma = mae_sigma(kept)
    # MAE = 0.7 / 3 = 0.233333 ; deviations -.133333 -.033333 .166667
    # squares .0177778 .0011111 .0277778 = .0466667 / 3 = .0155556 -> sigma = .124722
    assert mae == pytest.approx(0.7 / 3)
    assert sigma == pytest.approx(0.12472191289246472)


def test_method2_pick_by_score_highest_score():
    assert method2_pick_by_score([[0.1, 0.9], [0.7, 0.2], [0.5, 0.5]]).tolist() == [1, 0, 0]


def test_select_heads():
    assert select_heads([[1.0, 2.0], [3.0, 4.0]], [1, 0]).tolist() == [2.0, 3.0]


# ---------------------------------------------------------------------------------------------
# Angular errors


def test_angular_errors_known_cases():
    pred = np.array(
        [
            [1.0, 0.0, 0.0],  # vs [110]: 45 degrees
            [1.0, 0.0, 1.0],  # vs [-10-1]: 0 (inversion)
            [0.0, 1.0, 0.0],  # vs [100]: 0 (four-fold axis)
            [0.0, 0.0, 5.0],  # vs [001]: 0 after normalising
            [2.0, 0.0, 0.0],  # vs [001]: 90
            [1.0, 1.0, 1.0],  # vs [110]: arccos(2 / sqrt(6)) = 35.2644 degrees
        ]
    )
    true = np.array(
        [
            [1.0, 1.0, 0.0] / np.sqrt(2),
            [-1.0, 0.0, -1.0] / np.sqrt(2),
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0] / np.sqrt(2),
        ]
    )
    expected = [45.0, 0.0, 0.0, 0.0, 90.0, 35.26438968275465]
    np.testing.assert_allclose(angular_errors(pred, true, LAUE), expected, atol=1e-6)
    # the same through a group whose angle() takes one vector at a time
    np.testing.assert_allclose(angular_errors(pred, true, ScalarOnly4mmm()), expected, atol=1e-6)


def test_angular_errors_keep_leading_shape_and_zero_gives_nan():
    pred = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    true = np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    out = angular_errors(pred, true, LAUE)
    assert out.shape == (1, 2)
    assert out[0, 0] == pytest.approx(45.0)
    assert np.isnan(out[0, 1])


def test_angular_errors_pairs_free():
    true = np.array([[A, B]])
    pred = np.array([[B, A]])  # swapped heads: 90 and 90 in thesis order, 0 and 0 free
    np.testing.assert_allclose(angular_errors_pairs(pred, true, LAUE), [[90.0, 90.0]], atol=1e-6)
    np.testing.assert_allclose(
        angular_errors_pairs(pred, true, LAUE, order="free"), [[0.0, 0.0]], atol=1e-6
    )


def test_angular_summary_hand_values():
    s = angular_summary([0.5, 1.5, 3.0, 10.0])
    # sorted 0.5 1.5 3 10: median (1.5 + 3) / 2 = 2.25 ; mean 15 / 4 = 3.75
    # p90: position 0.9 * 3 = 2.7 -> 3 + 0.7 * (10 - 3) = 7.9 ; p99: 2.97 -> 3 + 0.97 * 7 = 9.79
    # below 1: 1/4 ; below 2: 2/4 ; below 5: 3/4
    assert s["n"] == 4
    assert s["median"] == pytest.approx(2.25)
    assert s["mean"] == pytest.approx(3.75)
    assert s["p90"] == pytest.approx(7.9)
    assert s["p99"] == pytest.approx(9.79)
    assert s["share_below_1deg"] == pytest.approx(0.25)
    assert s["share_below_2deg"] == pytest.approx(0.5)
    assert s["share_below_5deg"] == pytest.approx(0.75)


def test_angular_summary_threshold_is_strict():
    # exactly 1 degree is not below 1 degree
    assert angular_summary([1.0, 1.0])["share_below_1deg"] == 0.0


# ---------------------------------------------------------------------------------------------
# Error concentration


def test_count_below_mean_inclusive():
    # mean of 1, 2, 3 is 2: "平均以下" (at or below) counts 1 and 2
    assert count_below_mean([1.0, 2.0, 3.0]) == 2
    # mean 2.5 of 0, 0, 0, 10 -> 3 of 4 ; a minority of large outliers pulls the mean up
    assert count_below_mean([0.0, 0.0, 0.0, 10.0]) == 3


def test_count_below_mean_both_columns():
    a = [[1.0, 5.0], [2.0, 1.0], [6.0, 3.0]]
    # column means: (1+2+6)/3 = 3 and (5+1+3)/3 = 3
    # row 0: 1 <= 3 but 5 > 3 -> no ; row 1: yes ; row 2: 6 > 3 -> no
    assert count_below_mean(a) == 1


def test_error_range():
    assert error_range([0.5, 0.1, 2.0]) == (0.1, 2.0)


def test_worst_indices():
    assert worst_indices([0.1, 0.9, 0.5, 0.7], 3).tolist() == [1, 3, 2]
    # two columns ranked by the row sum: 1.0, 0.3, 2.0
    assert worst_indices([[0.5, 0.5], [0.1, 0.2], [1.0, 1.0]], 2).tolist() == [2, 0]
    assert worst_indices([0.1, np.nan, 0.5], 1).tolist() == [1]


# ---------------------------------------------------------------------------------------------
# evaluate_predictions


def _eval_case():
    true = np.array([[A, B]] * 4)
    pred = np.array(
        [
            [A, B],  # thesis [0, 0]
            [[0.5, 0.0, 1.0], B],  # head 1 vs A: 0.5 ; vs B: 0.5+0+1 = 1.5 -> [0.5, 0]
            [B, A],  # thesis [2, 2], free [0, 0]
            [A, [1.0, 0.5, 0.0]],  # head 2 vs B: 0.5 ; vs A: 1+0.5+1 = 2.5 -> [0, 0.5]
        ]
    )
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    subsets = [np.array([0, 1]), np.array([2, 3])]
    return pred, true, scores, subsets


def test_evaluate_method1_per_subset_mean_and_pooled():
    pred, true, scores, subsets = _eval_case()
    r = evaluate_predictions(pred, true, LAUE, subsets=subsets, scores=scores)
    assert r["n_grains"] == 2 and r["n_subsets"] == 2
    s1, s2 = r["subsets"]
    # subset 1: head 1 [0, .5] -> MAE .25, sigma .25 ; head 2 [0, 0] -> 0, 0
    assert s1["method1"] == pytest.approx(
        {"mae_1": 0.25, "sigma_1": 0.25, "mae_2": 0.0, "sigma_2": 0.0}
    )
    # subset 2: head 1 [2, 0] -> 1, 1 ; head 2 [2, .5] -> 1.25, .75
    assert s2["method1"] == pytest.approx(
        {"mae_1": 1.0, "sigma_1": 1.0, "mae_2": 1.25, "sigma_2": 0.75}
    )
    # the mean row is the mean of the subset values: (.25+1)/2, (.25+1)/2, (0+1.25)/2, (0+.75)/2
    assert r["mean"]["method1"] == pytest.approx(
        {"mae_1": 0.625, "sigma_1": 0.625, "mae_2": 0.625, "sigma_2": 0.375}
    )
    # pooled head 1 [0, .5, 2, 0]: MAE .625 ; squares .390625 .015625 1.890625 .390625
    # = 2.6875 / 4 = .671875 -> sigma .8196798 (differs from the mean of subset sigmas)
    assert r["all"]["method1"]["mae_1"] == pytest.approx(0.625)
    assert r["all"]["method1"]["sigma_1"] == pytest.approx(0.671875**0.5)
    # order-free: subset 2 becomes head 1 [0, 0], head 2 [0, .5]
    assert r["subsets"][1]["method1_free"] == pytest.approx(
        {"mae_1": 0.0, "sigma_1": 0.0, "mae_2": 0.25, "sigma_2": 0.25}
    )


def test_evaluate_method2():
    pred, true, scores, subsets = _eval_case()
    r = evaluate_predictions(pred, true, LAUE, subsets=subsets, scores=scores)
    s1, s2 = r["subsets"]
    # oracle: min per sample 0, 0 | 2, 0
    assert s1["method2_oracle"] == pytest.approx({"mae": 0.0, "sigma": 0.0})
    assert s2["method2_oracle"] == pytest.approx({"mae": 1.0, "sigma": 1.0})
    assert r["mean"]["method2_oracle"] == pytest.approx({"mae": 0.5, "sigma": 0.5})
    # by score: heads 0, 0 | 1, 1 -> errors 0, .5 | 2, .5
    assert s1["method2_score"] == pytest.approx({"mae": 0.25, "sigma": 0.25})
    assert s2["method2_score"] == pytest.approx({"mae": 1.25, "sigma": 0.75})
    # by score, order-free: sample 2's head 2 matches A: 0 -> 0, .5
    assert s2["method2_score_free"] == pytest.approx({"mae": 0.25, "sigma": 0.25})


def test_evaluate_concentration_and_angular():
    pred, true, scores, subsets = _eval_case()
    r = evaluate_predictions(pred, true, LAUE, subsets=subsets, scores=scores)
    al = r["all"]
    # head means .625 and .625 ; rows (0,0) (.5,0) (2,2) (0,.5): all but row 2 -> 3
    assert al["below_mean"]["method1"] == 3
    # oracle kept 0, 0, 2, 0: mean .5 -> 3
    assert al["below_mean"]["method2_oracle"] == 3
    assert al["range"]["method1_1"] == [0.0, 2.0]
    assert al["range"]["method1_2"] == [0.0, 2.0]
    # angles, thesis order: head 1: 0, atan(.5) = 26.5651, 90, 0 ; head 2: 0, 0, 90, 26.5651
    t = 26.56505117707799
    assert al["angular"]["grain_1"]["mean"] == pytest.approx((t + 90.0) / 4)
    # head 2 sorted 0, 0, t, 90: median (0 + t) / 2
    assert al["angular"]["grain_2"]["median"] == pytest.approx(t / 2)
    assert al["angular"]["all"]["n"] == 8
    # order-free: sample 2 becomes 0, 0 -> mean over 8 = 2t / 8
    assert al["angular"]["all_free"]["mean"] == pytest.approx(2 * t / 8)
    # subset 1 head 1 angles 0 and t -> share below 1 degree 1/2
    assert r["subsets"][0]["angular"]["grain_1"]["share_below_1deg"] == pytest.approx(0.5)


def test_evaluate_without_subsets_laue_or_scores():
    pred, true, _, _ = _eval_case()
    r = evaluate_predictions(pred, true)
    assert r["n_subsets"] == 1
    assert r["subsets"][0]["angular"] is None
    assert "method2_score" not in r["subsets"][0]
    # one subset: mean == that subset == pooled (head 1 MAE .625 as above)
    assert r["mean"]["method1"]["mae_1"] == pytest.approx(0.625)
    assert r["all"]["method1"]["mae_1"] == pytest.approx(0.625)


def test_evaluate_single_crystal():
    pred = np.array([[0.0, 0.1, 0.9], [1.0, 0.0, 0.0]])
    true = np.array([A, A])
    r = evaluate_predictions(pred, true, LAUE)
    # errors .2 and 2 -> MAE 1.1, sigma .9
    assert r["n_grains"] == 1
    assert r["all"]["method1"] == pytest.approx({"mae_1": 1.1, "sigma_1": 0.9})
    assert "method2_oracle" not in r["all"]


def test_evaluate_rejects_bad_input():
    pred, true, scores, _ = _eval_case()
    with pytest.raises(EdorientError):
        evaluate_predictions(pred, true[:3])
    with pytest.raises(EdorientError):
        evaluate_predictions(pred, true, scores=scores[:2])
    with pytest.raises(EdorientError):
        evaluate_predictions(pred, true, subsets=[np.array([0, 9])])


def test_angular_errors_with_the_package_laue_group():
    # the real 4/mmm of edorient.physics.symmetry must agree with the stand-in's known cases
    symmetry = pytest.importorskip("edorient.physics.symmetry")
    g = symmetry.laue_group("4/mmm")
    pred = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    true = np.array([[1.0, 1.0, 0.0], [-1.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = angular_errors(pred, true, g)
    np.testing.assert_allclose(out[[0, 1, 3]], [45.0, 0.0, 90.0], atol=1e-6)
    assert np.isnan(out[2])  # a zero prediction gives NaN, not an error for the whole batch


def test_angular_summary_nan():
    s = angular_summary([1.5, np.nan, 0.5, 3.0])
    # finite 0.5 1.5 3: median 1.5, mean 5/3 ; below 1 degree: 1 of all 4
    assert s["n"] == 4 and s["n_nan"] == 1
    assert s["median"] == pytest.approx(1.5)
    assert s["mean"] == pytest.approx(5.0 / 3.0)
    assert s["share_below_1deg"] == pytest.approx(0.25)


class BrokenBatch4mmm(Stand4mmm):
    """A group whose vectorised angle() has a bug (not a single-vectors-only signature)."""

    def angle(self, a, b, degrees=True):
        if np.ndim(a) != 1:
            raise RuntimeError("bug in the batched path")
        return super().angle(a, b, degrees)


def test_angular_errors_surface_unexpected_errors_of_angle():
    # only the errors of a single-vectors-only angle() fall back to row by row; a bug surfaces
    pred = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(RuntimeError, match="batched path"):
        angular_errors(pred, pred, BrokenBatch4mmm())
