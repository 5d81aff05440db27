"""Evaluate a trained run on a data set's test split: Method 1, Method 2 (both stages), plots.

:func:`evaluate_run` is what ``edorient evaluate`` and ``edorient demo`` call. It writes into
``out_dir``: ``results.json`` (everything), ``results.csv`` (one row per block), ``report.md``
(the thesis-layout tables, stage 2, degrees), ``config.json`` (the resolved settings) and the
plots (error histograms, the stereographic triangle, the worst images with spots overlaid).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edorient.errors import EdorientError
from edorient.evaluation import metrics as M
from edorient.evaluation import plots, tables
from edorient.indexing.matching import PatternScorer, TemplateMatcher
from edorient.indexing.method2 import stage2
from edorient.render import SimulationConfig, Simulator

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """Settings of :func:`evaluate_run`."""

    split: str = "random"
    """``random`` (the thesis' hold-out) or ``disjoint`` (test orientations never trained on)."""
    subsets: int = 5
    """Test subsets for the per-subset tables (the thesis: 5)."""
    batch_size: int = 128
    """Images per forward pass."""
    stage2_max: int = 200
    """Stage 2 runs on at most this many test images (0: skip; it simulates per image)."""
    refine_max: int = 200
    """The CNN's estimates of at most this many test images are refined against the image
    (:class:`edorient.indexing.estimators.Refined`) and their errors reported before and after
    (0: skip)."""
    matcher_directions: int = 300
    """Dictionary size of the template matcher used as the stage-2 baseline."""
    worst: int = 8
    """Worst images shown in the overlay grid."""
    seed: int = 0
    """Seed for choosing the stage-2 images."""
    device: str = "cpu"
    """Device of the forward passes."""
    progress: bool = True
    """Progress bars (tqdm, on stderr)."""


def _tqdm(it, progress: bool = True, **kw):
    from edorient._utils.progress import progress_bar

    return progress_bar(it, disable=not progress, **kw)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, batch_size: int = 128, device: str = "cpu",
            progress: bool = True) -> np.ndarray:
    """Model outputs (n, heads, 3) over a torch Dataset of (image, target, id) items."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = model.to(device).eval()
    out = []
    for batch in _tqdm(loader, progress, desc="predict", leave=False):
        out.append(model(batch[0].to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, 3), np.float32)


class CNNEstimator:
    """A single-crystal model as a callable: image (H, W) in [0, 1] -> direction (3,)."""

    def __init__(self, model: torch.nn.Module, input_size: int) -> None:
        self.model = model.eval()
        self.input_size = int(input_size)

    @torch.no_grad()
    def __call__(self, image01: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(image01, np.float32))[None, None]
        if x.shape[-1] != self.input_size:
            x = torch.nn.functional.interpolate(x, size=(self.input_size,) * 2, mode="area")
        return self.model(x).reshape(-1, 3)[0].numpy().astype(float)


def load_run_model(run: str | Path) -> tuple[torch.nn.Module, int]:
    """The model of a run folder (or a .pt file) in eval mode, and its input size."""
    from edorient.training.checkpoint import load_model

    model = load_model(find_checkpoint(run))
    return model, int(model.config.input_size)


def find_checkpoint(run_dir: str | Path) -> Path:
    """best.pt of a run folder (last.pt, or a fine-tuning run's last stage, if none), or the
    checkpoint of a shipped model named ``pretrained:NAME`` (:mod:`edorient.pretrained`)."""
    from edorient import pretrained

    if pretrained.is_pretrained(run_dir):
        return pretrained.resolve(run_dir)
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    # a fine-tuning run: the last stage's best checkpoint
    stages = sorted(run_dir.glob("stage_*/best.pt"))
    if stages:
        return stages[-1]
    raise EdorientError(f"no checkpoint in {run_dir} (expected best.pt); give a run folder of `edorient train`")


def sector_predictions(raw: np.ndarray, laue) -> np.ndarray:
    """Model outputs (..., 3) normalised (float64) and reduced to the fundamental sector.

    A symmetry-equivalent direction is the same physical answer, so every metric sees the
    predictions like the labels.
    """
    v = np.asarray(raw, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return laue.reduce(v / np.where(n > 0, n, 1.0))


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: EvaluateConfig | None = None,
    single_run: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate the model of ``run_dir`` on the test split of ``data_dir``; write ``out_dir``.

    ``single_run`` is a run of a single-crystal model (trained on ``--mode single`` data) used by
    Method 2 stage 2; stage 2 is also run with the template matcher as a CNN-free baseline.
    """
    from edorient._utils.outputs import claim_output_dir
    from edorient.data import open_dataset

    cfg = config or EvaluateConfig()
    out = Path(out_dir)
    data = open_dataset(data_dir)
    ckpt_path = find_checkpoint(run_dir)
    model, input_size = load_run_model(ckpt_path)
    claim_output_dir(out, "evaluation")  # new, empty or an earlier evaluation: never a user's folder
    test_ids = data.index(cfg.split, "test")
    if len(test_ids) == 0:
        raise EdorientError(f"split {cfg.split!r} of {data_dir} has no test images")
    position = {int(s): i for i, s in enumerate(test_ids)}
    subsets = [np.array([position[int(s)] for s in sub], dtype=int) for sub in data.test_subsets(cfg.split, cfg.subsets)]
    crystal = dataset_crystal(data)
    laue = crystal.laue
    resize = None if input_size == data.image_size else input_size
    log.info("predicting %d test images with %s", len(test_ids), ckpt_path)
    raw = predict(model, data.torch_dataset(test_ids, resize=resize), cfg.batch_size, cfg.device, cfg.progress)
    true = data.labels(test_ids).astype(np.float64)
    n_grains = true.shape[1]
    if raw.shape[1] != n_grains:
        raise EdorientError(
            f"the model has {raw.shape[1]} head(s) but {data_dir} has {n_grains} grain(s) per image"
        )
    pred = sector_predictions(raw, laue)  # predictions.npz keeps the raw outputs

    sim = Simulator(crystal, _sim_config(data))
    scorer = PatternScorer(sim)
    scores = None
    if n_grains == 2:
        scores = np.zeros((len(test_ids), 2))
        for i, sample in enumerate(_tqdm(test_ids, cfg.progress, desc="Method 2 pick by score", leave=False)):
            scores[i] = scorer.score(data.image(int(sample)), pred[i])[0]
    result = M.evaluate_predictions(pred, true, laue, subsets=subsets, scores=scores)
    result["n_test"] = int(len(test_ids))
    result["split"] = cfg.split
    result["checkpoint"] = str(ckpt_path)

    stage2_result = None
    if n_grains == 2 and cfg.stage2_max > 0:
        stage2_result = _run_stage2(data, test_ids, pred, true, scores, sim, scorer, laue, cfg, single_run)
        result["stage2"] = stage2_result

    if cfg.refine_max > 0:
        result["refinement"] = _run_refinement(data, test_ids, pred, true, sim, scorer, laue, cfg)

    # -- files ------------------------------------------------------------------------------
    resolved = {"evaluate": asdict(cfg), "run": str(run_dir), "data": str(data_dir), "single_run":
                None if single_run is None else str(single_run), "checkpoint": str(ckpt_path)}
    tables.write_json(resolved, out / "config.json")
    tables.write_json(result, out / "results.json")
    tables.write_csv(result, out / "results.csv")
    np.savez_compressed(out / "predictions.npz", ids=test_ids, pred=raw, true=true)
    report = [tables.report_markdown(result, title=f"edorient evaluation: {Path(run_dir).name} on {Path(data_dir).name} ({cfg.split} split)")]
    if stage2_result:
        report.append(stage2_markdown(stage2_result))
    if "refinement" in result:
        report.append(_refinement_markdown(result["refinement"]))
    report.append(_plots(out, data, test_ids, pred, true, laue, sim, scorer, cfg))
    tables.atomic_write_text(out / "report.md", "\n\n".join(report) + "\n")
    return result


def _run_refinement(data, test_ids, pred, true, sim, scorer, laue, cfg) -> dict[str, Any]:
    """The CNN's estimates of up to ``cfg.refine_max`` test images (seeded choice) refined against
    their images: errors before and after, and how often the reported uncertainty covers the
    true error (95 %: a 2-D Gaussian's radius 2.45 sigma, i.e. 1.73 x the RMS uncertainty)."""
    import time

    from edorient.indexing import Refiner
    from edorient.indexing.estimators import Estimator, Refined

    rng = np.random.default_rng(cfg.seed + 1)
    n = len(test_ids)
    chosen = np.sort(rng.choice(n, size=min(cfg.refine_max, n), replace=False))
    x = np.stack([data.image(int(test_ids[i])) for i in chosen]).astype(np.float32)
    rots = np.stack([scorer.score(im, p)[1] for im, p in zip(x, pred[chosen])])  # CNN directions -> orientations

    class _Given(Estimator):  # the CNN's predictions as computed above
        name = "CNN"

        def estimate(self, images01):
            return self._finish(rots, np.zeros(rots.shape[:2]))

    given = _Given(scorer, true.shape[1])
    t0 = time.perf_counter()
    est = Refined(given, Refiner(sim.crystal, sim.config, device=cfg.device)).estimate(x, given.estimate(x))
    seconds = time.perf_counter() - t0
    before, _ = M.grain_errors(pred[chosen], true[chosen], laue)
    after, swapped = M.grain_errors(est.directions, true[chosen], laue)
    unc = est.refinement.uncertainty_deg  # in the true grains' order, as the errors
    unc = np.where(swapped[:, None], unc[:, ::-1], unc)
    return {
        "n_images": int(len(chosen)),
        "before": {**M.angular_summary(before), "share_below_0.3deg": float(np.mean(before < 0.3))},
        "after": {**M.angular_summary(after), "share_below_0.3deg": float(np.mean(after < 0.3))},
        "share_within_95pct_uncertainty": float(np.mean(after <= 1.73 * unc)),
        "share_ambiguous": float(np.mean(est.refinement.direction_ambiguous)),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(chosen) / max(seconds, 1e-9), 2),
    }


