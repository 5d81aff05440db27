"""Simulator speed: edorient vs py4DSTEM (spot patterns) and diffsims (224 x 224 images).

Run:   .venv/bin/python benchmarks/bench_simulator.py            (baselines need --setup once)
       .venv/bin/python benchmarks/bench_simulator.py --setup    (creates benchmarks/.venvs/*)

One process times edorient; the baselines run as subprocesses in their own virtualenvs
(benchmarks/.venvs/py4dstem with numpy < 2, benchmarks/.venvs/diffsims), on the same anatase
cell (12 atoms) and the same N random orientations (fixed seed, passed as a .npy file), at
200 kV and g_max = 2.19 Å⁻¹. Each figure is the median over --repeats timed passes (after a
warm-up). A baseline whose venv is missing is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edorient.physics.orientation import random_rotations
from edorient.physics.pattern import spot_intensities
from edorient.render import SimulationConfig, Simulator, compose, display_transform
from edorient.structures import anatase

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
TARGETS = {"spots": 3.0, "images": 10.0}


def _median_rate(n: int, times: list[float]) -> float:
    return n / float(np.median(times))


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_edorient(sim: Simulator, R: np.ndarray, repeats: int, batch: int) -> dict:
    c = sim.config
    args = (sim.reflections, sim.wavelength, c.thickness, c.shape)

    def vectorised():  # all reflections, all orientations, then the excited ones of each
        for lo in range(0, len(R), batch):
            _, _, inten = spot_intensities(args[0], R[lo : lo + batch], *args[1:])
            np.nonzero(inten >= c.min_intensity)

    def per_orientation():
        for r in R:
            sim.spots(r)

    half = len(R) // 2

    def bicrystal():
        a = sim.linear_images(R[:half])
        b = sim.linear_images(R[half : 2 * half])
        display_transform(compose(a, b, 0.5))

    return {
        "code": "edorient",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "mean_spots": float(np.mean([len(sim.spots(r)) for r in R])),
        "spots_vectorised": _median_rate(len(R), _time(vectorised, repeats)),
        "spots_per_orientation": _median_rate(len(R), _time(per_orientation, repeats)),
        "images": _median_rate(len(R), _time(lambda: display_transform(sim.linear_images(R)), repeats)),
        "bicrystal": _median_rate(half, _time(bicrystal, repeats)),
    }


def run_worker(name: str, work: Path, timeout: float) -> dict | None:
    py = VENVS / name / "bin" / "python"
    script = HERE / f"_bench_{name}.py"
    if not py.exists():
        print(f"[skip] {name}: no venv at {py} (run with --setup, or benchmarks/setup_baselines.sh)")
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        proc = subprocess.run(
            [str(py), str(script), str(work)], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        print(f"[skip] {name}: timed out after {timeout:.0f} s")
        return None
    if proc.returncode != 0:
        print(f"[skip] {name}: worker failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=256, help="random orientations (default 256)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes; medians reported (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32, help="orientations per spot_intensities call")
    ap.add_argument("--setup", action="store_true", help="create the baseline venvs first")
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    a = ap.parse_args(argv)
    if a.setup:
        subprocess.run(["bash", str(HERE / "setup_baselines.sh")], check=True)

    xtal = anatase()
    cfg = SimulationConfig(voltage_kv=200.0)  # default 224 x 224, g_max 2.19 1/Å, t = 50 Å, sinc²
    sim = Simulator(xtal, cfg)
    R = random_rotations(a.n, rng=a.seed)
    t = cfg.thickness
    params = {
        "cell": list(xtal.cell),
        "frac": xtal.frac.tolist(),
        "numbers": xtal.numbers.tolist(),
        "symbols": list(xtal.symbols),
        "occupancy": xtal.occupancy.tolist(),
        "b_iso": xtal.b_iso.tolist(),
        "voltage_kv": cfg.voltage_kv,
        "g_max": cfg.resolved_g_max,
        "image_size": cfg.image_size,
        "spot_sigma_px": cfg.spot_sigma_px,
        "calibration": cfg.resolved_calibration,
        "repeats": a.repeats,
        # Excitation-error tolerances comparable to edorient's sinc²(t s), t = 50 Å, whose
        # central lobe ends at |s| = 1/t = 0.02 1/Å: py4DSTEM keeps |s| < 3 sigma with a
        # Gaussian of sigma = 1/t; diffsims keeps |s| < 1/t.
        "py4dstem_sigma_excitation_error": 1.0 / t,
        "py4dstem_tol_excitation_error_mult": 3.0,
        "py4dstem_tol_intensity": cfg.min_intensity,
        "diffsims_max_excitation_error": 1.0 / t,
        "diffsims_minimum_intensity": cfg.min_intensity,
    }
    t0 = time.perf_counter()
    ours = bench_edorient(sim, R, a.repeats, a.batch)
    res: dict = {"edorient": ours, "n": a.n, "repeats": a.repeats, "params": params}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "rotations.npy", R)
        (work / "params.json").write_text(json.dumps(params))
        res["py4dstem"] = run_worker("py4dstem", work, timeout=300)
        res["diffsims"] = run_worker("diffsims", work, timeout=300)
    res["wall_s"] = time.perf_counter() - t0
    res["loadavg_1min"] = os.getloadavg()[0]

    p4, ds = res["py4dstem"], res["diffsims"]
    rows = [("edorient spot patterns/s, spot_intensities vectorised", ours["spots_vectorised"]),
            ("edorient spot patterns/s, Simulator.spots per orientation", ours["spots_per_orientation"]),
            ("edorient 224x224 images/s (linear_images + display_transform)", ours["images"]),
            ("edorient 224x224 bicrystals/s (2 x linear_images + compose + display)", ours["bicrystal"])]
    if p4:
        p4["spots"] = _median_rate(p4["n"], p4["spots_times_s"])
        rows.append((f"py4DSTEM {p4['version']} generate_diffraction_pattern/s", p4["spots"]))
    if ds:
        n = ds["n"]
        ds["spots"] = _median_rate(n, ds["spots_times_s"])
        ds["render"] = _median_rate(n, ds["render_times_s"])
        ds["end_to_end"] = n / (float(np.median(ds["spots_times_s"])) + float(np.median(ds["render_times_s"])))
        ds["bicrystal_render"] = _median_rate(ds["n_bicrystal"], ds["bicrystal_times_s"])
        rows += [(f"diffsims {ds['version']} calculate_diffraction2d patterns/s", ds["spots"]),
                 ("diffsims get_diffraction_pattern(fast=True) 224x224/s, render only", ds["render"]),
                 ("diffsims 224x224 images/s end to end (calculate + render)", ds["end_to_end"]),
                 ("diffsims bicrystals/s, render only (2 renders + sum)", ds["bicrystal_render"])]
    print(f"\nN = {a.n} orientations (seed {a.seed}), medians of {a.repeats} passes; "
          f"1-min load average {res['loadavg_1min']:.2f} on {os.cpu_count()} CPUs\n")
    for name, v in rows:
        print(f"  {name:<72s} {v:10.0f}")
    print("\n  mean spots/pattern: edorient %.1f%s%s" % (
        ours["mean_spots"],
        f", py4DSTEM {p4['mean_spots']:.1f}" if p4 else "",
        f", diffsims {ds['mean_spots']:.1f} (incl. direct beam)" if ds else ""))
    ratios = {}
    if p4:
        ratios["spots vectorised / py4DSTEM"] = (ours["spots_vectorised"] / p4["spots"], TARGETS["spots"])
        ratios["spots per orientation / py4DSTEM"] = (ours["spots_per_orientation"] / p4["spots"], TARGETS["spots"])
    if ds:
        ratios["images / diffsims end to end"] = (ours["images"] / ds["end_to_end"], TARGETS["images"])
        ratios["images / diffsims render only"] = (ours["images"] / ds["render"], TARGETS["images"])
        ratios["bicrystals / diffsims render only"] = (ours["bicrystal"] / ds["bicrystal_render"], TARGETS["images"])
        ratios["spots vectorised / diffsims"] = (ours["spots_vectorised"] / ds["spots"], None)
    if ratios:
        print("\n  ratio (ours / theirs)")
        for name, (r, target) in ratios.items():
            verdict = "" if target is None else f"  target >= {target:g}x: {'met' if r >= target else 'NOT met'}"
            print(f"  {name:<44s} {r:8.1f}x{verdict}")
    res["ratios"] = {k: v[0] for k, v in ratios.items()}
    print(f"\n  total wall time {res['wall_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
