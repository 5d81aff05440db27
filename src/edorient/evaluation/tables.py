"""Tables of the evaluation results: markdown as the thesis lays them out, CSV and JSON.

The input is the dict of :func:`edorient.evaluation.metrics.evaluate_predictions`. Markdown
tables follow the thesis' Tables 3.1 (Method 1: rows subset 1..k and mean; columns MAE_1, σ_1,
MAE_2, σ_2) and 3.2 (Method 2 stage 1: MAE, σ), values to four decimals as the thesis prints
them. :data:`THESIS_REFERENCE` holds the thesis' own numbers to set beside ours.

Writers are atomic: they write a temporary file in the target folder and ``os.replace`` it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from edorient._utils.atomic import atomic_write_text
from edorient.errors import EdorientError

__all__ = [
    "THESIS_REFERENCE",
    "angular_table",
    "atomic_write_text",
    "comparison_table",
    "flatten_results",
    "format_value",
    "method1_table",
    "method2_table",
    "report_markdown",
    "write_csv",
    "write_json",
    "write_markdown",
]

_M1_COLS = ("mae_1", "sigma_1", "mae_2", "sigma_2")
_M1_HEAD = ("MAE_1", "σ_1", "MAE_2", "σ_2")
_M2_COLS = ("mae", "sigma")
_M2_HEAD = ("MAE", "σ")


def _m1(mae_1: float, sigma_1: float, mae_2: float, sigma_2: float) -> dict[str, float]:
    return {"mae_1": mae_1, "sigma_1": sigma_1, "mae_2": mae_2, "sigma_2": sigma_2}


def _m2(mae: float, sigma: float) -> dict[str, float]:
    return {"mae": mae, "sigma": sigma}


#: The thesis' own numbers (seed text, Tables 3.1-3.6, 4.1-4.16 and section 4.4), by
#: experiment. Each entry has ``source`` (the tables), ``description``, ``method1``
#: (``mae_1, sigma_1, mae_2, sigma_2``; the mean row where the table has subsets) and
#: ``method2`` (``mae, sigma``, stage 1); the pre-experiments also have the per-subset rows
#: ``method1_subsets`` and ``method2_subsets`` (test subsets 1-5 of 10,000 images).
#: ``concentration`` holds the error ranges and below-mean counts of the best models.
THESIS_REFERENCE: dict[str, Any] = {
    "pre1": {
        "source": "Tables 3.1, 3.2",
        "description": "pre-experiment 1: 100k train(+val), 500 epochs, 5 x 10k test",
        "method1_subsets": [
            _m1(0.2769, 0.5148, 0.2772, 0.5064),
            _m1(0.2939, 0.5430, 0.2960, 0.5491),
            _m1(0.2753, 0.5115, 0.2756, 0.5040),
            _m1(0.2900, 0.5366, 0.2824, 0.5121),
            _m1(0.2797, 0.5192, 0.2744, 0.4934),
        ],
        "method1": _m1(0.2832, 0.5250, 0.2811, 0.5130),
        "method2_subsets": [
            _m2(0.2031, 0.4022),
            _m2(0.2197, 0.4373),
            _m2(0.2018, 0.3956),
            _m2(0.2119, 0.4162),
            _m2(0.2029, 0.3978),
        ],
        "method2": _m2(0.2079, 0.4098),
    },
    "pre2_all_layers": {
        "source": "Tables 3.3, 3.4",
        "description": "pre-experiment 2 (i): fine-tuning over 4 more sets, all layers",
        "method1_subsets": [
            _m1(0.2657, 0.4885, 0.2705, 0.4755),
            _m1(0.2753, 0.4995, 0.2812, 0.4965),
            _m1(0.2589, 0.4733, 0.2674, 0.4712),
            _m1(0.2714, 0.4962, 0.2693, 0.4640),
            _m1(0.2685, 0.4915, 0.2732, 0.4783),
        ],
        "method1": _m1(0.2680, 0.4898, 0.2723, 0.4771),
        "method2_subsets": [
            _m2(0.1957, 0.3676),
            _m2(0.2057, 0.3873),
            _m2(0.1899, 0.3521),
            _m2(0.1965, 0.3636),
            _m2(0.1993, 0.3779),
        ],
        "method2": _m2(0.1974, 0.3697),
    },
    "pre2_dense_only": {
        "source": "Tables 3.5, 3.6",
        "description": "pre-experiment 2 (ii): fine-tuning over 4 more sets, dense layers only",
        "method1_subsets": [
            _m1(0.2432, 0.4753, 0.2342, 0.4549),
            _m1(0.2525, 0.4819, 0.2452, 0.4780),
            _m1(0.2389, 0.4589, 0.2335, 0.4462),
            _m1(0.2512, 0.4834, 0.2336, 0.4472),
            _m1(0.2473, 0.4706, 0.2337, 0.4417),
        ],
        "method1": _m1(0.2466, 0.4740, 0.2360, 0.4536),
        "method2_subsets": [
            _m2(0.1723, 0.3518),
            _m2(0.1810, 0.3693),
            _m2(0.1690, 0.3364),
            _m2(0.1743, 0.3484),
            _m2(0.1735, 0.3443),
        ],
        "method2": _m2(0.1740, 0.3500),
    },
    "exp1_random": {
        "source": "Tables 4.1, 4.2, 4.7, 4.8",
        "description": "experiment 1 (1): 5 random training subsets, 10k hold-out test",
        "method1": _m1(0.2325, 0.4382, 0.2211, 0.4335),
        "method2": _m2(0.1641, 0.3304),
    },
    "exp1_kmeans_i": {
        "source": "Tables 4.3, 4.4, 4.7, 4.8",
        "description": "experiment 1 (2): subsets balanced by K-means over all images",
        "method1": _m1(0.2311, 0.4467, 0.2348, 0.4343),
        "method2": _m2(0.1661, 0.3250),
    },
    "exp1_kmeans_ii": {
        "source": "Tables 4.5, 4.6, 4.7, 4.8",
        "description": "experiment 1 (3): subsets balanced by K-means per directory",
        "method1": _m1(0.2351, 0.4369, 0.2266, 0.4281),
        "method2": _m2(0.1729, 0.3454),
    },
    "exp2_equal": {
        "source": "Tables 4.9, 4.10",
        "description": "experiment 2 (4): five equal random subsets of 97,900",
        "method1": _m1(0.2292, 0.4470, 0.2302, 0.4396),
        "method2": _m2(0.1671, 0.3360),
    },
    "exp3_56": {
        "source": "Tables 4.11, 4.12",
        "description": "experiment 3 (5): all 489,500 at once, resized to 56 x 56",
        "method1": _m1(0.2880, 0.5646, 0.2956, 0.5656),
        "method2": _m2(0.2193, 0.4710),
    },
    "exp3_28": {
        "source": "Tables 4.11, 4.12",
        "description": "experiment 3 (6): all 489,500 at once, resized to 28 x 28",
        "method1": _m1(0.9669, 1.1678, 0.9858, 1.1667),
        "method2": _m2(0.4227, 0.6498),
    },
    "concentration": {
        "source": "Tables 4.15, 4.16 and section 4.4",
        "n_test": 10000,
        "method1_model": "exp1_kmeans_ii",
        "method1_range_1": (0.0013, 4.6315),
        "method1_range_2": (0.0018, 4.6691),
        "method1_below_mean": 7792,
        "method2_model": "exp1_kmeans_i",
        "method2_range": (0.0024, 3.9707),
        "method2_below_mean": 8170,
    },
}


# ----------------------------------------------------------------------------------------------
# Markdown


def format_value(value: Any, decimals: int = 4) -> str:
    """A number to ``decimals`` places as the thesis prints it; ints as is; None as "–"."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "nan"
    return f"{v:.{decimals}f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _get_block_entry(result: dict[str, Any], key: str) -> list[dict[str, float]]:
    try:
        return [b[key] for b in result["subsets"]]
    except KeyError as exc:
        have = sorted(k for k in result["subsets"][0] if k.startswith("method"))
        raise EdorientError(f"no {key!r} in the results; have {', '.join(have)}") from exc