def _refinement_markdown(r: dict[str, Any]) -> str:
    rows = ["## Refinement of the CNN's estimates against the image", "",
            f"{r['n_images']} test images; angle modulo the Laue group, per grain (order-free for two grains).", "",
            "| | median | p90 | p99 | < 0.3° | < 1° | < 2° |", "|---|---|---|---|---|---|---|"]
    for key in ("before", "after"):
        a = r[key]
        rows.append(f"| {key} | {a['median']:.3f}° | {a['p90']:.2f}° | {a['p99']:.2f}° | {100 * a['share_below_0.3deg']:.1f} % | "
                    f"{100 * a['share_below_1deg']:.1f} % | {100 * a['share_below_2deg']:.1f} % |")
    rows += ["", f"True error inside the reported 95 % interval: {100 * r['share_within_95pct_uncertainty']:.1f} %; "
             f"ambiguous: {100 * r['share_ambiguous']:.1f} %; {r['images_per_s']:.1f} images/s "
             f"({r['seconds']:.1f} s)."]
    return "\n".join(rows)


def dataset_crystal(data):
    """The crystal a data set was simulated from (built in, or its CIF path as recorded)."""
    from edorient.structures import get_crystal

    info = data.meta.get("config", {}).get("crystal", "anatase")
    if isinstance(info, str):
        return get_crystal(info)
    return get_crystal("anatase" if info.get("source") == "built-in" else info["source"])


