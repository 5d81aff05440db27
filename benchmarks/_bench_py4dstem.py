"""Benchmark worker for py4DSTEM's kinematic generator; run by bench_simulator.py inside
benchmarks/.venvs/py4dstem (py4DSTEM needs numpy < 2). Never imported by edorient.

Usage: python _bench_py4dstem.py WORKDIR   (WORKDIR holds rotations.npy and params.json)
Serves timed passes on request (protocol in _bench_worker.py): after setup and a warm-up it
prints {"ready": true, ...}; each command line on stdin ({"pin": [cpus] or null}) runs one
pass over all orientations, pinned to those CPUs, and prints {"spots_s": seconds, ...}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from _bench_worker import protocol_stream, serve


def main() -> None:
    out = protocol_stream()
    work = Path(sys.argv[1])
    p = json.loads((work / "params.json").read_text())
    R = np.load(work / "rotations.npy")  # (n, 3, 3) crystal -> lab, edorient convention
    import py4DSTEM
    from py4DSTEM.process.diffraction import Crystal

    xtal = Crystal(np.array(p["frac"]), np.array(p["numbers"]), np.array(p["cell"]))
    t0 = time.perf_counter()
    xtal.calculate_structure_factors(k_max=p["g_max"])
    t_setup = time.perf_counter() - t0
    xtal.setup_diffraction(p["voltage_kv"] * 1e3)

    kw = dict(
        sigma_excitation_error=p["py4dstem_sigma_excitation_error"],
        tol_excitation_error_mult=p["py4dstem_tol_excitation_error_mult"],
        tol_intensity=p["py4dstem_tol_intensity"],
        k_max=p["g_max"],
    )
    # py4DSTEM computes g = M.T @ g_crystal, so its orientation matrix is edorient's R.T.
    Ms = np.ascontiguousarray(np.transpose(R, (0, 2, 1)))
    counts = [xtal.generate_diffraction_pattern(orientation_matrix=M, **kw).data.shape[0] for M in Ms]

    def run_pass() -> dict:
        t0 = time.perf_counter()
        for M in Ms:
            xtal.generate_diffraction_pattern(orientation_matrix=M, **kw)
        return {"spots_s": time.perf_counter() - t0}

    meta = {
        "code": "py4DSTEM",
        "version": py4DSTEM.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "n": len(Ms),
        "n_reflections": int(xtal.g_vec_all.shape[1]),
        "setup_s": t_setup,
        "mean_spots": float(np.mean(counts)),
    }
    serve(out, meta, run_pass)


if __name__ == "__main__":
    main()
