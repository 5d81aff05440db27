"""Benchmark worker for diffsims (SimulationGenerator + Simulation2D.get_diffraction_pattern,
fast=True); run by bench_simulator.py inside benchmarks/.venvs/diffsims. Never imported by
edorient.

Usage: python _bench_diffsims.py WORKDIR   (WORKDIR holds rotations.npy and params.json)
Serves timed passes on request (protocol in _bench_worker.py); each pass times
calculate_diffraction2d over all orientations, rendering them, and rendering N/2 bicrystals.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _bench_worker import protocol_stream, serve

warnings.filterwarnings("ignore")


def main() -> None:
    out = protocol_stream()
    work = Path(sys.argv[1])
    p = json.loads((work / "params.json").read_text())
    R = np.load(work / "rotations.npy")  # (n, 3, 3) crystal -> lab, edorient convention
    import diffsims
    from diffpy.structure import Atom, Lattice, Structure
    from diffsims.generators.simulation_generator import SimulationGenerator
    from orix.crystal_map import Phase
    from orix.quaternion import Rotation

    # The same 12 atoms (P1 listing of the symmetry-expanded cell) as edorient; the space group
    # only gives orix its point group. B -> U_iso = B / (8 pi^2).
    atoms = [
        Atom(s, xyz, occupancy=o, Uisoequiv=b / (8 * np.pi**2))
        for s, xyz, o, b in zip(p["symbols"], p["frac"], p["occupancy"], p["b_iso"])
    ]
    structure = Structure(atoms=atoms, lattice=Lattice(*p["cell"]))
    phase = Phase(name="anatase", space_group=141, structure=structure)
    gen = SimulationGenerator(accelerating_voltage=p["voltage_kv"], minimum_intensity=p["diffsims_minimum_intensity"])
    rot = Rotation.from_matrix(R)  # orix matrices are edorient's R (crystal -> lab) up to
    # orix's passive convention, i.e. possibly R.T: both sets are Haar-uniform, so the timing is
    # the same either way.
    kw = dict(
        reciprocal_radius=p["g_max"],
        max_excitation_error=p["diffsims_max_excitation_error"],
        with_direct_beam=True,
    )
    img_kw = dict(
        shape=(p["image_size"], p["image_size"]),
        sigma=p["spot_sigma_px"],
        calibration=p["calibration"],
        fast=True,
    )
    warm = gen.calculate_diffraction2d(phase, rot[: min(5, rot.size)], **kw)  # numba, caches
    warm.irot[0].get_diffraction_pattern(**img_kw)
    first = gen.calculate_diffraction2d(phase, rot, **kw)
    nspots = [first.irot[i].coordinates.size for i in range(rot.size)]
    shape = list(np.shape(first.irot[0].get_diffraction_pattern(**img_kw)))
    half = rot.size // 2

    def run_pass() -> dict:
        t0 = time.perf_counter()
        sim = gen.calculate_diffraction2d(phase, rot, **kw)
        t_spots = time.perf_counter() - t0
        singles = [sim.irot[i] for i in range(rot.size)]  # one Simulation2D each (not timed)
        t0 = time.perf_counter()
        for s in singles:
            s.get_diffraction_pattern(**img_kw)
        t_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        for a, b in zip(singles[:half], singles[half : 2 * half]):
            _ = 0.5 * a.get_diffraction_pattern(**img_kw) + 0.5 * b.get_diffraction_pattern(**img_kw)
        return {"spots_s": t_spots, "render_s": t_render, "bicrystal_s": time.perf_counter() - t0}

    meta = {
        "code": "diffsims",
        "version": diffsims.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "n": int(rot.size),
        "n_bicrystal": half,
        "mean_spots": float(np.mean(nspots)),
        "image_shape": shape,
    }
    serve(out, meta, run_pass)


if __name__ == "__main__":
    main()
