"""Running ``edorient reproduce``: data, K-means schemes, training stages, evaluations."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edorient._utils.rng import seeded_rng
from edorient.errors import EdorientError
from edorient.experiments.plan import (
    _BY_EXPERIMENT,
    CH4_MODELS,
    THESIS_SIZE,
    ReproduceConfig,
    _pre_partition,
    _train_val,
    make_plan,
)
from edorient.experiments.tables import (
    _sizes_note,
    _write_json,
    ch4_tables,
    pre_tables,
    summary_markdown,
    write_tables,
)

log = logging.getLogger(__name__)

# -- helpers -----------------------------------------------------------------------------------
def _laue_ops(data):
    from edorient.training.run import laue_ops_of

    return laue_ops_of(data)


def _input_size(cfg: ReproduceConfig, fraction: float) -> int:
    return max(1, int(round(cfg.image_size * fraction)))


def _datasets(data, train_ids, val_ids, size: int, cfg: ReproduceConfig):
    resize = None if size == data.image_size else size
    return data.torch_dataset(train_ids, resize=resize), data.torch_dataset(val_ids, resize=resize)


def _train_config(cfg: ReproduceConfig, progress: bool, time_limit_s: float = 0.0, epochs: int = 1):
    from edorient.training import TrainConfig

    return TrainConfig(**cfg.train_settings(), epochs=epochs, time_limit_s=time_limit_s, progress=progress)


def _new_model(cfg: ReproduceConfig, input_size: int):
    import torch

    from edorient.models import build_model

    torch.manual_seed(cfg.seed)
    return build_model(cfg.arch, input_size=input_size, n_grains=2)


def _fit_once(cfg, plan, key, run_dir, data, train_ids, val_ids, size, progress, extra) -> Path:
    """Train one model from scratch into ``run_dir`` (skipped when ``done``)."""
    from edorient.training import fit

    run_dir = Path(run_dir)
    if (run_dir / "done").is_file():
        return run_dir
    st = plan.stage(key)
    tc = _train_config(cfg, progress, st.time_limit_s, st.epochs)
    tr, va = _datasets(data, train_ids, val_ids, size, cfg)
    log.info("%s: %d epochs on %d images (%s px)%s", key, st.epochs, len(tr), size,
             f", at most {st.time_limit_s:.0f} s" if st.time_limit_s else "")
    res = fit(_new_model(cfg, size), tr, va, tc, run_dir, laue_ops=_laue_ops(data), resume=True, extra=extra)
    (run_dir / "done").write_text(json.dumps({"best_epoch": res.best_epoch, "best_value": res.best_value}) + "\n")
    return run_dir


def _finetune(cfg, plan, name, root, data, stage_ids, size, mode, progress, extra, first_dir: Path | None = None):
    """Fine-tune over ``stage_ids`` (list of (train, val)) into ``root/stage_NN``.

    With ``first_dir`` (pre-experiment 2), stage 1 is that finished run (linked, not retrained).
    Stages of one call may have different time limits, so they run one :func:`finetune` call
    each (a finished stage is skipped by its ``done``)."""
    from edorient.training import finetune, stage_dir

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if first_dir is not None:
        link = stage_dir(root, 1)
        if not link.exists():
            os.symlink(os.path.relpath(first_dir, root), link, target_is_directory=True)
    model = _new_model(cfg, size)
    for k in range(1, len(stage_ids) + 1):
        if k == 1 and first_dir is not None:
            continue
        st = plan.stage(f"{name}/stage_{k:02d}")
        tc = _train_config(cfg, progress, st.time_limit_s, st.epochs)
        stages = [(lambda j=j: _datasets(data, *stage_ids[j], size, cfg)) for j in range(k)]
        finetune(model, stages, tc, root, mode=mode, first_epochs=st.epochs, later_epochs=st.epochs,
                 laue_ops=_laue_ops(data), resume=True, extra=extra)
    return root


# -- evaluation --------------------------------------------------------------------------------
def evaluate_checkpoint(ckpt: Path, data, ids: np.ndarray, subsets: list[np.ndarray], out_json: Path,
                        cfg: ReproduceConfig) -> dict[str, Any]:
    """Method 1 / Method 2 stage 1 of one checkpoint on ``ids`` (reused when ``out_json`` exists).

    Predictions are normalised and reduced to the fundamental sector (as ``edorient
    evaluate``); ``subsets`` index ``ids``. Adds ``per_sample`` errors for the paired tests."""
    from edorient.evaluation import metrics as M
    from edorient.evaluation.pipeline import dataset_crystal, predict, sector_predictions
    from edorient.training import load_model, resolve_device

    out_json = Path(out_json)
    if out_json.is_file():
        return json.loads(out_json.read_text())
    model = load_model(ckpt)
    size = int(model.config.input_size)
    raw = predict(model, data.torch_dataset(ids, resize=None if size == data.image_size else size),
                  batch_size=256, device=str(resolve_device(cfg.device)))
    true = data.labels(ids).astype(np.float64)
    laue = dataset_crystal(data).laue
    pred = sector_predictions(raw, laue)  # float64 before the head matching (near-ties of similar heads)
    res = M.evaluate_predictions(pred, true, laue, subsets=subsets)
    m1 = M.method1_errors(pred, true, order="free")
    res["per_sample"] = {"method1_free": m1.mean(axis=1).tolist(), "method2_oracle_free": m1.min(axis=1).tolist()}
    res["checkpoint"] = str(ckpt)
    res["checkpoint_kb"] = round(Path(ckpt).stat().st_size / 1024)
    res["n_test"] = int(len(ids))
    _write_json(out_json, res)
    return res


# -- the run -----------------------------------------------------------------------------------
def _kmeans_scheme(cfg: ReproduceConfig, data, data_dir: Path, which: str, out: Path, progress: bool) -> str:
    """Store K-means scheme (i) or (ii) in the data set (once) with :mod:`edorient.data.kmeans`."""
    import torch

    from edorient.data import kmeans as km
    from edorient.data.splits import write_subsets
    from edorient.evaluation.tables import atomic_write_text

    scheme = km.SCHEME_I if which == "i" else km.SCHEME_II
    if scheme in data.schemes("random"):
        return scheme
    resize = _input_size(cfg, km.THESIS_RESIZE[which] / THESIS_SIZE)
    km.check_resize(resize, data.image_size)
    ids = data.index("random", "trainval")

    def features(sample_ids: np.ndarray, name: str) -> np.ndarray:
        loader = torch.utils.data.DataLoader(data.torch_dataset(sample_ids, resize=resize), batch_size=256,
                                             num_workers=cfg.workers)
        return km.compute_features((x.numpy()[:, 0] for x, _, _ in loader), sample_ids.size, resize, progress=progress)

    kcfg = km.KMeansConfig(kmax=cfg.kmeans_kmax, seed=cfg.seed)
    run = km.scheme_i if which == "i" else km.scheme_ii
    result = run(ids, features, kcfg, progress=progress)
    folder = out / "exp1" / scheme
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "tables.md", f"# K-means scheme ({which}) at {resize} x {resize}\n\n"
                      + km.scheme_markdown(result))
    _write_json(folder / "clusters.json", {
        "resize": resize, "subset_sizes": [int(s.size) for s in result.subsets],
        "groups": [{"name": g.name, "k": g.result.k, "k_rule": g.result.k_rule, "sse": g.result.sse.tolist(),
                    "counts": g.counts.tolist()} for g in result.groups]})
    write_subsets(data_dir, "random", result.scheme, result.subsets, seed=cfg.seed)
    return scheme


def reproduce(out: str | Path, config: ReproduceConfig | None = None, progress: bool = True) -> Path:
    """Run the experiments of ``config`` into ``out``; returns ``OUT/summary.md``.

    Finished stages and evaluations are reused, so an interrupted run continues where it
    stopped. ``OUT/config.json`` holds the resolved settings, the plan (sizes, epochs, time
    limits) and the wall time of each part.

    Raises
    ------
    EdorientError
        Bad settings, or ``out`` holds a run with other settings.
    """
    from edorient._utils.outputs import claim_output_dir
    from edorient.data import GenerateConfig, generate_dataset, open_dataset

    cfg = (config or ReproduceConfig()).resolved()
    out = claim_output_dir(Path(out), "reproduce")  # new, empty or an earlier reproduction: never a user's folder
    cfg_path = out / "config.json"
    prev = None
    if cfg_path.is_file():
        try:
            prev = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as exc:
            raise EdorientError(f"{cfg_path} is damaged ({exc}); choose another --out") from None
        if not isinstance(prev, dict) or not isinstance(prev.get("identity"), dict):
            raise EdorientError(f"{cfg_path} is not the settings of an edorient reproduce run; choose another --out")
    if prev and prev.get("identity") != cfg.identity():
        diff = sorted(k for k in cfg.identity() if prev["identity"].get(k) != cfg.identity()[k])
        raise EdorientError(f"{out} holds a run with other settings ({', '.join(diff)}); choose another --out "
                            "or rerun with the same settings to resume it")
    plan = make_plan(cfg)
    timings: dict[str, float] = dict(prev.get("timings_s", {})) if prev else {}
    t_all = time.perf_counter()

    def save_config() -> None:
        _write_json(cfg_path, {
            "command": "reproduce", "identity": cfg.identity(), "config": dataclasses.asdict(cfg),
            "train_settings": cfg.train_settings(),
            "scale_rule": {"orientations": "smallest N with C(N, 2) >= F x 499,500",
                           "epochs": "max(1, round(thesis epochs x epoch_scale)); thesis 500 first / 50 later",
                           "time_budget": "training time split over the stages run by epochs x training images x sqrt(input / S)"},
            "plan": dataclasses.asdict(plan), "timings_s": timings})

    save_config()

    def timed(name: str, t0: float) -> None:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        save_config()

    t0 = time.perf_counter()
    data_dir = out / "data"
    generate_dataset(GenerateConfig(mode="thesis", n=plan.n_orientations, image_size=cfg.image_size, seed=cfg.seed),
                     data_dir, workers=cfg.gen_workers, progress=progress)
    data = open_dataset(data_dir, verify="size")
    timed("generate", t0)
    extra = {"data": str(data_dir.resolve()), "reproduce": True}
    results: dict[str, dict] = {}
    evals = out / "evaluations"
    S = cfg.image_size

    if "pre" in cfg.experiments:
        t0 = time.perf_counter()
        test, sets = _pre_partition(plan.n_images, cfg.seed)
        parts = [_train_val(s, cfg.seed, k) for k, s in enumerate(sets)]
        tsubs = [np.sort(s) for s in np.array_split(
            seeded_rng(cfg.seed, 42).permutation(test.size), 5)]
        pre1 = _fit_once(cfg, plan, "pre1", out / "pre" / "pre1", data, *parts[0], S, progress,
                         {**extra, "experiment": "pre1"})
        for key, mode in (("pre2_all_layers", "all"), ("pre2_dense_only", "dense")):
            _finetune(cfg, plan, key, out / "pre" / key, data, parts, S, mode, progress,
                      {**extra, "experiment": key}, first_dir=pre1)
        for key in ("pre1", "pre2_all_layers", "pre2_dense_only"):
            ck = (out / "pre" / key / "best.pt") if key == "pre1" else (out / "pre" / key / "stage_05" / "best.pt")
            results[key] = evaluate_checkpoint(ck, data, test, tsubs, evals / f"{key}.json", cfg)
        tabs = pre_tables(out, results)
        write_tables(out / "pre", tabs, "Pre-experiments (thesis section 3.4)", _sizes_note(cfg, plan, "pre"))
        timed("pre", t0)

    ch4_ids = data.index("random", "test")
    pos = {int(s): i for i, s in enumerate(ch4_ids)}
    ch4_subs = [np.array([pos[int(s)] for s in sub]) for sub in data.test_subsets("random", 5)]
    for e in ("1", "2"):
        if e not in cfg.experiments:
            continue
        t0 = time.perf_counter()
        for name in _BY_EXPERIMENT[e]:
            scheme = CH4_MODELS[name][1]
            if scheme.startswith("kmeans"):
                tk = time.perf_counter()
                scheme = _kmeans_scheme(cfg, data, data_dir, scheme.split("_")[1], out, progress)
                timed(scheme, tk)
            stage_ids = [(data.index("random", "train", k, scheme), data.index("random", "val", k, scheme))
                         for k in range(5)]
            root = out / f"exp{e}" / name
            _finetune(cfg, plan, name, root, data, stage_ids, S, "dense", progress, {**extra, "experiment": name,
                      "scheme": scheme})
            results[name] = evaluate_checkpoint(root / "stage_05" / "best.pt", data, ch4_ids, ch4_subs,
                                                evals / f"{name}.json", cfg)
            results[name + "@1"] = evaluate_checkpoint(root / "stage_01" / "best.pt", data, ch4_ids, ch4_subs,
                                                       evals / f"{name}@1.json", cfg)
        timed(f"exp{e}", t0)
    if "3" in cfg.experiments:
        t0 = time.perf_counter()
        for name in _BY_EXPERIMENT["3"]:
            size = _input_size(cfg, CH4_MODELS[name][2])
            run = _fit_once(cfg, plan, name, out / "exp3" / name, data, data.index("random", "train"),
                            data.index("random", "val"), size, progress, {**extra, "experiment": name})
            results[name] = evaluate_checkpoint(run / "best.pt", data, ch4_ids, ch4_subs, evals / f"{name}.json", cfg)
        timed("exp3", t0)
    # tables of chapter 4 from every finished evaluation in OUT (also of earlier invocations)
    for p in sorted(evals.glob("*.json")) if evals.is_dir() else []:
        results.setdefault(p.stem, json.loads(p.read_text()))
    by_exp = ch4_tables(plan, results)
    titles = {"1": "Experiment 1 (thesis 4.1): random vs K-means subsets",
              "2": "Experiment 2 (thesis 4.2): five equal random subsets",
              "3": "Experiment 3 (thesis 4.3): all training images at once, resized"}
    for e, tabs in by_exp.items():
        write_tables(out / f"exp{e}", tabs, titles[e], _sizes_note(cfg, plan, e))
    timings["total_this_invocation"] = round(time.perf_counter() - t_all, 1)
    save_config()
    summary = out / "summary.md"
    from edorient.evaluation.tables import atomic_write_text

    atomic_write_text(summary, summary_markdown(cfg, plan, results, out, timings))
    return summary
