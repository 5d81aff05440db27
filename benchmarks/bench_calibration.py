"""Calibration fit and centre finder (issue 11, items 2 and 3): real cases and simulated ones.

Real: every case of ``../shared/realdata/cases.tsv`` through
:func:`edorient.indexing.calibration.fit_calibration` (zone given, and zone and calibration
unknown), against the README's calibration and direct beam. Simulated: anatase near low-index
zones (tilt <= 0.5°, random in-plane angle), direct beam off-centre, a diffuse halo, Poisson
noise, 3 % ellipticity at a random angle, every other pattern behind a beam stop (a disc and a
rod, masked); the guess is 5 % off. Prints markdown tables (docs/results.md, "Calibration").

    python benchmarks/bench_calibration.py --n 20 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "realdata"
sys.path.insert(0, str(ROOT / "tests" / "unit" / "indexing"))  # _measured: the tests' pattern maker


def real_cases() -> None:
    from edorient.indexing.calibration import fit_calibration
    from edorient.indexing.spots import find_centre
    from edorient.io.images import read_image
    from edorient.structures import get_crystal

    print("| case | zone | calibration fitted (true) | error | ellipticity, axis | centre (true) | spots used / found | residual | missing | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for line in (REAL / "cases.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, image, cif, zone, cal, _, beam = line.split("\t")
        truth, zone = float(cal), [int(x) for x in zone.split()]
        beam = [float(x) for x in beam.split()]
        img, xtal = read_image(REAL / image), get_crystal(REAL / cif)
        c = find_centre(img)
        for z in (zone, None):
            t0 = time.perf_counter()
            f = fit_calibration(img, xtal, zone=z)
            dt = time.perf_counter() - t0
            print(f"| {name} | {'given' if z else 'searched: [' + ' '.join(map(str, f.zone)) + ']'} | {f.calibration:.5f} ({truth}) | "
                  f"{100 * (f.calibration / truth - 1):+.2f} % | {f.ellipticity:.4f}, {f.angle_deg:.0f}° | "
                  f"({f.centre[0]:.2f}, {f.centre[1]:.2f}) ({beam[0]}, {beam[1]}) | {f.n_spots} / {f.n_found} | "
                  f"{f.residual_px:.2f} px | {f.missing_share:.2f} | {dt:.2f} |")
        print(f"<!-- {name}: find_centre ({c.row:.2f}, {c.col:.2f}), {c.n_pairs} pairs, symmetry {c.symmetry_score:.2f} -->")


def simulated(n: int, seed: int) -> None:
    from _measured import measured

    from edorient.indexing.calibration import fit_calibration
    from edorient.physics.orientation import rotation_from_direction
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    true = 0.012
    x = anatase()
    sim = Simulator(x, SimulationConfig(image_size=256, calibration=true, spot_sigma_px=1.5))
    rng = np.random.default_rng(seed)
    zones = [[0, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 0, 3], [2, 0, 1], [1, 1, 2], [3, 3, 1], [0, 1, 2]]
    rows = {True: [], False: []}
    fails = {True: [], False: []}
    times = []
    for t in range(n):
        z = zones[t % len(zones)]
        d = x.zone_axis_direction(z)
        tilt = rng.normal(size=3)
        tilt -= tilt.dot(d) * d
        tilt *= np.radians(rng.uniform(0, 0.5)) / np.linalg.norm(tilt)
        R = rotation_from_direction((d + tilt) / np.linalg.norm(d + tilt), rng.uniform(0, 360))
        ctr = (rng.uniform(110, 146), rng.uniform(110, 146))
        phi = rng.uniform(0, 180)
        bs = t % 2 == 1
        img, mask, c = measured(sim, R, size=256, calibration=true, centre=ctr, beam_stop=bs, rng=t,
                                ellipticity=1.03, angle_deg=phi)
        for given in (True, False):
            t0 = time.perf_counter()
            try:
                f = fit_calibration(img, x, zone=z if given else None, guess=true * 1.05, mask=mask if bs else None)
            except Exception as exc:  # noqa: BLE001 - a benchmark counts failures
                fails[given].append(f"[{' '.join(map(str, z))}]{' bs' if bs else ''}: {str(exc)[:60]}")
                continue
            times.append(time.perf_counter() - t0)
            ok_zone = given or x.laue.angle(x.zone_axis_direction(f.zone), x.zone_axis_direction(z)) < 0.01
            if not ok_zone or abs(f.calibration / true - 1) > 0.01:
                fails[given].append(f"[{' '.join(map(str, z))}]{' bs' if bs else ''}: zone [{' '.join(map(str, f.zone))}], "
                                    f"{100 * (f.calibration / true - 1):+.1f} %, e {f.ellipticity:.3f}")
                continue
            rows[given].append((f.calibration / true - 1, f.ellipticity - 1.03, (f.angle_deg - phi + 90) % 180 - 90,
                                np.hypot(f.centre[0] - c[0], f.centre[1] - c[1])))
    print("| zone | fitted | scale error: median abs, max abs | ellipticity error: median abs, max abs | axis error max | centre error max | failed |")
    print("|---|---|---|---|---|---|---|")
    for given in (True, False):
        a = np.abs(np.array(rows[given])) if rows[given] else np.zeros((1, 4))
        print(f"| {'given' if given else 'searched'} | {len(rows[given])} / {n} | {100 * np.median(a[:, 0]):.3f} %, "
              f"{100 * a[:, 0].max():.3f} % | {np.median(a[:, 1]):.4f}, {a[:, 1].max():.4f} | {a[:, 2].max():.2f}° | "
              f"{a[:, 3].max():.2f} px | {'; '.join(fails[given]) or '-'} |")
    print(f"\nmedian fit time {np.median(times):.2f} s (2-core CPU)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="simulated patterns")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if REAL.is_dir():
        real_cases()
        print()
    simulated(a.n, a.seed)


if __name__ == "__main__":
    main()
