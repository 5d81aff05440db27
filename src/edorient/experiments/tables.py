"""Tables 3.1-3.9 and 4.1-4.14 of ``edorient reproduce``, the thesis' conclusions checked on
our numbers, and ``summary.md``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edorient.experiments.plan import (
    _BY_EXPERIMENT,
    CH4_MODELS,
    EPOCHS_FIRST,
    EPOCHS_LATER,
    THESIS_AFTER_SUBSET1,
    THESIS_TABLE_3_9,
    Plan,
    ReproduceConfig,
    scaled_epochs,
)


def _write_json(path: Path, obj) -> None:
    from edorient.evaluation.tables import write_json

    write_json(obj, path)

# -- tables ------------------------------------------------------------------------------------
M1 = ("mae_1", "sigma_1", "mae_2", "sigma_2")
M2 = ("mae", "sigma")
H1 = ["MAE_1", "σ_1", "MAE_2", "σ_2"]
H2 = ["MAE", "σ"]
#: Our Method 1 / Method 2 entries (order-free: the model was trained order-free).
OURS_M1, OURS_M2 = "method1_free", "method2_oracle_free"


def _f(v) -> str:
    from edorient.evaluation.tables import format_value

    return format_value(v)


@dataclass
class Table:
    """One thesis table: number (``"3.1"``), title, header, rows of strings, notes."""

    number: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"**Table {self.number}.** {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


def _subset_rows(res: dict, key: str, cols) -> list[list[str]]:
    rows = [[str(i + 1)] + [_f(b[key][c]) for c in cols] for i, b in enumerate(res["subsets"])]
    rows.append(["mean"] + [_f(res["mean"][key][c]) for c in cols])
    return rows


def _ref_row(label: str, entry: dict | None, cols) -> list[str]:
    return [label] + [_f(None if entry is None else entry.get(c)) for c in cols]


def write_tables(folder: Path, tables: list[Table], heading: str, preamble: str = "") -> str:
    """``tables.md``, ``tables.json`` and ``table_<n>.csv`` per table in ``folder``."""
    import csv
    import io

    from edorient.evaluation.tables import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    md = f"# {heading}\n\n" + (preamble + "\n\n" if preamble else "") + "\n".join(t.markdown() for t in tables)
    atomic_write_text(folder / "tables.md", md)
    _write_json(folder / "tables.json", [dataclasses.asdict(t) for t in tables])
    for t in tables:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(t.header)
        w.writerows(t.rows)
        atomic_write_text(folder / f"table_{t.number.replace('.', '_')}.csv", buf.getvalue())
    return md


def _history(run: Path) -> list[dict[str, str]]:
    import csv

    path = Path(run) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _train_size(run: Path) -> int | None:
    path = Path(run) / "config.json"
    return int(json.loads(path.read_text())["train_size"]) if path.is_file() else None


def _epoch_times(run: Path) -> list[float]:
    """Seconds per full pass over a stage's training images (training only, from the measured
    images/s, so an epoch cut short by the time limit counts at full length)."""
    n = _train_size(run)
    if not n:
        return []
    return [n / float(r["train_images_per_s"]) for r in _history(run) if float(r["train_images_per_s"]) > 0]


def pre_epoch_times(out: Path, key: str) -> tuple[float, float] | None:
    """Mean seconds per epoch of pre-experiment ``key``'s stages 2-4 and of its stage 5 (Table
    3.9), or None where either is unmeasured."""
    times = [_epoch_times(out / "pre" / key / f"stage_{k:02d}") for k in range(2, 6)]
    mid = [x for ts in times[:3] for x in ts]
    last = times[3]
    return (float(np.mean(mid)), float(np.mean(last))) if mid and last else None


def pre_tables(out: Path, results: dict[str, dict]) -> list[Table]:
    """Tables 3.1-3.9 from the evaluations of ``pre1``, ``pre2_all_layers``, ``pre2_dense_only``."""
    from edorient.evaluation.tables import THESIS_REFERENCE as REF

    t: list[Table] = []
    names = (("pre1", "3.1", "3.2", "pre-experiment 1, model 1"),
             ("pre2_all_layers", "3.3", "3.4", "pre-experiment 2 (i), all layers retrained, model 5"),
             ("pre2_dense_only", "3.5", "3.6", "pre-experiment 2 (ii), dense layers only, model 5"))
    for key, n1, n2, what in names:
        r = results[key]
        ref = REF[key]
        rows = _subset_rows(r, OURS_M1, M1) + [_ref_row("thesis mean", ref["method1"], M1)]
        t.append(Table(n1, f"Method 1, {what} (test subsets)", ["test subset", *H1], rows))
        rows = _subset_rows(r, OURS_M2, M2) + [_ref_row("thesis mean", ref["method2"], M2)]
        t.append(Table(n2, f"Method 2 stage 1, {what}", ["test subset", *H2], rows))
    lab = {"pre1": "1", "pre2_all_layers": "2 (i)", "pre2_dense_only": "2 (ii)"}
    rows, rows2 = [], []
    for key, _, _, _ in names:
        rows.append([lab[key]] + [_f(results[key]["mean"][OURS_M1][c]) for c in M1]
                    + [_f(REF[key]["method1"][c]) for c in M1])
        rows2.append([lab[key]] + [_f(results[key]["mean"][OURS_M2][c]) for c in M2]
                     + [_f(REF[key]["method2"][c]) for c in M2])
    t.append(Table("3.7", "Method 1, means over the test subsets (ours | thesis)",
                   ["pre-experiment", *H1, *(f"thesis {h}" for h in H1)], rows))
    t.append(Table("3.8", "Method 2 stage 1, means (ours | thesis)",
                   ["pre-experiment", *H2, *(f"thesis {h}" for h in H2)], rows2))
    rows = []
    for key in ("pre2_all_layers", "pre2_dense_only"):
        times = pre_epoch_times(out, key)
        kb = round((out / "pre" / key / "stage_05" / "best.pt").stat().st_size / 1024)
        th = THESIS_TABLE_3_9[key]
        rows.append([lab[key], f"{times[0]:.1f} / {times[1]:.1f}" if times else "–", f"{kb:,}",
                     f"{th[0]} / {th[1]}", f"{th[2]:,}"])
    t.append(Table("3.9", "Time per epoch (s, one pass over the training images, without validation; "
                   "stages 2-4 / stage 5) and checkpoint size (KB, best.pt: weights and optimizer state, as the "
                   "thesis' Keras file)",
                   ["pre-experiment", "s / epoch", "size (KB)", "thesis s / epoch", "thesis size (KB)"], rows,
                   note="Times are ours on this machine, not comparable in absolute terms with the thesis' "
                        "GTX 1080 Ti; compare (i) with (ii)."))
    return t


def ch4_tables(plan: Plan, results: dict[str, dict]) -> dict[str, list[Table]]:
    """Tables 4.1-4.12 (pooled test set, as the thesis' chapter 4), by experiment."""
    from edorient.evaluation.tables import THESIS_REFERENCE as REF

    out: dict[str, list[Table]] = {}
    numbers = {"exp1_random": ("4.1", "4.2"), "exp1_kmeans_i": ("4.3", "4.4"), "exp1_kmeans_ii": ("4.5", "4.6")}
    exp1 = []
    for name, (n1, n2) in numbers.items():
        if name not in results:
            continue
        label = CH4_MODELS[name][0]
        sizes = plan.ch4_subsets["thesis"]
        r1, r5 = results[name + "@1"], results[name]
        th1, th2 = THESIS_AFTER_SUBSET1[name]
        rows = [[f"1 ({sizes[0]:,} images)"] + [_f(r1["all"][OURS_M1][c]) for c in M1],
                [f"5 ({sum(sizes):,} images)"] + [_f(r5["all"][OURS_M1][c]) for c in M1],
                _ref_row("thesis 1 (100,000)", th1, M1), _ref_row("thesis 5 (489,500)", REF[name]["method1"], M1)]
        exp1.append(Table(n1, f"Method 1, model {label} after subset 1 and after subset 5", ["subsets", *H1], rows))
        rows = [[f"1 ({sizes[0]:,} images)"] + [_f(r1["all"][OURS_M2][c]) for c in M2],
                [f"5 ({sum(sizes):,} images)"] + [_f(r5["all"][OURS_M2][c]) for c in M2],
                _ref_row("thesis 1 (100,000)", th2, M2), _ref_row("thesis 5 (489,500)", REF[name]["method2"], M2)]
        exp1.append(Table(n2, f"Method 2 stage 1, model {label}", ["subsets", *H2], rows))
    if exp1:
        names = [n for n in _BY_EXPERIMENT["1"] if n in results]
        exp1.append(_summary_table("4.7", "Method 1, experiment 1", names, results, 1))
        exp1.append(_summary_table("4.8", "Method 2 stage 1, experiment 1", names, results, 2))
        out["1"] = exp1
    if "exp2_equal" in results:
        out["2"] = [_summary_table("4.9", "Method 1, model (4): five equal random subsets", ["exp2_equal"], results, 1),
                    _summary_table("4.10", "Method 2 stage 1, model (4)", ["exp2_equal"], results, 2)]
    names = [n for n in _BY_EXPERIMENT["3"] if n in results]
    if names:
        out["3"] = [_summary_table("4.11", "Method 1, models (5) and (6): all training images at once, resized",
                                   names, results, 1),
                    _summary_table("4.12", "Method 2 stage 1, models (5) and (6)", names, results, 2)]
    return out


def _summary_table(number: str, title: str, names, results, method: int, extra_angle: bool = False) -> Table:
    from edorient.evaluation.tables import THESIS_REFERENCE as REF

    cols, head, key = (M1, H1, OURS_M1) if method == 1 else (M2, H2, OURS_M2)
    rows = []
    for name in names:
        r = results[name]["all"]
        row = [f"{CH4_MODELS[name][0]} {name}"] + [_f(r[key][c]) for c in cols] + [_f(REF[name][f"method{method}"][c]) for c in cols]
        if extra_angle:
            row.append(f"{r['angular']['all_free']['median']:.2f}")
        rows.append(row)
    header = ["model", *head, *(f"thesis {h}" for h in head)] + (["median angle (°)"] if extra_angle else [])
    return Table(number, f"{title} (ours | thesis)", header, rows)


# -- conclusions -------------------------------------------------------------------------------
def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of ``a - b`` over the same test images and its standard error.

    Examples
    --------
    >>> paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    (1.0, 0.0)
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")


def _unclear(d: float, se: float) -> bool:
    """Whether a paired difference ``d`` stays within 2 standard errors ``se``."""
    return abs(d) <= 2 * se


def _cmp(results, a: str, b: str, key: str = OURS_M1) -> str:
    """``a`` vs ``b``: "lower"/"higher" when the paired difference exceeds 2 standard errors."""
    d, se = paired_difference(results[a]["per_sample"][key], results[b]["per_sample"][key])
    word = "no clear difference" if _unclear(d, se) else ("lower" if d < 0 else "higher")
    return f"{word} ({d:+.4f} ± {se:.4f})"


def conclusions(
    results: dict[str, dict], epoch_times: dict[str, tuple[float, float] | None] | None = None
) -> list[tuple[str, str, str]]:
    """The thesis' conclusions checked on our numbers: ``(claim, our evidence, verdict)``.

    A difference between two models is "clear" when the mean of the per-image differences of
    their errors (same test images) exceeds twice its standard error; Method 1 uses the mean
    of the two heads' order-free errors, Method 2 the smaller one. ``epoch_times`` maps
    ``pre2_all_layers`` and ``pre2_dense_only`` to their seconds per epoch (stages 2-4, stage
    5; :func:`pre_epoch_times`) for the training-speed claim."""
    out = []

    def verdict(ok: bool) -> str:
        return "holds" if ok else "does not hold"

    def diff(a, b, key=OURS_M1):
        return paired_difference(results[a]["per_sample"][key], results[b]["per_sample"][key])

    if {"pre1", "pre2_all_layers", "pre2_dense_only"} <= set(results):
        for b in ("pre2_all_layers", "pre2_dense_only"):
            d1, s1 = diff(b, "pre1")
            d2, s2 = diff(b, "pre1", OURS_M2)
            out.append((f"pre-experiment 2 ({'i' if b.endswith('layers') else 'ii'}) beats pre-experiment 1 "
                        "(more images by fine-tuning)",
                        f"Method 1 {_cmp(results, b, 'pre1')}, Method 2 {_cmp(results, b, 'pre1', OURS_M2)}",
                        verdict(d1 < -2 * s1 and d2 < -2 * s2)))
        d1, s1 = diff("pre2_dense_only", "pre2_all_layers")
        out.append(("(ii) dense only is more accurate than (i) all layers",
                    f"Method 1 {_cmp(results, 'pre2_dense_only', 'pre2_all_layers')}, Method 2 "
                    f"{_cmp(results, 'pre2_dense_only', 'pre2_all_layers', OURS_M2)}", verdict(d1 < -2 * s1)))
        if epoch_times is not None:
            ti, tii = epoch_times.get("pre2_all_layers"), epoch_times.get("pre2_dense_only")

            def shown(t):
                return "–" if t is None else f"{t[0]:.1f} / {t[1]:.1f}"

            fast = ti is not None and tii is not None and tii[0] < ti[0]
            out.append(("(ii) trains faster per epoch than (i) (thesis 128 s vs 261 s)",
                        f"{shown(tii)} s vs {shown(ti)} s per epoch (stages 2-4 / 5)", verdict(fast)))
    ch1 = [n for n in _BY_EXPERIMENT["1"] if n in results]
    if len(ch1) == 3:
        ds = [_cmp(results, n, "exp1_random") for n in ch1[1:]]
        ok = all(_unclear(*diff(n, "exp1_random")) for n in ch1[1:])
        out.append(("clustering (K-means (i), (ii)) makes no clear difference to random subsets",
                    f"(2) vs (1): {ds[0]}; (3) vs (1): {ds[1]}", verdict(ok)))
        sub1 = [paired_difference(results[n]["per_sample"][OURS_M1], results[n + "@1"]["per_sample"][OURS_M1])
                for n in ch1]
        out.append(("all five subsets beat subset 1 alone (Tables 4.1-4.6)",
                    "; ".join(f"{CH4_MODELS[n][0]} {d:+.4f} ± {s:.4f}" for n, (d, s) in zip(ch1, sub1)),
                    verdict(all(d < -2 * s for d, s in sub1))))
    if "exp2_equal" in results and "exp1_random" in results:
        s = _cmp(results, "exp2_equal", "exp1_random")
        out.append(("equal subsets (4) make no clear difference to (1)", f"(4) vs (1): {s}",
                    verdict(_unclear(*diff("exp2_equal", "exp1_random")))))
    if {"exp3_56", "exp3_28"} <= set(results):
        d, se = diff("exp3_28", "exp3_56")
        out.append(("28 px (6) is clearly worse than 56 px (5)", f"(6) vs (5): {_cmp(results, 'exp3_28', 'exp3_56')}",
                    verdict(d > 2 * se)))
        if "exp1_random" in results:
            d, se = diff("exp3_56", "exp1_random")
            out.append(("resized (5) is worse than the full-size fine-tuned (1)",
                        f"(5) vs (1): {_cmp(results, 'exp3_56', 'exp1_random')}", verdict(d > 2 * se)))
            d, se = diff("exp3_56", "exp1_random@1")
            out.append(("(5) is worse even than one subset at full size (model (1) after subset 1)",
                        f"(5) vs (1) after subset 1: {_cmp(results, 'exp3_56', 'exp1_random@1')}", verdict(d > 2 * se)))
    ch4 = [n for n in CH4_MODELS if n in results]
    if ch4:
        skew = [results[n]["all"][OURS_M1]["sigma_1"] > results[n]["all"][OURS_M1]["mae_1"] for n in ch4]
        below = [results[n]["all"]["below_mean"] for n in ch4]
        share = [b.get("method1_free", b.get("method1")) / results[n]["all"]["n"] for n, b in zip(ch4, below)]
        out.append(("σ > MAE for every model: a minority of large errors (thesis: 78 % / 82 % below the mean)",
                    f"σ_1 > MAE_1 in {sum(skew)} of {len(skew)} models; both heads at or below the mean: "
                    f"{100 * min(share):.0f}-{100 * max(share):.0f} % of test images", verdict(all(skew))))
    return out


def _sizes_note(cfg: ReproduceConfig, plan: Plan, exp: str) -> str:
    first, later = scaled_epochs(EPOCHS_FIRST, cfg.epoch_scale), scaled_epochs(EPOCHS_LATER, cfg.epoch_scale)
    head = (f"Scale F = {cfg.scale:g}: {plan.n_orientations} orientations, {plan.n_images:,} pair images of "
            f"{cfg.image_size} x {cfg.image_size} px, model `{cfg.arch}`, recipe `{cfg.recipe}`, order-free "
            f"thesis loss. Our Method 1 is the order-free eq. 3.2 (heads matched to grains per image), our "
            f"Method 2 stage 1 the oracle pick on it; predictions normalised and reduced to the 4/mmm sector.")
    if exp == "pre":
        return (head + f" Test {plan.pre_test:,} images as 5 subsets; sets {', '.join(f'{s:,}' for s in plan.pre_sets)} "
                f"(80 % train); {first} epochs on set 1, {later} per later set.")
    return (head + f" Hold-out test {plan.ch4_test:,} images (all of them pooled, as the thesis' chapter 4); "
            f"training set {plan.ch4_trainval:,} (80 % train); {first} epochs on subset 1 / experiment 3, {later} per later subset.")


def stage_progress(out: Path) -> list[tuple[str, int, int]]:
    """``(stage folder, optimisation steps done, steps planned)`` of every training run in ``out``
    (done = planned for a stage that finished: batch-norm models skip a one-image last batch, so
    up to one step per epoch short counts as finished)."""
    return [(name, done, want) for name, done, want, _ in _stages(out)]


def _stages(out: Path) -> list[tuple[str, int, int, bool]]:
    """:func:`stage_progress` rows with whether the stage had a time limit."""
    rows, seen = [], set()
    for cfgp in sorted(out.glob("**/config.json")):
        if cfgp.parent == out or "evaluations" in cfgp.parts or "data" in cfgp.parts or cfgp.resolve() in seen:
            continue
        seen.add(cfgp.resolve())
        try:
            c = json.loads(cfgp.read_text())
            hist = _history(cfgp.parent)
            done = int(hist[-1]["step"]) if hist else 0
            want = int(c["train"]["epochs"]) * math.ceil(int(c["train_size"]) / int(c["train"]["batch_size"]))
            limited = float(c["train"].get("time_limit_s", 0)) > 0
        except (KeyError, ValueError, json.JSONDecodeError):
            continue
        # a one-image last batch is skipped by batch-norm models: up to one step per epoch short
        finished = done >= want - int(c["train"]["epochs"])
        rows.append((str(cfgp.parent.relative_to(out)), want if finished else done, want, limited))
    return rows


def _stop_note(out: Path) -> tuple[list[str], list[str]]:
    """Unfinished stages: those their time limit stopped, and those without one (interrupted,
    or still running), each as ``"name share %"``."""
    cut, open_ = [], []
    for name, done, want, limited in _stages(out):
        if done < want:
            (cut if limited else open_).append(f"{name} {100 * done / want:.0f} %")
    return cut, open_


def summary_markdown(cfg: ReproduceConfig, plan: Plan, results: dict[str, dict], out: Path,
                     timings: dict[str, float]) -> str:
    """``summary.md``: Tables 4.13/4.14 ours beside the thesis', 3.7/3.8, conclusions."""
    parts = ["# Thesis experiments reproduced (edorient reproduce)", "", _sizes_note(cfg, plan, "ch4"), "",
             "**Data: ours, not the thesis'.** The thesis trained on 499,500 images simulated by NIMS (not public), "
             "224 x 224, of unknown simulation settings. Ours are simulated by edorient's kinematic simulator "
             "(anatase, 200 kV, sinc² relrods of a 50 Å thick specimen, Gaussian spots, log display transform, no noise) from "
             f"{plan.n_orientations} orientations uniform over the 4/mmm sector with random in-plane angles, every "
             "pair composed 0.5:0.5. A random hold-out shares single-crystal components between training and "
             "test, as the thesis' must have. Numbers are comparable in kind, not in value.", ""]
    ch4 = [n for n in CH4_MODELS if n in results]
    if ch4:
        parts += [_summary_table("4.13", "Method 1, every model", ch4, results, 1, extra_angle=True).markdown(),
                  _summary_table("4.14", "Method 2 stage 1, every model", ch4, results, 2).markdown()]
    pre = [k for k in ("pre1", "pre2_all_layers", "pre2_dense_only") if k in results]
    times = None
    if len(pre) == 3:
        tabs = pre_tables(out, results)
        times = {key: pre_epoch_times(out, key) for key in ("pre2_all_layers", "pre2_dense_only")}
        parts += [tabs[6].markdown(), tabs[7].markdown(), tabs[8].markdown()]
    checks = conclusions(results, times)
    if checks:
        parts += ["## The thesis' conclusions on our data", "",
                  "A difference is *clear* when the mean per-image difference of two models' errors on the same "
                  "test images exceeds twice its standard error (Method 1: mean of the two order-free head errors; "
                  "Method 2: the oracle's smaller error).", "",
                  "| thesis' conclusion | ours | verdict |", "|---|---|---|"]
        parts += [f"| {a} | {b} | {c} |" for a, b, c in checks]
        parts.append("")
    stops, unfinished = _stop_note(out)
    if stops:
        parts += ["Stages stopped by the time budget (share of their planned optimisation steps done): "
                  + "; ".join(stops) + ".", ""]
    if unfinished:
        parts += ["Stages not finished (no time limit: interrupted or still running; rerun to resume; share of "
                  "their planned optimisation steps done): " + "; ".join(unfinished) + ".", ""]
    parts += ["Wall time (s): " + ", ".join(f"{k} {v:g}" for k, v in timings.items()), "",
              "Per-experiment tables: " + ", ".join(f"[{d}]({d}/tables.md)" for d in ("pre", "exp1", "exp2", "exp3")
                                                   if (out / d / "tables.md").is_file()), ""]
    return "\n".join(parts)