def _subset_table(
    result: dict[str, Any],
    key: str,
    cols: tuple[str, ...],
    head: tuple[str, ...],
    decimals: int,
    include_all: bool,
) -> str:
    entries = _get_block_entry(result, key)
    cols = tuple(c for c in cols if c in entries[0])
    head = head[: len(cols)]
    rows = [
        [str(i + 1)] + [format_value(e[c], decimals) for c in cols] for i, e in enumerate(entries)
    ]
    rows.append(["mean"] + [format_value(result["mean"][key][c], decimals) for c in cols])
    if include_all:
        rows.append(["all"] + [format_value(result["all"][key][c], decimals) for c in cols])
    return _markdown(["subset", *head], rows)


def method1_table(
    result: dict[str, Any],
    key: str = "method1",
    decimals: int = 4,
    include_all: bool = False,
) -> str:
    """Method 1 as the thesis' Table 3.1: rows subset 1..k and mean; MAE_1 σ_1 MAE_2 σ_2.

    Parameters
    ----------
    result
        Output of :func:`~edorient.evaluation.metrics.evaluate_predictions`.
    key
        ``"method1"`` (thesis order) or ``"method1_free"`` (order-free).
    decimals
        Decimal places (the thesis prints 4).
    include_all
        Add a row ``all`` pooled over every test sample.

    Returns
    -------
    str
        A markdown table; the ``mean`` row is the mean of the subset rows (as the thesis).
    """
    return _subset_table(result, key, _M1_COLS, _M1_HEAD, decimals, include_all)


