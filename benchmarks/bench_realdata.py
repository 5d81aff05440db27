"""Every real development case through the predict pipeline: error, verdict, seconds (issue 11).

    python benchmarks/bench_realdata.py [--realdata ../shared/realdata] [--repeat 3] [--public DIR]

For each case of ``cases.tsv`` and each calibration (as given, 10 % low, 10 % high) the pattern
is indexed as ``edorient predict`` does (centre found by Friedel symmetry, not given; template
search with the scale fitted; refinement; verdict), in one process: the first call per crystal
and working calibration builds (or loads) the template dictionary, the timed calls after it are
what a user running many patterns sees. Prints a markdown table; also the same with the
calibration given and the search alone (``--no-refine``) for comparison. ``--public DIR``
adds the real patterns of public packages (:data:`edorient.evaluation.realdata.PUBLIC_CASES`),
fetched from the package registry into ``DIR`` first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realdata")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls after the first (median reported)")
    ap.add_argument("--public", type=Path, default=None,
                    help="also the public packages' real patterns, fetched into this folder")
    args = ap.parse_args()
    from edorient.evaluation.realdata import fetch_public_cases, read_cases
    from edorient.predict import PredictConfig, predict_file
    from edorient.structures import get_crystal

    rows = []
    cases = read_cases(args.realdata / "cases.tsv")
    if args.public is not None:
        cases += read_cases(fetch_public_cases(args.public))
    for case in cases:
        name, zone, cal = case.name, " ".join(str(v) for v in case.zone), case.calibration
        crystal = get_crystal(case.cif)
        true = crystal.zone_axis_direction(case.zone)
        for scale in (1.0, 0.9, 1.1):
            for refine in (True, False):
                cfg = PredictConfig(calibration=cal * scale, refine=refine, voltage_kv=case.kv)
                t0 = time.perf_counter()
                res = predict_file(case.image, cfg, crystal_name=str(case.cif))
                first = time.perf_counter() - t0
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    predict_file(case.image, cfg, crystal_name=str(case.cif))
                    times.append(time.perf_counter() - t0)
                g = res["grains"][0]
                err = float(crystal.laue.angle(true[None], np.array(g["direction"])[None])[0])
                ref = res.get("refinement") or {}
                fm = ref.get("image_fit_margin")
                rows.append((name, zone, scale, refine, err, g["verdict"], g["score"], g["margin"], g["spot_agreement"],
                             "-" if ref.get("image_fit") is None else f"{ref['image_fit']:.3f}",
                             "-" if fm is None else f"{fm:.3f}",
                             "-" if g.get("uncertainty_deg") is None else f"{g['uncertainty_deg']:.2f}",
                             res["calibration_fitted"] / cal, first, float(np.median(times)), _distortion(g)))
    print("| case | zone | calibration given | refine | error to zone ° | verdict | score | margin | spot agreement | "
          "image fit | fit margin | uncertainty ° | fitted / true calibration | first call s | later calls s | "
          "spot ellipticity % / residual of tolerance |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | [{r[1]}] | x{r[2]:.1f} | {'yes' if r[3] else 'no'} | {r[4]:.2f} | {r[5]} | {r[6]:.3f} | "
              f"{r[7]:.3f} | {r[8]:.2f} | {r[9]} | {r[10]} | {r[11]} | {r[12]:.4f} | {r[13]:.2f} | {r[14]:.2f} | "
              f"{r[15]} |")


def _distortion(grain: dict) -> str:
    """The spot-distortion check's figures of a grain (``predict``'s JSON): the ellipticity (%)
    the answer's spots need and their residual as a share of the matching tolerance."""
    d = grain.get("spot_distortion")
    if not d or not d["measured"]:
        return "-"
    return f"{100 * (d['ellipticity'] - 1):.1f} / {d['residual_px'] / d['tolerance_px']:.3f}"


if __name__ == "__main__":
    main()
