"""Orientation coverage: errors on orientations uniform over SO(3), split by mirror family.

A beam direction in the Laue sector plus an in-plane angle covers half of the orientations
(modulo the crystal's proper rotations); the other half (the "mirror" family, whose beam
direction reaches the sector through an improper operation) gives the mirror images of the
first half's patterns with the same labels. This benchmark measures every estimator on both
halves of fresh test images, so a before/after comparison shows what the missing half cost:

- template matching with a sector-only dictionary (before) and with both families (after);
- CNN checkpoints given as ``LABEL=PATH`` (e.g. the models shipped before and after).

    python benchmarks/bench_coverage.py --n 300 \\
        --single before=/tmp/old/anatase-single.pt --single after=pretrained:anatase-single \\
        --bicrystal before=/tmp/old/anatase-bicrystal.pt --bicrystal after=pretrained:anatase-bicrystal

Test images: 128 x 128 anatase, orientations uniform over SO(3) (seed ``--seed``), the shipped
cards' noise (dose log-uniform 300-1e5 counts, background 0-0.002) or none (``--clean``),
bicrystal weights uniform 0.35-0.65. Errors in degrees modulo 4/mmm (bicrystals: per grain
under the better head-to-grain assignment). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _family(laue, rotations: np.ndarray) -> np.ndarray:
    """+1: the beam direction reaches the sector by a proper operation; -1: by an improper one."""
    d = rotations[..., 2, :]
    return np.sign(np.sum(laue.reduce_proper(d) * laue.reduce(d), axis=-1))


def _images(sim, rotations: np.ndarray, clean: bool, rng: np.random.Generator) -> np.ndarray:
    from edorient.render import add_noise, display_transform

    size = sim.config.image_size
    lin = sim.linear_images(rotations.reshape(-1, 3, 3)).reshape(rotations.shape[:2] + (size, size))
    if rotations.shape[1] == 2:
        w = rng.uniform(0.35, 0.65, len(lin)).astype(np.float32)[:, None, None]
        mixed = w * lin[:, 0] + (1 - w) * lin[:, 1]
    else:
        mixed = lin[:, 0]
    if not clean:
        mixed = np.stack([add_noise(m, float(np.exp(rng.uniform(np.log(300), np.log(1e5)))),
                                    float(rng.uniform(0, 0.002)), rng) for m in mixed])
    return display_transform(mixed.astype(np.float32))


def _cnn_errors(path: str, x: np.ndarray, true: np.ndarray, laue) -> tuple[np.ndarray, float]:
    import torch

    from edorient.evaluation.metrics import grain_errors
    from edorient.evaluation.pipeline import load_run_model, sector_predictions

    model, size = load_run_model(path)
    t = time.perf_counter()
    with torch.no_grad():
        raw = torch.cat([model(torch.as_tensor(x[i:i + 256])[:, None]) for i in range(0, len(x), 256)])
    dt = time.perf_counter() - t
    pred = sector_predictions(raw.reshape(len(x), -1, 3).numpy(), laue)
    return grain_errors(pred, true, laue)[0], len(x) / dt  # per grain, in grain order


def _matcher_errors(sim, x: np.ndarray, true: np.ndarray, laue, mirror: bool, n_dirs: int) -> tuple[np.ndarray, float]:
    from edorient.indexing.matching import TemplateMatcher

    matcher = TemplateMatcher(sim, n_directions=n_dirs, mirror_family=mirror)
    t = time.perf_counter()
    est = np.stack([matcher(im) for im in x])
    dt = time.perf_counter() - t
    return laue.angle(est, true[:, 0])[:, None], len(x) / dt


def _row(name: str, err: np.ndarray, fam: np.ndarray, rate: float) -> str:
    def med(mask):
        return f"{np.median(err[mask]):.2f}" if mask.any() else "-"

    # a grain's family; for bicrystals each grain's error sits with its own family
    return (f"| {name} | {med(fam > 0)} | {med(fam < 0)} | {np.median(err):.2f} | {np.percentile(err, 90):.2f} | "
            f"{100 * np.mean(err < 1):.1f} % | {100 * np.mean(err < 2):.1f} % | {rate:,.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="test images per kind (default 300)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--clean", action="store_true", help="noise-free images")
    ap.add_argument("--single", action="append", default=[], metavar="LABEL=PATH", help="single-crystal checkpoint")
    ap.add_argument("--bicrystal", action="append", default=[], metavar="LABEL=PATH", help="bicrystal checkpoint")
    ap.add_argument("--matcher-directions", type=int, default=400)
    ap.add_argument("--no-matcher", action="store_true")
    a = ap.parse_args()

    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    xt = anatase()
    laue = xt.laue
    sim = Simulator(xt, SimulationConfig(image_size=a.size))
    print(f"# orientation coverage: n = {a.n} per kind, {a.size} px, {'noise-free' if a.clean else 'card noise'}, "
          f"seed {a.seed}\n")
    header = ("| estimator | median, covered family (°) | median, mirror family (°) | median, all (°) | p90 (°) | "
              "< 1° | < 2° | images/s |\n|---|---|---|---|---|---|---|---|")
    for kind, grains, models in (("single crystals", 1, a.single), ("bicrystals", 2, a.bicrystal)):
        if grains == 2 and not models:
            continue
        rng = np.random.default_rng(a.seed + grains)
        rot = random_rotations(a.n * grains, rng).reshape(a.n, grains, 3, 3)
        x = _images(sim, rot, a.clean, rng)
        true = laue.reduce(rot[..., 2, :])
        fam = _family(laue, rot)
        print(f"## {kind} ({np.mean(fam > 0) * 100:.0f} % of grains in the covered family)\n")
        print(header)
        if grains == 1 and not a.no_matcher:
            for mirror, name in ((False, "template matching, sector-only dictionary (before)"),
                                 (True, "template matching, both families (after)")):
                err, rate = _matcher_errors(sim, x, true, laue, mirror, a.matcher_directions)
                print(_row(name, err, fam, rate), flush=True)
        for spec in models:
            label, _, path = spec.partition("=")
            err, rate = _cnn_errors(path, x, true, laue)
            print(_row(f"CNN {label}", err, fam, rate), flush=True)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
