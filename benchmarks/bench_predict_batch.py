"""Many files: ``edorient predict A B C ... --out-dir DIR`` in one process against one
``edorient predict FILE --json`` process a file (how a user would loop over a folder before).

    python benchmarks/bench_predict_batch.py --n 12 --out DIR [--cif X.cif] [--seed 0]

Simulates ``--n`` noisy single-crystal patterns (bench_verdict's recipe: 192 px, 0.0125 1/Å per
px, halo, Poisson noise at dose 2e5; orientations uniform over SO(3) from ``--seed``), then times,
in the same run, (a) one CLI process per file for the first ``--loop`` files (each pays the
interpreter, the imports and the on-disk dictionary's load; the dictionary is built first by a
warm-up call so that neither side pays the build), (b) one ``--out-dir`` process over all ``--n``.
Prints seconds a file for each and their ratio, and checks that both gave the same answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def simulate(crystal, n: int, seed: int, out: Path) -> list[Path]:
    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator

    rng = np.random.default_rng(seed)
    R = random_rotations(n, rng=seed)
    imgs = Simulator(crystal, SimulationConfig(image_size=192, calibration=0.0125, spot_sigma_px=1.6)).images(R)
    c = 191 / 2
    rr, cc = np.indices((192, 192), dtype=float)
    halo = 0.02 * np.exp(-np.hypot(rr - c, cc - c) / 25.0) + 0.002
    paths = []
    for i, im in enumerate(imgs):
        p = out / f"p{i:03d}.npy"
        np.save(p, rng.poisson((im + halo) * 2e5).astype(np.float32))
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--loop", type=int, default=4, help="files run one process each (the baseline)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cif", default=None, help="the crystal (default: the built-in anatase)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from edorient.structures import get_crystal

    crystal = get_crystal(args.cif or "anatase")
    args.out.mkdir(parents=True, exist_ok=True)
    paths = simulate(crystal, args.n, args.seed, args.out)
    env = dict(os.environ, EDORIENT_CACHE=str(args.out / "cache"))
    cli = [sys.executable, "-m", "edorient.cli.main", "-q", "predict"]
    common = ["--crystal", args.cif or "anatase", "--calibration", "0.0125"]
    subprocess.run(cli + [str(paths[0]), *common, "--json", str(args.out / "warm.json")], check=True, env=env,
                   capture_output=True)  # builds the dictionaries on disk: neither side below pays that
    loop = []
    t = time.perf_counter()
    for p in paths[:args.loop]:
        js = args.out / f"loop_{p.name}.json"
        subprocess.run(cli + [str(p), *common, "--json", str(js), "--overlay", str(js.with_suffix(".png"))],
                       check=True, env=env, capture_output=True)
        loop.append(json.loads(js.read_text()))
    t_loop = (time.perf_counter() - t) / args.loop
    batch_dir = args.out / "batch"
    t = time.perf_counter()
    subprocess.run(cli + [*map(str, paths), *common, "--out-dir", str(batch_dir)], check=True, env=env,
                   capture_output=True)
    t_batch = (time.perf_counter() - t) / args.n
    same = sum(json.loads((batch_dir / f"{p.name}.json").read_text())["grains"][0]["orientation_matrix"]
               == r["grains"][0]["orientation_matrix"] for p, r in zip(paths, loop))
    print("| crystal | files | one process a file, s a file | --out-dir, s a file (the first's dictionary load "
          "included) | ratio | same answers |")
    print("|---|---|---|---|---|---|")
    print(f"| {crystal.name} | {args.n} | {t_loop:.2f} (first {args.loop}) | {t_batch:.2f} | {t_loop / t_batch:.1f}x | "
          f"{same} of {args.loop} |")


if __name__ == "__main__":
    main()