def _sim_config(data) -> SimulationConfig:
    sim = dict(data.meta.get("config", {}).get("simulation", {}))
    fields = set(SimulationConfig.__dataclass_fields__)
    return SimulationConfig(**{k: v for k, v in sim.items() if k in fields})


def _run_stage2(data, test_ids, pred, true, scores, sim, scorer, laue, cfg, single_run) -> dict[str, Any]:
    rng = np.random.default_rng(cfg.seed)
    n = len(test_ids)
    chosen = np.sort(rng.choice(n, size=min(cfg.stage2_max, n), replace=False))
    m1_free, swapped = M.method1_errors(pred[chosen], true[chosen], order="free", return_swapped=True)
    estimators: dict[str, Any] = {"template matching": TemplateMatcher(sim, n_directions=cfg.matcher_directions)}
    if single_run is not None:
        model, size = load_run_model(single_run)
        estimators = {"single-crystal CNN": CNNEstimator(model, size), **estimators}
    picks = {"oracle": np.argmin(m1_free, axis=1), "score": np.argmax(scores[chosen], axis=1)}
    out: dict[str, Any] = {"n": int(len(chosen)), "estimators": list(estimators), "results": {}}
    for pick_name, kept_head in picks.items():
        # the grain each head stands for (order-free assignment), and so the "other" grain
        kept_grain = np.where(swapped, 1 - kept_head, kept_head)
        other = 1 - kept_grain
        other_true = true[chosen, other]
        # Method 1's own estimate of that other grain, for comparison
        m1_other = pred[chosen, 1 - kept_head]
        block = {"method1_other": _err_block(m1_other, other_true, laue)}
        for name, est in estimators.items():
            d2 = np.zeros((len(chosen), 3))
            for k, i in enumerate(_tqdm(chosen, cfg.progress, desc=f"stage 2 ({pick_name}, {name})", leave=False)):
                kept = pred[i, kept_head[k]]
                d2[k] = stage2(data.image(int(test_ids[i])), kept, sim, est, scorer=scorer).direction
            block[name] = _err_block(d2, other_true, laue)
        out["results"][pick_name] = block
    return out


