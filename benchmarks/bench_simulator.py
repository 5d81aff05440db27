"""Simulator speed: edorient vs py4DSTEM (spot patterns) and diffsims (224 x 224 images).

Run:   .venv/bin/python benchmarks/bench_simulator.py            (baselines need --setup once)
       .venv/bin/python benchmarks/bench_simulator.py --setup    (creates benchmarks/.venvs/*)

The baselines run as worker processes in their own virtualenvs (benchmarks/.venvs/py4dstem
with numpy < 2, benchmarks/.venvs/diffsims), on the same anatase cell (12 atoms) and the same N
random orientations (fixed seed, passed as a .npy file), at 200 kV and g_max = 2.19 Å⁻¹. After
each code's set-up and warm-up the timed passes are interleaved: round r times one pass of
edorient, then py4DSTEM, then diffsims (reversed order on odd rounds), so load changes on a
shared machine hit all codes alike; every figure is the median over --repeats rounds. Each
round is done twice: unpinned, and with every thread of the timed process pinned to CPU
--pin-cpu (``taskset -c``-style, for edorient and each baseline in turn), so a single core is
compared with a single core. The 1-min load average is printed at start and end. A baseline
whose venv is missing is skipped with a message.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_worker import pin_threads  # noqa: E402

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
TARGETS = {"spots": 3.0, "images": 10.0}
MODES = ("unpinned", "pinned")


def edorient_passes(sim: Simulator, R: np.ndarray, batch: int) -> dict:
    """name -> (function running one pass, items per pass)."""
    c = sim.config
    args = (sim.reflections, sim.wavelength, c.thickness, c.shape)

    def vectorised():  # excited spots (positions, intensities, indices) of all orientations
        for lo in range(0, len(R), batch):
            sim.spots_batch(R[lo : lo + batch])

    def unpruned():  # every reflection's intensity, then the excited ones (the old path)
        for lo in range(0, len(R), 32):
            _, _, inten = spot_intensities(args[0], R[lo : lo + 32], *args[1:])
            np.nonzero(inten >= c.min_intensity)

    def per_orientation():
        for r in R:
            sim.spots(r)

    half = len(R) // 2
    size = c.image_size
    buffer = np.empty((len(R), size, size), dtype=np.float32)

    def bicrystal_composed():  # the long way: two fresh linear stacks, compose, display
        a = sim.linear_images(R[:half])
        b = sim.linear_images(R[half : 2 * half])
        display_transform(compose(a, b, 0.5))

    return {
        "spots_vectorised": (vectorised, len(R)),
        "spots_unpruned": (unpruned, len(R)),
        "spots_per_orientation": (per_orientation, len(R)),
        "images": (lambda: sim.images(R), len(R)),
        "images_reused": (lambda: sim.images(R, out=buffer), len(R)),
        "images_composed": (lambda: display_transform(sim.linear_images(R)), len(R)),
        "images_linear": (lambda: sim.linear_images(R), len(R)),
        "bicrystal": (lambda: sim.bicrystal_images(R[:half], R[half : 2 * half]), half),
        "bicrystal_composed": (bicrystal_composed, half),
    }


class Worker:
    """A baseline in its venv, serving timed passes (protocol in _bench_worker.py)."""

    def __init__(self, name: str, work: Path, timeout: float) -> None:
        self.name, self.proc, self.meta = name, None, None
        py = VENVS / name / "bin" / "python"
        if not py.exists():
            print(f"[skip] {name}: no venv at {py} (run with --setup, or benchmarks/setup_baselines.sh)")
            return
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [str(py), str(HERE / f"_bench_{name}.py"), str(work)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True, env=env,
        )
        self.timeout = timeout
        self.meta = self._answer()

    def _answer(self) -> dict | None:
        for line in self.proc.stdout:  # skip anything that is not the protocol's JSON
            if line.startswith("{"):
                return json.loads(line)
        self.err.seek(0)
        print(f"[skip] {self.name}: worker exited ({self.proc.wait()}):\n{self.err.read()[-2000:]}")
        self.proc = None
        return None

    def run(self, pin) -> dict | None:
        if self.proc is None:
            return None
        self.proc.stdin.write(json.dumps({"pin": pin}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _med(xs: list[float]) -> float:
    return float(np.median(xs))


def _load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=256, help="random orientations (default 256)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians reported (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256, help="orientations per Simulator.spots_batch call")
    ap.add_argument("--pin-cpu", type=int, default=0, help="CPU for the pinned rounds (default 0)")
    ap.add_argument("--no-pinned", action="store_true", help="skip the pinned rounds")
    ap.add_argument("--setup", action="store_true", help="create the baseline venvs first")
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    a = ap.parse_args(argv)
    if a.setup:
        subprocess.run(["bash", str(HERE / "setup_baselines.sh")], check=True)
    load_start = _load()
    print(f"1-min load average at start: {load_start:.2f} on {os.cpu_count()} CPUs")

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
    passes = edorient_passes(sim, R, a.batch)
    for fn, _ in passes.values():  # warm-up
        fn()
    ours_meta = {"code": "edorient", "numpy": np.__version__, "python": platform.python_version(),
                 "mean_spots": float(np.mean([len(sim.spots(r)) for r in R]))}
    modes = MODES[:1] if a.no_pinned else MODES
    pins = {"unpinned": None, "pinned": [a.pin_cpu]}
    times = {m: {"edorient": {k: [] for k in passes}, "py4dstem": [], "diffsims": []} for m in modes}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "rotations.npy", R)
        (work / "params.json").write_text(json.dumps(params))
        workers = {name: Worker(name, work, timeout=300) for name in ("py4dstem", "diffsims")}
        try:
            for r in range(a.repeats):
                for mode in modes:
                    order = ["edorient", "py4dstem", "diffsims"]
                    for code in order if r % 2 == 0 else order[::-1]:
                        if code == "edorient":
                            pin_threads(pins[mode])
                            try:
                                for k, (fn, _) in passes.items():
                                    t1 = time.perf_counter()
                                    fn()
                                    times[mode]["edorient"][k].append(time.perf_counter() - t1)
                            finally:
                                pin_threads(None)
                        else:
                            res = workers[code].run(pins[mode])
                            if res is not None:
                                times[mode][code].append(res)
                print(f"  round {r + 1}/{a.repeats} done, load {_load():.2f}", flush=True)
        finally:
            for w in workers.values():
                w.close()
    wall = time.perf_counter() - t0
    load_end = _load()
    p4_meta, ds_meta = workers["py4dstem"].meta, workers["diffsims"].meta
    res: dict = {"n": a.n, "repeats": a.repeats, "params": params, "wall_s": wall,
                 "loadavg_1min_start": load_start, "loadavg_1min_end": load_end,
                 "cpus": os.cpu_count(), "pin_cpu": a.pin_cpu,
                 "meta": {"edorient": ours_meta, "py4dstem": p4_meta, "diffsims": ds_meta},
                 "times_s": times, "rates": {}, "ratios": {}}

    print(f"\nN = {a.n} orientations (seed {a.seed}), medians of {a.repeats} interleaved rounds; "
          f"1-min load average {load_start:.2f} at start, {load_end:.2f} at end, {os.cpu_count()} CPUs")
    print("  mean spots/pattern: edorient %.1f%s%s" % (
        ours_meta["mean_spots"],
        f", py4DSTEM {p4_meta['mean_spots']:.1f}" if p4_meta else "",
        f", diffsims {ds_meta['mean_spots']:.1f} (incl. direct beam)" if ds_meta else ""))
    labels = {
        "spots_vectorised": "edorient spot patterns/s, Simulator.spots_batch (pruned)",
        "spots_unpruned": "edorient spot patterns/s, spot_intensities all reflections + threshold",
        "spots_per_orientation": "edorient spot patterns/s, Simulator.spots per orientation",
        "images": "edorient 224x224 images/s, Simulator.images (spots, draw, display)",
        "images_reused": "edorient 224x224 images/s, Simulator.images into a reused array",
        "images_composed": "edorient 224x224 images/s, display_transform(linear_images)",
        "images_linear": "edorient 224x224 images/s, linear_images (no display)",
        "bicrystal": "edorient 224x224 bicrystals/s, Simulator.bicrystal_images",
        "bicrystal_composed": "edorient 224x224 bicrystals/s, 2 x linear_images + compose + display",
    }
    for mode in modes:
        tm = times[mode]
        rates = {k: passes[k][1] / _med(v) for k, v in tm["edorient"].items()}
        rows = [(labels[k], v) for k, v in rates.items()]
        if tm["py4dstem"]:
            rates["py4dstem"] = p4_meta["n"] / _med([x["spots_s"] for x in tm["py4dstem"]])
            rows.append((f"py4DSTEM {p4_meta['version']} generate_diffraction_pattern/s", rates["py4dstem"]))
        if tm["diffsims"]:
            n = ds_meta["n"]
            ts = _med([x["spots_s"] for x in tm["diffsims"]])
            tr = _med([x["render_s"] for x in tm["diffsims"]])
            te = _med([x["spots_s"] + x["render_s"] for x in tm["diffsims"]])
            rates["diffsims_spots"] = n / ts
            rates["diffsims_render"] = n / tr
            rates["diffsims_end_to_end"] = n / te
            rates["diffsims_bicrystal_render"] = ds_meta["n_bicrystal"] / _med([x["bicrystal_s"] for x in tm["diffsims"]])
            rows += [(f"diffsims {ds_meta['version']} calculate_diffraction2d patterns/s", rates["diffsims_spots"]),
                     ("diffsims get_diffraction_pattern(fast=True) 224x224/s, render only", rates["diffsims_render"]),
                     ("diffsims 224x224 images/s end to end (calculate + render)", rates["diffsims_end_to_end"]),
                     ("diffsims bicrystals/s, render only (2 renders + sum)", rates["diffsims_bicrystal_render"])]
        where = "all CPUs" if mode == "unpinned" else f"every timed process pinned to CPU {a.pin_cpu}"
        print(f"\n[{mode}: {where}]")
        for name, v in rows:
            print(f"  {name:<74s} {v:10.0f}")
        ratios = {}
        if "py4dstem" in rates:
            for k in ("spots_vectorised", "spots_per_orientation", "spots_unpruned"):
                target = TARGETS["spots"] if k != "spots_unpruned" else None
                ratios[f"{k} / py4DSTEM"] = (rates[k] / rates["py4dstem"], target)
        if "diffsims_render" in rates:
            ratios["images / diffsims end to end"] = (rates["images"] / rates["diffsims_end_to_end"], TARGETS["images"])
            ratios["images / diffsims render only"] = (rates["images"] / rates["diffsims_render"], TARGETS["images"])
            ratios["bicrystals / diffsims render only"] = (
                rates["bicrystal"] / rates["diffsims_bicrystal_render"], TARGETS["images"])
            for k in ("images_reused", "images_composed", "images_linear"):  # the other ways in
                ratios[f"{k} / diffsims render only"] = (rates[k] / rates["diffsims_render"], None)
        # Paired: the ratio within each round (same load for both), then its median.
        e = {k: np.array(v) for k, v in tm["edorient"].items()}
        paired = {}
        if tm["py4dstem"]:
            p4t = np.array([x["spots_s"] for x in tm["py4dstem"]])
            for k in ("spots_vectorised", "spots_per_orientation", "spots_unpruned"):
                paired[f"{k} / py4DSTEM"] = _med(p4t / e[k])
        if tm["diffsims"]:
            dst = tm["diffsims"]
            paired["images / diffsims end to end"] = _med(
                np.array([x["spots_s"] + x["render_s"] for x in dst]) / e["images"])
            paired["images / diffsims render only"] = _med(np.array([x["render_s"] for x in dst]) / e["images"])
            paired["bicrystals / diffsims render only"] = _med(
                np.array([x["bicrystal_s"] for x in dst]) / e["bicrystal"])
            for k in ("images_reused", "images_composed", "images_linear"):
                paired[f"{k} / diffsims render only"] = _med(np.array([x["render_s"] for x in dst]) / e[k])
        if ratios:
            print("  ratio (ours / theirs)                       of medians  median per round")
            for name, (rt, target) in ratios.items():
                verdict = "" if target is None else f"  target >= {target:g}x: {'met' if rt >= target else 'NOT met'}"
                print(f"  {name:<44s} {rt:8.1f}x {paired[name]:8.1f}x{verdict}")
        res["rates"][mode] = rates
        res["ratios"][mode] = {k: v[0] for k, v in ratios.items()}
        res.setdefault("paired_ratios", {})[mode] = paired
    print(f"\n  total wall time {wall:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
