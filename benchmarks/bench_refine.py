"""Sub-degree refinement (edorient.indexing): errors before and after, speed, calibration.

Test images: fresh orientations uniform over SO(3) (seed ``--seed``), ``--size`` px anatase, the
shipped cards' noise (Poisson dose log-uniform 300-1e5 counts at the direct beam, background
0-0.002) or none (``--clean``); bicrystal weights uniform 0.35-0.65.

Proposals: template matching (:class:`~edorient.indexing.matching.TemplateMatcher`) for single
crystals; template matching for grain A and Method 2's stage 2 (A's spots erased, template
matching again) for grain B of bicrystals; every grain also gets its half-turn and other-family
starts (:mod:`edorient.indexing.proposals`). "before" is the template matcher's estimate.

Errors: beam directions modulo the Laue group (:meth:`LaueGroup.angle`), degrees; bicrystals
order-free (the better grain assignment). "in 95 %": share of grains whose true beam direction
lies in the reported 95 % ellipse (Mahalanobis² of the tilt error under the reported tilt
covariance <= 5.99). Speed: the refinement alone (proposals excluded), images per second, with
``--threads`` torch threads; the row "bicrystal, 2 passes" (:func:`refine_bicrystals`: a second
pass erases each refined grain and template-matches its partner again) includes that second
pass's template matching.

    python benchmarks/bench_refine.py --n 200
    python benchmarks/bench_refine.py --n 50 --kinds single --clean

Prints a markdown table; ``--cache PATH.npz`` keeps the images and proposals (slow: template
matching takes ~0.4 s an image) for reruns with other refinement settings.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _images(sim, rotations: np.ndarray, clean: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from edorient.render import add_noise, display_transform

    size = sim.config.image_size
    lin = sim.linear_images(rotations.reshape(-1, 3, 3)).reshape(rotations.shape[:2] + (size, size))
    if rotations.shape[1] == 2:
        w = rng.uniform(0.35, 0.65, len(lin))
        mixed = w.astype(np.float32)[:, None, None] * lin[:, 0] + (1 - w.astype(np.float32))[:, None, None] * lin[:, 1]
    else:
        w = np.ones(len(lin))
        mixed = lin[:, 0]
    if not clean:
        mixed = np.stack([add_noise(m, float(np.exp(rng.uniform(np.log(300), np.log(1e5)))),
                                    float(rng.uniform(0, 0.002)), rng) for m in mixed])
    return display_transform(mixed.astype(np.float32)), w


def _errors(laue, est: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-grain errors (n, g) in true-grain order and the estimate index of each true grain."""
    from edorient.evaluation.metrics import grain_errors

    err, swapped = grain_errors(est, true, laue)
    order = np.where(swapped[:, None], [[1, 0]], [[0, 1]])[:, : true.shape[1]]
    return err, order


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="test images per kind (default 200)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--clean", action="store_true", help="noise-free images")
    ap.add_argument("--kinds", default="single,bicrystal")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the refinement")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--matcher-directions", type=int, default=400)
    ap.add_argument("--no-flips", action="store_true", help="no half-turn starts")
    ap.add_argument("--families", action="store_true", help="other-family starts for bicrystals too")
    ap.add_argument("--cache", default=None, help="npz file keeping images and proposals")
    ap.add_argument("--tile", type=int, default=1,
                    help="also time the refinement of the images repeated this many times in one batch "
                         "(throughput at a larger batch, e.g. on CUDA; errors are of the single copy)")
    ap.add_argument("--passes", type=int, default=2,
                    help="bicrystals: also report refine_bicrystals with this many passes (1: no)")
    a = ap.parse_args()

    import torch

    from edorient.indexing.matching import TemplateMatcher
    from edorient.indexing.proposals import (
        bicrystal_hypotheses,
        refine_bicrystals,
        single_hypotheses,
    )
    from edorient.indexing.refine import Refiner, beam_tilt_error
    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    torch.set_num_threads(a.threads)
    xt = anatase()
    laue = xt.laue
    cfg = SimulationConfig(image_size=a.size)
    sim = Simulator(xt, cfg)
    refiner = Refiner(xt, cfg, device=a.device)
    cache = dict(np.load(a.cache)) if a.cache and os.path.exists(a.cache) else {}
    matcher = None
    print(f"# refinement: n = {a.n} per kind, {a.size} px, {'noise-free' if a.clean else 'card noise'}, "
          f"seed {a.seed}, {a.threads} torch thread(s), device {a.device}\n")
    rows, tiled = [], []
    for kind in a.kinds.split(","):
        grains = 1 if kind == "single" else 2
        key = f"{kind}_{a.n}_{a.size}_{a.seed}_{int(a.clean)}_{int(a.no_flips)}_{int(a.families)}"
        if key + "_x" in cache:
            x, rot, w, hyp, t_prop = (cache[key + s] for s in ("_x", "_rot", "_w", "_hyp", "_tprop"))
            t_prop = float(t_prop)
        else:
            rng = np.random.default_rng(a.seed + grains)
            rot = random_rotations(a.n * grains, rng).reshape(a.n, grains, 3, 3)
            x, w = _images(sim, rot, a.clean, rng)
            if matcher is None:
                matcher = TemplateMatcher(sim, n_directions=a.matcher_directions)
            t = time.perf_counter()
            if grains == 1:
                hyp = single_hypotheses(matcher, x, flips=not a.no_flips)
            else:
                hyp = bicrystal_hypotheses(matcher, x, flips=not a.no_flips, families=a.families)
            t_prop = time.perf_counter() - t
            cache.update({key + "_x": x, key + "_rot": rot, key + "_w": w, key + "_hyp": hyp,
                          key + "_tprop": np.array(t_prop)})
            if a.cache:
                np.savez_compressed(a.cache, **cache)
        true = rot[..., 2, :]
        refiner.refine(x[:2], hyp[:2])  # warm-up
        t = time.perf_counter()
        res = refiner.refine(x, hyp)
        dt = time.perf_counter() - t
        before, _ = _errors(laue, hyp[:, 0, :, 2, :], true)
        runs = [(kind, res, len(x) / dt, len(x) / t_prop)]
        if a.tile > 1:
            xt_, ht_ = np.tile(x, (a.tile, 1, 1)), np.tile(hyp, (a.tile,) + (1,) * (hyp.ndim - 1))
            t = time.perf_counter()
            big = refiner.refine(xt_, ht_)
            dt_big = time.perf_counter() - t
            same = np.abs(big.rotations[: len(x)] - res.rotations).max()
            tiled.append(f"{kind}: {len(xt_)} images in one batch ({a.tile} copies) refined in {dt_big:.2f} s: "
                         f"{len(xt_) / dt_big:,.1f} images/s on {a.device} (the first copy's rotations within "
                         f"{same:.1e} of the single batch's)")
        if grains == 2 and a.passes > 1:
            if matcher is None:
                matcher = TemplateMatcher(sim, n_directions=a.matcher_directions)
            t = time.perf_counter()
            res2 = refine_bicrystals(refiner, matcher, x, hyp, passes=a.passes)
            dt2 = time.perf_counter() - t + dt
            runs.append((f"bicrystal, {a.passes} passes", res2, len(x) / dt2, len(x) / t_prop))
        for name, r, rate, prate in runs:
            after, order = _errors(laue, r.beam_directions, true)
            # calibration: Mahalanobis² of the tilt error of each true grain's estimate
            ar = np.arange(len(x))[:, None]
            e = beam_tilt_error(r.rotations[ar, order], true, laue)
            cov = r.tilt_covariance[ar, order]
            m2 = np.einsum("...i,...ij,...j->...", e, np.linalg.inv(cov + 1e-12 * np.eye(2)), e)
            rows.append((name, len(x), r.hypothesis_scores.shape[1], before, after, m2, r.ambiguous[ar, order],
                         r.uncertainty_deg[ar, order], rate, prate, r.best))
    print("| kind | n | hypotheses | median before (°) | median after (°) | p90 after (°) | < 0.1° | < 0.3° "
          "| < 1° | in 95 % | median σ (°) | ambiguous | median after, not ambiguous (°) | refine images/s "
          "| proposals images/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, n, h, before, after, m2, amb, unc, rate, prate, best in rows:
        clear = after[~amb] if (~amb).any() else np.array([np.nan])
        print(f"| {kind} | {n} | {h} | {np.median(before):.3f} | {np.median(after):.3f} | "
              f"{np.percentile(after, 90):.3f} | {100 * np.mean(after < 0.1):.1f} % | "
              f"{100 * np.mean(after < 0.3):.1f} % | {100 * np.mean(after < 1):.1f} % | "
              f"{100 * np.mean(m2 <= 5.991):.1f} % | {np.median(unc):.3f} | {100 * np.mean(amb):.1f} % | "
              f"{np.median(clear):.3f} | {rate:,.1f} | {prate:,.2f} |")
    print()
    for line in tiled:
        print(line)
    for kind, n, h, before, after, m2, amb, unc, rate, prate, best in rows:
        wins = np.bincount(best, minlength=h)
        print(f"{kind}: winning hypothesis counts {wins.tolist()}; errors > 1° after: "
              f"{np.round(np.sort(after[after > 1])[::-1][:10], 2).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
