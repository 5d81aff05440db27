"""The thesis' experiments at a fraction of their sizes: ``edorient reproduce``.

:func:`reproduce` runs the training protocol of the thesis (sections 3.4 and 4.1-4.3) on one
thesis-mode data set simulated by edorient and writes the thesis' tables with its own numbers
beside ours:

``pre``
    pre-experiment 1 (one set of 100,000: 80k train, 20k validation, 500 epochs; test 50,000 as
    5 subsets of 10,000; Tables 3.1/3.2) and pre-experiment 2, fine-tuning from model 1 over
    four more sets (100k/100k/100k/49.5k, 50 epochs each) with (i) every layer retrained
    (Tables 3.3/3.4) and (ii) the dense layers only (Tables 3.5/3.6); summaries 3.7/3.8 and
    Table 3.9 (time per epoch of stages 2-4 / 5 and the checkpoint size).
``1``
    experiment 1: the hold-out split (10,000 test), the training set cut into five subsets
    (100k x 4 + 89.5k) (1) at random, (2) by K-means scheme (i), (3) by K-means scheme (ii)
    (:mod:`edorient.data.kmeans`), each fine-tuned subset by subset with the dense layers
    only from stage 2 on (500 epochs on subset 1, 50 on each later one); Tables 4.1-4.8 (after
    subset 1 and after subset 5).
``2``
    experiment 2: (4) five equal random subsets, the same protocol; Tables 4.9/4.10.
``3``
    experiment 3: (5)/(6) every training image at once (500 epochs) after resizing to 56 and
    to 28 pixels; Tables 4.11/4.12.

and ``OUT/summary.md`` with Tables 4.13/4.14 (ours beside the thesis') and the thesis'
conclusions checked on our numbers.

Scale rule
----------
A fraction ``F`` in (0, 1] of the thesis' sizes:

- ``N`` single-crystal orientations, the smallest with ``C(N, 2) >= F x 499,500`` (``F = 1``:
  N = 1,000, the thesis' 499,500 pairs); every unordered pair is one image;
- every set of the protocol is the thesis' share of ``C(N, 2)`` (hold-out test
  10,000/499,500; pre-experiments: test 50,000/499,500, sets 100k/100k/100k/100k/49.5k;
  chapter 4: subsets 100k x 4 + 89.5k or five equal); validation 20 % of each set;
- epochs: ``max(1, round(E x s))`` for the thesis' ``E`` (500 for pre-experiment 1, the first
  subset of chapter 4 and experiment 3; 50 for every later subset) and an epoch scale ``s``
  (default ``F``), so the training work goes as ``F^2``;
- sizes relative to the image side ``S``: experiment 3 resizes to ``S x 56/224`` and
  ``S x 28/224``, K-means scheme (i) clusters at ``S x 56/224``, scheme (ii) at
  ``S x 112/224`` (the thesis' 56, 28, 56 and 112 at ``S = 224``);
- an optional time budget caps the *training* time: each stage gets the share of it that
  its planned work has of all the planned work, and stops early (after validating) when its
  share is spent. Work is epochs x training images x ``sqrt(input side / S)``: on a CPU a
  smaller input costs less per image, but far from in proportion to its pixels (measured on
  2 cores: the compact model at 16 px trains about 2x, not 16x, faster than at 64 px).

Profiles: ``F >= 0.5`` defaults to the GPU profile (thesis CNN, 224 px, Adadelta with Keras'
defaults and batch 128, no budget); below, the CPU profile (``compact``, 64 px, AdamW with a
cosine schedule per stage and batch 32, a 40-minute training budget). Both train with the
order-free thesis loss (eq. 3.2 under the better head-to-grain assignment): our pair order
(grain A = the lower orientation index) carries no information a network could learn.

Every stage is resumable: a finished stage (``done``) is skipped, an interrupted one resumes
from ``last.pt``, and finished evaluations are reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edorient.errors import EdorientError

log = logging.getLogger(__name__)

#: The thesis' data set: every pair of 1,000 orientations.
THESIS_N = 1000
THESIS_IMAGES = 499_500
THESIS_SIZE = 224
#: Hold-out test of chapter 4 and the pre-experiments' test (both as 5 subsets).
THESIS_TEST = 10_000
PRE_TEST = 50_000
#: Pre-experiment sets: model 1's set, then the four fine-tuning sets of pre-experiment 2.
PRE_SETS = (100_000, 100_000, 100_000, 100_000, 49_500)
#: Thesis epochs: pre-experiment 1 / first subset / experiment 3, and every later subset.
EPOCHS_FIRST = 500
EPOCHS_LATER = 50
EXPERIMENTS = ("pre", "1", "2", "3")
RECIPES = ("thesis", "cpu")
#: Below this fraction the CPU profile is the default.
GPU_SCALE = 0.5

#: Rows "after subset 1 (100,000)" of the thesis' Tables 4.1-4.6 (seed text, section 4.1).
THESIS_AFTER_SUBSET1 = {
    "exp1_random": ({"mae_1": 0.2860, "sigma_1": 0.5183, "mae_2": 0.2816, "sigma_2": 0.5052},
                    {"mae": 0.2125, "sigma": 0.4108}),
    "exp1_kmeans_i": ({"mae_1": 0.2869, "sigma_1": 0.5118, "mae_2": 0.2833, "sigma_2": 0.5092},
                      {"mae": 0.2121, "sigma": 0.4067}),
    "exp1_kmeans_ii": ({"mae_1": 0.2866, "sigma_1": 0.5044, "mae_2": 0.2782, "sigma_2": 0.4951},
                       {"mae": 0.2180, "sigma": 0.4167}),
}
#: Table 3.9 of the thesis: seconds per epoch (stages 2-4 / stage 5) and checkpoint KB.
THESIS_TABLE_3_9 = {"pre2_all_layers": (261, 234, 1_206_604), "pre2_dense_only": (128, 115, 1_206_090)}

#: Chapter-4 models: name -> (label, subset scheme or None, input fraction of S, reference key).
CH4_MODELS = {
    "exp1_random": ("(1)", "thesis", 1.0),
    "exp1_kmeans_i": ("(2)", "kmeans_i", 1.0),
    "exp1_kmeans_ii": ("(3)", "kmeans_ii", 1.0),
    "exp2_equal": ("(4)", "equal", 1.0),
    "exp3_56": ("(5)", None, 56 / 224),
    "exp3_28": ("(6)", None, 28 / 224),
}
_BY_EXPERIMENT = {"1": ("exp1_random", "exp1_kmeans_i", "exp1_kmeans_ii"), "2": ("exp2_equal",),
                  "3": ("exp3_56", "exp3_28")}


# -- configuration -----------------------------------------------------------------------------
def orientations_for_scale(scale: float) -> int:
    """N: the smallest number of orientations with ``C(N, 2) >= scale x 499,500``.

    Examples
    --------
    >>> orientations_for_scale(1.0), orientations_for_scale(0.02), orientations_for_scale(0.25)
    (1000, 142, 501)
    """
    target = float(scale) * THESIS_IMAGES
    n = max(2, math.ceil((1 + math.sqrt(1 + 8 * target)) / 2) - 1)
    while n * (n - 1) // 2 < target:
        n += 1
    return n


def scaled_epochs(thesis_epochs: int, epoch_scale: float) -> int:
    """``max(1, round(thesis_epochs x epoch_scale))``.

    Examples
    --------
    >>> scaled_epochs(500, 0.02), scaled_epochs(50, 0.02), scaled_epochs(50, 1.0)
    (10, 1, 50)
    """
    return max(1, int(round(thesis_epochs * epoch_scale)))


def parse_experiments(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"all"``, one of ``pre 1 2 3`` or a comma list -> the experiments in the thesis' order."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise EdorientError("no experiment given: choose pre, 1, 2, 3 or all")
    if "all" in items:
        return EXPERIMENTS
    bad = [t for t in items if t not in EXPERIMENTS]
    if bad:
        raise EdorientError(f"unknown experiment {bad[0]!r}: choose one of pre, 1, 2, 3, all (or a comma list)")
    return tuple(e for e in EXPERIMENTS if e in items)


@dataclass(frozen=True)
class ReproduceConfig:
    """Settings of :func:`reproduce`; ``None`` fields take the profile's default (see module).

    Attributes
    ----------
    experiments
        Any of ``pre``, ``1``, ``2``, ``3`` (thesis order).
    scale
        Fraction F of the thesis' sizes, 0 < F <= 1.
    arch
        Model name (``edorient model --list``); default ``thesis`` (F >= 0.5) or ``compact``.
    image_size
        Simulated image side S; default 224 (F >= 0.5) or 64.
    recipe
        ``thesis`` (Adadelta lr 1.0, rho 0.95, eps 1e-7, batch 128, constant) or ``cpu``
        (AdamW lr 2e-3, weight decay 1e-4, cosine per stage, batch 32); default by F.
    batch_size
        Overrides the recipe's batch size.
    epoch_scale
        Multiplies the thesis' epoch counts (default F).
    time_budget_s
        Cap on the training time of all the stages run (seconds, split by planned work);
        ``0``: none. Default 2400 on the CPU profile, none on the GPU profile.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    seed
        Seed of the data, the splits, the K-means and every training.
    workers
        DataLoader workers of training and prediction.
    gen_workers
        Processes that simulate the data set.
    kmeans_kmax
        SSE curve for K = 1..kmax (the thesis: 10).
    plots
        Learning curves of every stage (``learning_curve.png``).
    """

    experiments: tuple[str, ...] = EXPERIMENTS
    scale: float = 0.02
    arch: str | None = None
    image_size: int | None = None
    recipe: str | None = None
    batch_size: int | None = None
    epoch_scale: float | None = None
    time_budget_s: float | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    gen_workers: int = 2
    kmeans_kmax: int = 10
    plots: bool = True

    def resolved(self) -> "ReproduceConfig":
        """A copy with every default filled in, validated (EdorientError on bad values)."""
        from edorient.models import MODELS, available_models

        exps = parse_experiments(list(self.experiments))
        f = float(self.scale)
        if not (math.isfinite(f) and 0 < f <= 1):
            raise EdorientError(f"--scale must lie in (0, 1] (a fraction of the thesis' 499,500 images), got {self.scale}")
        gpu = f >= GPU_SCALE
        arch = self.arch or ("thesis" if gpu else "compact")
        if arch not in MODELS:
            raise EdorientError(f"unknown architecture {arch!r}; choose one of: {', '.join(available_models())}")
        size = int(self.image_size or (THESIS_SIZE if gpu else 64))
        if size < 16 or size % 8:
            raise EdorientError(f"--size must be a multiple of 8 and >= 16 (experiment 3 resizes to S/8), got {size}")
        recipe = self.recipe or ("thesis" if gpu else "cpu")
        if recipe not in RECIPES:
            raise EdorientError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        es = f if self.epoch_scale is None else float(self.epoch_scale)
        if not (math.isfinite(es) and es > 0):
            raise EdorientError(f"--epoch-scale must be > 0, got {self.epoch_scale}")
        budget = (0.0 if gpu else 2400.0) if self.time_budget_s is None else float(self.time_budget_s)
        if not (math.isfinite(budget) and budget >= 0):
            raise EdorientError(f"--time-budget must be >= 0 seconds (0: none), got {self.time_budget_s}")
        batch = int(self.batch_size or (128 if recipe == "thesis" else 32))
        if batch < 1:
            raise EdorientError(f"--batch-size must be >= 1, got {batch}")
        if self.workers < 0 or self.gen_workers < 1:
            raise EdorientError("--workers must be >= 0 and generation workers >= 1")
        if self.kmeans_kmax < 3:
            raise EdorientError(f"the elbow rule needs kmax >= 3, got {self.kmeans_kmax}")
        n = orientations_for_scale(f)
        if n * (n - 1) // 2 < 250 and ("1" in exps or "2" in exps or "3" in exps or "pre" in exps):
            raise EdorientError(
                f"--scale {f:g} gives {n} orientations ({n * (n - 1) // 2} images): too few for five test "
                "subsets and ten training sets; use --scale >= 0.0005"
            )
        return dataclasses.replace(self, experiments=exps, scale=f, arch=arch, image_size=size, recipe=recipe,
                                   batch_size=batch, epoch_scale=es, time_budget_s=budget)

    @property
    def n_orientations(self) -> int:
        return orientations_for_scale(self.scale)

    def train_settings(self) -> dict[str, Any]:
        """TrainConfig fields of the recipe (epochs, freeze and time limit are set per stage)."""
        common = dict(loss="order-free", select="mae_of", batch_size=self.batch_size, device=self.device,
                      workers=self.workers, seed=self.seed, plot=self.plots)
        if self.recipe == "thesis":
            return dict(common, optimizer="adadelta", lr=1.0, rho=0.95, eps=1e-7, schedule="constant")
        return dict(common, optimizer="adamw", lr=2e-3, weight_decay=1e-4, eps=1e-8, schedule="cosine",
                    warmup_steps=0, min_lr_ratio=0.02)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (a rerun into OUT must match them)."""
        d = dataclasses.asdict(self)
        for k in ("experiments", "time_budget_s", "workers", "gen_workers", "device", "plots"):
            d.pop(k)
        return d


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Stage:
    """One training run of the plan."""

    key: str
    """``pre1``, ``pre2_all_layers/stage_02``, ``exp1_random/stage_01``, ``exp3_56`` ..."""
    epochs: int
    n_train: int
    input_fraction: float = 1.0
    """Input side over the image side (experiment 3: 1/4, 1/8)."""
    time_limit_s: float = 0.0

    @property
    def work(self) -> float:
        """Planned work: epochs x training images x a per-image cost ``sqrt(input / S)``."""
        return self.epochs * self.n_train * math.sqrt(self.input_fraction)