def method2_table(
    result: dict[str, Any],
    key: str = "method2_oracle",
    decimals: int = 4,
    include_all: bool = False,
) -> str:
    """Method 2 stage 1 as the thesis' Table 3.2: rows subset 1..k and mean; MAE σ.

    ``key`` is one of ``method2_oracle`` (the thesis' pick), ``method2_oracle_free``,
    ``method2_score`` or ``method2_score_free``.
    """
    return _subset_table(result, key, _M2_COLS, _M2_HEAD, decimals, include_all)


def angular_table(result: dict[str, Any], block: str = "all", decimals: int = 2) -> str:
    """Angular errors (degrees, modulo symmetry): one row per grain (and both together).

    ``block`` is ``"all"`` (pooled), ``"mean"`` (mean over subsets) or a subset number
    ``"1"``, ``"2"``, ...; shares are printed as percentages.
    """
    if block in ("all", "mean"):
        ang = result[block].get("angular")
    else:
        ang = result["subsets"][int(block) - 1].get("angular")
    if not ang:
        raise EdorientError("the results hold no angular errors; evaluate with a Laue group")
    keys = ("median", "mean", "p90", "p99")
    shares = [k for k in next(iter(ang.values())) if k.startswith("share_below_")]
    header = ["grain", "median (°)", "mean (°)", "p90 (°)", "p99 (°)"]
    header += ["< " + k[len("share_below_") : -3] + "° (%)" for k in shares]
    rows = []
    for grain, s in ang.items():
        row = [grain] + [format_value(s[k], decimals) for k in keys]
        row += [format_value(100.0 * s[k], 1) for k in shares]
        rows.append(row)
    return _markdown(header, rows)


