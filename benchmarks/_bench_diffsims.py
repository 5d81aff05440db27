"""Benchmark worker for diffsims (SimulationGenerator + Simulation2D.get_diffraction_pattern,
fast=True); run by bench_simulator.py inside benchmarks/.venvs/diffsims. Never imported by
edorient.

Usage: python _bench_diffsims.py WORKDIR   (WORKDIR holds rotations.npy and params.json)
Prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
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
    gen.calculate_diffraction2d(phase, rot[: min(5, rot.size)], **kw)  # warm-up (numba, caches)
    spot_times, render_times, bi_times, nspots = [], [], [], []
    for _ in range(p["repeats"]):
        t0 = time.perf_counter()
        sim = gen.calculate_diffraction2d(phase, rot, **kw)
        spot_times.append(time.perf_counter() - t0)
        singles = [sim.irot[i] for i in range(rot.size)]  # one Simulation2D each (not timed)
        nspots = [s.coordinates.size for s in singles]
        t0 = time.perf_counter()
        imgs = [s.get_diffraction_pattern(**img_kw) for s in singles]
        render_times.append(time.perf_counter() - t0)
        half = len(singles) // 2
        t0 = time.perf_counter()
        for a, b in zip(singles[:half], singles[half : 2 * half]):
            ia = a.get_diffraction_pattern(**img_kw)
            ib = b.get_diffraction_pattern(**img_kw)
            _ = 0.5 * ia + 0.5 * ib
        bi_times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "code": "diffsims",
                "version": diffsims.__version__,
                "numpy": np.__version__,
                "python": sys.version.split()[0],
                "n": int(rot.size),
                "spots_times_s": spot_times,
                "render_times_s": render_times,
                "bicrystal_times_s": bi_times,
                "n_bicrystal": half,
                "mean_spots": float(np.mean(nspots)),
                "image_shape": list(np.shape(imgs[0])),
            }
        )
    )


if __name__ == "__main__":
    main()