@dataclass
class Plan:
    """Sizes, epochs and time limits of a run (written to ``OUT/config.json``)."""

    n_orientations: int
    n_images: int
    pre_test: int
    pre_sets: list[int]
    ch4_test: int
    ch4_trainval: int
    ch4_subsets: dict[str, list[int]] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    def stage(self, key: str) -> Stage:
        for s in self.stages:
            if s.key == key:
                return s
        raise KeyError(key)


def _pre_partition(n_images: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pre-experiment ids: the test set (50,000/499,500) and the five sets, from a seeded
    permutation of every pair (disjoint, covering all images, as the thesis' 150k + 349.5k)."""
    from edorient.data.splits import proportional_sizes

    sizes = proportional_sizes(n_images, (PRE_TEST, *PRE_SETS))
    perm = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(40,))).permutation(n_images)
    parts = np.split(perm, np.cumsum(sizes)[:-1])
    return np.sort(parts[0]), [np.sort(p) for p in parts[1:]]


def _train_val(ids: np.ndarray, seed: int, key: int) -> tuple[np.ndarray, np.ndarray]:
    from edorient.data.splits import train_val

    return train_val(ids, np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(41, key))))


def make_plan(cfg: ReproduceConfig) -> Plan:
    """Sizes and epochs of every stage of ``cfg``'s experiments (``cfg`` resolved)."""
    from edorient.data.splits import THESIS_SUBSET_WEIGHTS, THESIS_TEST_FRACTION, VAL_FRACTION, proportional_sizes

    n = cfg.n_orientations
    n_img = n * (n - 1) // 2
    first, later = scaled_epochs(EPOCHS_FIRST, cfg.epoch_scale), scaled_epochs(EPOCHS_LATER, cfg.epoch_scale)
    pre_test, pre_sets = _pre_partition(n_img, cfg.seed)
    # the data layer's hold-out rule (edorient.data.splits.make_splits)
    ch4_test = min(max(1, int(round(THESIS_TEST_FRACTION * n_img))), n_img - 1)
    trainval = n_img - ch4_test

    def ntrain(m: int) -> int:
        return m - int(round(VAL_FRACTION * m))

    plan = Plan(n_orientations=n, n_images=n_img, pre_test=int(pre_test.size), pre_sets=[int(p.size) for p in pre_sets],
                ch4_test=ch4_test, ch4_trainval=trainval)
    plan.ch4_subsets = {"thesis": proportional_sizes(trainval, THESIS_SUBSET_WEIGHTS),
                        "equal": [len(a) for a in np.array_split(np.arange(trainval), 5)]}
    if "pre" in cfg.experiments:
        plan.stages.append(Stage("pre1", first, ntrain(plan.pre_sets[0])))
        for variant in ("pre2_all_layers", "pre2_dense_only"):
            for k in range(2, 6):
                plan.stages.append(Stage(f"{variant}/stage_{k:02d}", later, ntrain(plan.pre_sets[k - 1])))
    for e in ("1", "2"):
        if e in cfg.experiments:
            for name in _BY_EXPERIMENT[e]:
                sizes = plan.ch4_subsets["equal" if name == "exp2_equal" else "thesis"]
                for k in range(1, 6):
                    plan.stages.append(Stage(f"{name}/stage_{k:02d}", first if k == 1 else later, ntrain(sizes[k - 1])))
    if "3" in cfg.experiments:
        for name in _BY_EXPERIMENT["3"]:
            plan.stages.append(Stage(name, first, ntrain(trainval), CH4_MODELS[name][2]))
    if cfg.time_budget_s > 0:
        work = sum(s.work for s in plan.stages)
        for s in plan.stages:
            s.time_limit_s = cfg.time_budget_s * s.work / work
    return plan


