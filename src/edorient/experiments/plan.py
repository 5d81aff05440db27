"""Configuration and plan of ``edorient reproduce``: the scale rule, sizes, epochs, time limits."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edorient._utils.rng import seeded_rng
from edorient.errors import EdorientError

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


#: Training objective of every stage -> (loss, checkpoint rule). ``thesis``: the thesis' own MAE
#: with the grains in the thesis' order and the best epoch by MAE_1 + MAE_2; ``order-free``
#: (default): the same MAE under the better head-to-grain assignment, best epoch by it (a
#: bicrystal label is an unordered pair, so the thesis' order penalises a right answer given in
#: the other order).
OBJECTIVES = {"order-free": ("order-free", "mae_of"), "thesis": ("thesis", "sum_mae")}


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
    objective
        ``"order-free"`` (default) or ``"thesis"``: the loss and checkpoint rule of every stage
        (:data:`OBJECTIVES`).
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
    objective: str = "order-free"

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
        if self.objective not in OBJECTIVES:
            raise EdorientError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        return dataclasses.replace(self, experiments=exps, scale=f, arch=arch, image_size=size, recipe=recipe,
                                   batch_size=batch, epoch_scale=es, time_budget_s=budget)

    @property
    def n_orientations(self) -> int:
        return orientations_for_scale(self.scale)

    def train_settings(self) -> dict[str, Any]:
        """TrainConfig fields of the recipe (epochs, freeze and time limit are set per stage)."""
        loss, select = OBJECTIVES[self.objective]
        common = dict(loss=loss, select=select, batch_size=self.batch_size, device=self.device,
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
    perm = seeded_rng(int(seed), 40).permutation(n_images)
    parts = np.split(perm, np.cumsum(sizes)[:-1])
    return np.sort(parts[0]), [np.sort(p) for p in parts[1:]]


def _train_val(ids: np.ndarray, seed: int, key: int) -> tuple[np.ndarray, np.ndarray]:
    from edorient.data.splits import train_val

    return train_val(ids, seeded_rng(int(seed), 41, key))


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
