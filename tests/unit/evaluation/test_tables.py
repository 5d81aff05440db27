"""Tables: thesis layout, four decimals, mean row = mean of subset rows, writers, references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.evaluation.metrics import evaluate_predictions
from edorient.evaluation.tables import (
    THESIS_REFERENCE,
    angular_table,
    comparison_table,
    flatten_results,
    format_value,
    method1_table,
    method2_table,
    report_markdown,
    write_csv,
    write_json,
    write_markdown,
)

A = [0.0, 0.0, 1.0]
B = [1.0, 0.0, 0.0]


class Plain:
    """No symmetry at all: the plain angle (enough to fill the angular entries)."""

    def angle(self, a, b, degrees=True):
        c = np.clip(np.sum(np.asarray(a) * np.asarray(b), axis=-1), -1, 1)
        return np.degrees(np.arccos(c))


@pytest.fixture()
def result():
    # the case of test_metrics: per-sample thesis errors (head 1, head 2)
    # (0, 0), (.5, 0) | (2, 2), (0, .5)
    true = np.array([[A, B]] * 4)
    pred = np.array([[A, B], [[0.5, 0.0, 1.0], B], [B, A], [A, [1.0, 0.5, 0.0]]])
    return evaluate_predictions(pred, true, Plain(), subsets=[np.arange(2), np.arange(2, 4)])


def _rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_format_value_four_decimals():
    assert format_value(0.5) == "0.5000"
    assert format_value(0.28316) == "0.2832"
    assert format_value(1) == "1"
    assert format_value(None) == "–"
    assert format_value(float("nan")) == "nan"


def test_method1_table_layout(result):
    rows = _rows(method1_table(result))
    assert rows[0] == ["subset", "MAE_1", "σ_1", "MAE_2", "σ_2"]
    assert rows[1][0] == "---"
    # subset 1: head 1 (0, .5) -> .25 .25 ; head 2 (0, 0) -> 0 0
    assert rows[2] == ["1", "0.2500", "0.2500", "0.0000", "0.0000"]
    # subset 2: head 1 (2, 0) -> 1 1 ; head 2 (2, .5) -> 1.25 .75
    assert rows[3] == ["2", "1.0000", "1.0000", "1.2500", "0.7500"]
    # mean row = mean of the subset rows, not the pooled numbers (pooled sigma_1 is .8197)
    assert rows[4] == ["mean", "0.6250", "0.6250", "0.6250", "0.3750"]
    assert len(rows) == 5


def test_method1_table_with_pooled_row(result):
    rows = _rows(method1_table(result, include_all=True))
    # pooled head 1 (0, .5, 2, 0): sigma sqrt(2.6875 / 4) = 0.81968 ; head 2 (0, 0, 2, .5):
    # MAE .625, squares .390625 .390625 1.890625 .015625 -> same sigma .81968
    assert rows[-1] == ["all", "0.6250", "0.8197", "0.6250", "0.8197"]


def test_method2_table_layout(result):
    rows = _rows(method2_table(result))
    assert rows[0] == ["subset", "MAE", "σ"]
    # oracle min errors: (0, 0) | (2, 0) -> 0 0 | 1 1 ; mean .5 .5
    assert rows[2:] == [["1", "0.0000", "0.0000"], ["2", "1.0000", "1.0000"],
                        ["mean", "0.5000", "0.5000"]]


def test_unknown_key_raises(result):
    with pytest.raises(EdorientError, match="method2_score"):
        method2_table(result, key="method2_score")


def test_angular_table(result):
    rows = _rows(angular_table(result))
    assert rows[0][:5] == ["grain", "median (°)", "mean (°)", "p90 (°)", "p99 (°)"]
    names = [r[0] for r in rows[2:]]
    assert names == ["grain_1", "grain_2", "all", "grain_1_free", "grain_2_free", "all_free"]
    # grain_1 plain angles 0, atan(.5) = 26.57, 90, 0: share below 1 degree 2/4 = 50.0 %
    g1 = rows[2]
    assert g1[header_index(rows, "< 1° (%)")] == "50.0"


def header_index(rows, name):
    return rows[0].index(name)


def test_thesis_reference_means_match_subsets():
    # transcription check: the stated means are the means of the subset rows (to rounding)
    for key in ("pre1", "pre2_all_layers", "pre2_dense_only"):
        ref = THESIS_REFERENCE[key]
        for rows, mean in ((ref["method1_subsets"], ref["method1"]),
                           (ref["method2_subsets"], ref["method2"])):
            assert len(rows) == 5
            for col, value in mean.items():
                assert np.mean([r[col] for r in rows]) == pytest.approx(value, abs=6e-5), (key, col)


def test_thesis_reference_values():
    assert THESIS_REFERENCE["pre1"]["method1"] == {
        "mae_1": 0.2832, "sigma_1": 0.5250, "mae_2": 0.2811, "sigma_2": 0.5130}
    assert THESIS_REFERENCE["pre1"]["method2"] == {"mae": 0.2079, "sigma": 0.4098}
    assert THESIS_REFERENCE["exp3_28"]["method1"]["mae_1"] == 0.9669
    assert THESIS_REFERENCE["concentration"]["method1_below_mean"] == 7792
    assert THESIS_REFERENCE["concentration"]["method2_below_mean"] == 8170


def test_comparison_table(result):
    rows = _rows(comparison_table(result, "pre1"))
    assert rows[0] == ["", "MAE_1", "σ_1", "MAE_2", "σ_2", "MAE", "σ"]
    assert rows[2][1:] == ["0.2832", "0.5250", "0.2811", "0.5130", "0.2079", "0.4098"]
    assert rows[3] == ["ours (mean)", "0.6250", "0.6250", "0.6250", "0.3750", "0.5000", "0.5000"]
    assert rows[4][0] == "ours (all)"
    with pytest.raises(EdorientError):
        comparison_table(result, "concentration")


def test_flatten_and_csv(tmp_path, result):
    flat = flatten_results(result)
    assert [r["subset"] for r in flat] == ["1", "2", "mean", "all"]
    assert flat[1]["method1.mae_2"] == pytest.approx(1.25)
    assert flat[3]["range.method1_1.max"] == pytest.approx(2.0)
    path = write_csv(result, tmp_path / "out" / "r.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["subset"] for r in rows] == ["1", "2", "mean", "all"]
    assert float(rows[2]["method1.sigma_2"]) == pytest.approx(0.375)
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.csv"]  # no temp file left


def test_json_round_trip(tmp_path, result):
    path = write_json(result, tmp_path / "r.json")
    back = json.loads(path.read_text())
    assert back["mean"]["method1"]["mae_1"] == pytest.approx(0.625)
    assert back["subsets"][1]["method2_oracle"]["sigma"] == pytest.approx(1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_write_replaces_existing(tmp_path, result):
    path = tmp_path / "r.md"
    path.write_text("old")
    write_markdown(result, path, title="run")
    text = path.read_text()
    assert text.startswith("# run")
    assert "## Method 1 (method1)" in text and "0.2832" in text


def test_report_without_reference(result):
    text = report_markdown(result, reference=None)
    assert "Against the thesis" not in text
    assert "at or below the mean" in text