# -- helpers -----------------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    from edorient.evaluation.tables import write_json

    write_json(obj, path)


def _laue_ops(data):
    from edorient.physics.symmetry import laue_group

    return laue_group(data.config["crystal"]["laue_group"]).ops


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
    from edorient.evaluation.pipeline import dataset_crystal, predict
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
    raw = raw.astype(np.float64)  # float64 before the head matching (near-ties of similar heads)
    norm = np.linalg.norm(raw, axis=-1, keepdims=True)
    pred = laue.reduce(raw / np.where(norm > 0, norm, 1.0))
    res = M.evaluate_predictions(pred, true, laue, subsets=subsets)
    m1 = M.method1_errors(pred, true, order="free")
    res["per_sample"] = {"method1_free": m1.mean(axis=1).tolist(), "method2_oracle_free": m1.min(axis=1).tolist()}
    res["checkpoint"] = str(ckpt)
    res["checkpoint_kb"] = round(Path(ckpt).stat().st_size / 1024)
    res["n_test"] = int(len(ids))
    _write_json(out_json, res)
    return res


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


def _epoch_times(run: Path) -> list[float]:
    import csv

    path = Path(run) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path) as fh:
        return [float(r["epoch_time_s"]) for r in csv.DictReader(fh)]


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
        times = [_epoch_times(out / "pre" / key / f"stage_{k:02d}") for k in range(2, 6)]
        mid = [x for ts in times[:3] for x in ts]
        last = times[3]
        kb = round((out / "pre" / key / "stage_05" / "best.pt").stat().st_size / 1024)
        th = THESIS_TABLE_3_9[key]
        rows.append([lab[key], f"{np.mean(mid):.1f} / {np.mean(last):.1f}" if mid and last else "–", f"{kb:,}",
                     f"{th[0]} / {th[1]}", f"{th[2]:,}"])
    t.append(Table("3.9", "Time per epoch (s, training + validation; stages 2-4 / stage 5) and checkpoint "
                   "size (KB, best.pt: weights and optimizer state, as the thesis' Keras file)",
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


def _cmp(results, a: str, b: str, key: str = OURS_M1) -> str:
    """``a`` vs ``b``: "lower"/"higher" when the paired difference exceeds 2 standard errors."""
    d, se = paired_difference(results[a]["per_sample"][key], results[b]["per_sample"][key])
    word = "no clear difference" if abs(d) <= 2 * se else ("lower" if d < 0 else "higher")
    return f"{word} ({d:+.4f} ± {se:.4f})"


def conclusions(results: dict[str, dict], table39: Table | None = None) -> list[tuple[str, str, str]]:
    """The thesis' conclusions checked on our numbers: ``(claim, our evidence, verdict)``.

    A difference between two models is "clear" when the mean of the per-image differences of
    their errors (same test images) exceeds twice its standard error; Method 1 uses the mean
    of the two heads' order-free errors, Method 2 the smaller one."""
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
        if table39 is not None:
            ti, tii = table39.rows[0][1], table39.rows[1][1]
            fast = float(tii.split("/")[0]) < float(ti.split("/")[0]) if "/" in ti and "/" in tii else False
            out.append(("(ii) trains faster per epoch than (i) (thesis 128 s vs 261 s)",
                        f"{tii} s vs {ti} s per epoch (stages 2-4 / 5)", verdict(fast)))
    ch1 = [n for n in _BY_EXPERIMENT["1"] if n in results]
    if len(ch1) == 3:
        ds = [_cmp(results, n, "exp1_random") for n in ch1[1:]]
        ok = all(s.startswith("no clear") for s in ds)
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
                    verdict(s.startswith("no clear"))))
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
    from edorient.data import GenerateConfig, generate_dataset, open_dataset

    cfg = (config or ReproduceConfig()).resolved()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdorientError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    prev = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
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
            np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(42,))).permutation(test.size), 5)]
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