def _err_block(est: np.ndarray, true: np.ndarray, laue) -> dict[str, Any]:
    a = M.thesis_errors(sector_predictions(est, laue), true)
    mae, sigma = M.mae_sigma(a)
    return {"mae": mae, "sigma": sigma, "angular": M.angular_summary(M.angular_errors(est, true, laue))}


def stage2_markdown(res: dict[str, Any]) -> str:
    """Stage 2 of Method 2: the other grain's error, beside Method 1's estimate of it."""
    lines = [
        "## Method 2, stage 2: the second grain",
        "",
        f"{res['n']} test images. The kept grain is chosen by the oracle (the thesis) or by the "
        "pattern-correlation score (what a user can do); its spots are erased and the other grain "
        "is estimated. Thesis error (eq. 3.2, sector-reduced) and angle modulo 4/mmm.",
        "",
        "| pick | estimate of the other grain | MAE | σ | median ° | mean ° | < 2° |",
        "|---|---|---|---|---|---|---|",
    ]
    for pick, block in res["results"].items():
        for name, r in block.items():
            label = "Method 1 (other head)" if name == "method1_other" else f"stage 2: {name}"
            a = r["angular"]
            lines.append(
                f"| {pick} | {label} | {r['mae']:.4f} | {r['sigma']:.4f} | {a['median']:.2f} | {a['mean']:.2f} | "
                f"{100 * a['share_below_2deg']:.1f} % |"
            )
    return "\n".join(lines)


#: Spots fainter than this (relative to the direct beam) are not marked in the overlays.
OVERLAY_MIN_INTENSITY = 2e-3


def _visible_pixels(sim: Simulator, R: np.ndarray) -> np.ndarray:
    spots = sim.spots(R)
    return sim.spot_pixels(spots)[spots.intensity >= OVERLAY_MIN_INTENSITY]


def _plots(out, data, test_ids, pred, true, laue, sim, scorer, cfg) -> str:
    n_grains = true.shape[1]
    if n_grains == 2:
        # the order-free assignment of heads to grains, then everything in grain order, so
        # column g goes with true[:, g] (the stereographic plot places errors at true[:, g])
        _, swapped = M.method1_errors(pred, true, order="free", return_swapped=True)
        assigned = np.where(swapped[:, None, None], pred[:, ::-1], pred)
        a = M.thesis_errors(assigned, true)
        deg = M.angular_errors(assigned, true, laue)
    else:
        a = M.thesis_errors(pred[:, 0], true[:, 0])[:, None]
        deg = M.angular_errors(pred[:, 0], true[:, 0], laue)[:, None]
    plots.plot_error_histograms(out / "error_histograms.png", a, angular_deg=deg)
    plots.plot_stereographic_errors(out / "stereographic_errors.png", true.reshape(-1, 3), deg.reshape(-1),
                                    label=f"angular error modulo {laue.name} (°)",
                                    title="error at the true direction (order-free heads)")
    worst = M.worst_indices(deg, min(cfg.worst, len(test_ids)))
    images, true_spots, pred_spots, titles = [], [], [], []
    rotations = data.rotations(test_ids[worst])
    for k, i in enumerate(worst):
        img = data.image(int(test_ids[i]))
        images.append(img)
        true_spots.append([_visible_pixels(sim, R) for R in rotations[k]])
        ps = []
        for g in range(n_grains):
            d = pred[i, g]
            ps.append(_visible_pixels(sim, scorer.score(img, d[None])[1][0]))
        pred_spots.append(ps)
        titles.append(f"id {int(test_ids[i])}: " + ", ".join(f"{x:.1f}°" for x in deg[i]))
    plots.plot_worst_images(out / "worst_images.png", np.stack(images), true_spots, pred_spots, titles=titles)
    return "\n".join([
        "## Plots", "",
        "![error histograms](error_histograms.png)", "",
        "![errors on the stereographic triangle](stereographic_errors.png)", "",
        "![worst images: circles = true spots, crosses = predicted](worst_images.png)",
    ])