def comparison_table(
    result: dict[str, Any],
    reference: str = "pre1",
    ours_method1: str = "method1",
    ours_method2: str = "method2_oracle",
    decimals: int = 4,
) -> str:
    """Our mean (and pooled) Method 1 / Method 2 numbers beside the thesis' own.

    Parameters
    ----------
    result
        Output of :func:`~edorient.evaluation.metrics.evaluate_predictions` (bicrystals).
    reference
        A key of :data:`THESIS_REFERENCE` other than ``concentration``.
    ours_method1, ours_method2
        Which of our entries to show.

    Returns
    -------
    str
        Markdown: rows ``thesis <reference> (<tables>)``, ``ours (mean)``, ``ours (all)``;
        columns MAE_1 σ_1 MAE_2 σ_2 (Method 1) and MAE σ (Method 2 stage 1).
    """
    valid = [k for k in THESIS_REFERENCE if k != "concentration"]
    if reference not in valid:
        raise EdorientError(f"reference must be one of {', '.join(valid)}; got {reference!r}")
    ref = THESIS_REFERENCE[reference]
    header = ["", *_M1_HEAD, *_M2_HEAD]

    def row(label: str, m1: dict[str, float] | None, m2: dict[str, float] | None) -> list[str]:
        return (
            [label]
            + [format_value(None if m1 is None else m1.get(c), decimals) for c in _M1_COLS]
            + [format_value(None if m2 is None else m2.get(c), decimals) for c in _M2_COLS]
        )

    rows = [row(f"thesis {reference} ({ref['source']})", ref["method1"], ref["method2"])]
    for block in ("mean", "all"):
        rows.append(
            row(
                f"ours ({block})",
                result[block].get(ours_method1),
                result[block].get(ours_method2),
            )
        )
    return _markdown(header, rows)


def report_markdown(
    result: dict[str, Any], reference: str | None = "pre1", title: str | None = None
) -> str:
    """Every table of one evaluation as one markdown document."""
    parts: list[str] = []
    if title:
        parts.append(f"# {title}\n")
    n_total = result["all"]["n"]
    parts.append(f"{result['n_subsets']} test subset(s), {n_total} samples in all.\n")
    first = result["subsets"][0]
    for key in ("method1", "method1_free"):
        if key in first:
            parts.append(f"## Method 1 ({key})\n\n" + method1_table(result, key, include_all=True))
    for key in ("method2_oracle", "method2_oracle_free", "method2_score", "method2_score_free"):
        if key in first:
            parts.append(
                f"## Method 2 stage 1 ({key})\n\n" + method2_table(result, key, include_all=True)
            )
    if first.get("angular"):
        parts.append("## Angular errors modulo symmetry (all)\n\n" + angular_table(result))
    below = result["all"]["below_mean"]
    rng = result["all"]["range"]
    lines = [f"- {k}: {v} of {n_total} at or below the mean" for k, v in below.items()]
    lines += [f"- range {k}: {format_value(a)} – {format_value(b)}" for k, (a, b) in rng.items()]
    parts.append("## Error concentration (all)\n\n" + "\n".join(lines) + "\n")
    if reference is not None and result["n_grains"] == 2:
        parts.append(
            f"## Against the thesis ({reference})\n\n" + comparison_table(result, reference)
        )
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Flat rows, CSV, JSON


def flatten_results(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per block (subset 1..k, ``mean``, ``all``), keys joined by ``.``.

    Ranges ``[min, max]`` become ``range.<name>.min`` / ``.max``; a None entry is left out.
    """

    def flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}" if prefix else str(k), v, out)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and prefix.startswith("range"):
            out[f"{prefix}.min"], out[f"{prefix}.max"] = value
        elif value is not None:
            out[prefix] = value

    rows: list[dict[str, Any]] = []
    labelled = [(str(i + 1), b) for i, b in enumerate(result["subsets"])]
    labelled += [("mean", result["mean"]), ("all", result["all"])]
    for label, block in labelled:
        row: dict[str, Any] = {"subset": label}
        flat("", block, row)
        rows.append(row)
    return rows


def write_csv(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`flatten_results` as CSV (atomic); returns the path."""
    rows = flatten_results(result)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the results as indented JSON (atomic; NaN as ``NaN``); returns the path."""
    text = json.dumps(result, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    return atomic_write_text(path, text)


def write_markdown(
    result: dict[str, Any],
    path: str | os.PathLike,
    reference: str | None = "pre1",
    title: str | None = None,
) -> Path:
    """Write :func:`report_markdown` (atomic); returns the path."""
    return atomic_write_text(path, report_markdown(result, reference=reference, title=title))