def _stop_note(out: Path) -> list[str]:
    """Stages that hit their time limit before their epochs ran out."""
    lines, seen = [], set()
    for cfgp in sorted(out.glob("**/config.json")):
        if cfgp.parent == out or "evaluations" in cfgp.parts or "data" in cfgp.parts or cfgp.resolve() in seen:
            continue
        seen.add(cfgp.resolve())
        try:
            c = json.loads(cfgp.read_text())
            ran = len(_epoch_times(cfgp.parent))
            want = int(c["train"]["epochs"])
        except (KeyError, ValueError, json.JSONDecodeError):
            continue
        if ran < want:
            lines.append(f"{cfgp.parent.relative_to(out)}: {ran} of {want} epochs (time limit)")
    return lines


def summary_markdown(cfg: ReproduceConfig, plan: Plan, results: dict[str, dict], out: Path,
                     timings: dict[str, float]) -> str:
    """``summary.md``: Tables 4.13/4.14 ours beside the thesis', 3.7/3.8, conclusions."""
    parts = ["# Thesis experiments reproduced (edorient reproduce)", "", _sizes_note(cfg, plan, "ch4"), "",
             "**Data: ours, not the thesis'.** The thesis trained on 499,500 images simulated by NIMS (not public), "
             "224 x 224, of unknown simulation settings. Ours are simulated by edorient's kinematic simulator "
             "(anatase, 200 kV, 50 Å relrods, Gaussian spots, log display transform, no noise) from "
             f"{plan.n_orientations} orientations uniform over the 4/mmm sector with random in-plane angles, every "
             "pair composed 0.5:0.5. A random hold-out shares single-crystal components between training and "
             "test, as the thesis' must have. Numbers are comparable in kind, not in value.", ""]
    ch4 = [n for n in CH4_MODELS if n in results]
    if ch4:
        parts += [_summary_table("4.13", "Method 1, every model", ch4, results, 1, extra_angle=True).markdown(),
                  _summary_table("4.14", "Method 2 stage 1, every model", ch4, results, 2).markdown()]
    pre = [k for k in ("pre1", "pre2_all_layers", "pre2_dense_only") if k in results]
    t39 = None
    if len(pre) == 3:
        tabs = pre_tables(out, results)
        t39 = tabs[-1]
        parts += [tabs[6].markdown(), tabs[7].markdown(), t39.markdown()]
    checks = conclusions(results, t39)
    if checks:
        parts += ["## The thesis' conclusions on our data", "",
                  "A difference is *clear* when the mean per-image difference of two models' errors on the same "
                  "test images exceeds twice its standard error (Method 1: mean of the two order-free head errors; "
                  "Method 2: the oracle's smaller error).", "",
                  "| thesis' conclusion | ours | verdict |", "|---|---|---|"]
        parts += [f"| {a} | {b} | {c} |" for a, b, c in checks]
        parts.append("")
    stops = _stop_note(out)
    if stops:
        parts += ["Stages stopped by the time budget: " + "; ".join(stops) + ".", ""]
    parts += ["Wall time (s): " + ", ".join(f"{k} {v:g}" for k, v in timings.items()), "",
              "Per-experiment tables: " + ", ".join(f"[{d}]({d}/tables.md)" for d in ("pre", "exp1", "exp2", "exp3")
                                                   if (out / d / "tables.md").is_file()), ""]
    return "\n".join(parts)
