"""``edorient calibrate``: the camera calibration (scale, ellipticity) from a pattern of a known crystal."""

from __future__ import annotations

import argparse
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float


#: A runner-up (another zone, or this zone at another scale) within this much of the answer's
#: penalty is named in a warning (one index step of the spot lattice costs 2).
CLOSE_RUNNER_UP = 2.0


class Calibrate(Subcommand):
    COMMAND = "calibrate"
    HELP = "fit the calibration (1/Å per px) and elliptical distortion on a zone-axis pattern of a known crystal"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", type=Path, help="pattern file (.png .tif .mrc .npy .dm3 .dm4 .emd .hspy .mib ...)")
        parser.add_argument("--crystal", required=True, help="'anatase' (built in) or a CIF path of the specimen")
        parser.add_argument("--zone", nargs="+", type=int, default=None, metavar="INDEX",
                            help="the zone axis of the pattern if known, U V W, or U V T W (Miller-Bravais) for "
                                 "hexagonal axes (default: tried up to index --max-index)")
        parser.add_argument("--calibration", type=finite_float, default=None,
                            help="a starting value in 1/Å per px (default: the file's own, if any); zones giving a "
                                 "scale beyond --tolerance of it are not considered")
        parser.add_argument("--tolerance", type=finite_float, default=0.3,
                            help="relative range around --calibration (default 0.3: +-30 %%)")
        parser.add_argument("--kv", type=finite_float, default=None,
                            help="accelerating voltage in kV, recorded in the file (default: the file's, else 200)")
        parser.add_argument("--centre", nargs=2, type=finite_float, default=None, metavar=("ROW", "COL"),
                            help="a guess of the direct beam (default: found by Friedel symmetry)")
        parser.add_argument("--frame", type=int, default=None, help="frame of a stack or scan")
        parser.add_argument("--max-index", type=int, default=3, help="largest zone-axis index tried (default 3)")
        parser.add_argument("--max-ellipticity", type=finite_float, default=1.1,
                            help="largest ellipticity (major/minor axis) accepted (default 1.1)")
        parser.add_argument("--out", type=Path, required=True, help="calibration file to write (JSON)")
        parser.add_argument("--overlay", type=Path, default=None,
                            help="write a PNG of the pattern with the spots found and the fitted reflections")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        import json

        from edorient import conventions as cv
        from edorient._utils.outputs import check_output_file
        from edorient.errors import EdorientError
        from edorient.indexing.calibration import (
            calibration_from_fit,
            fit_calibration,
            save_calibration,
        )
        from edorient.io.images import read_pattern
        from edorient.structures import get_crystal

        for flag, path in (("--out", args.out), ("--overlay", args.overlay)):
            if path is not None:
                check_output_file(path, flag)
        if args.kv is not None and not 1.0 <= args.kv <= 3000.0:
            raise EdorientError(f"--kv must lie in 1-3000 kV, got {args.kv:g}")
        if args.max_index < 1 or args.max_index > 6:
            raise EdorientError(f"--max-index must lie in 1-6, got {args.max_index}")
        from edorient.predict import _checked_zone, zone_family

        if args.zone is not None:
            _checked_zone(args.zone)
        crystal = get_crystal(args.crystal)
        zone = None if args.zone is None else _checked_zone(args.zone, crystal)
        pattern = read_pattern(args.image, args.frame)
        guess = args.calibration if args.calibration is not None else pattern.calibration
        kv = args.kv if args.kv is not None else (pattern.voltage_kv or cv.DEFAULT_VOLTAGE_KV)
        fit = fit_calibration(pattern.image, crystal, zone=zone, guess=guess, tolerance=args.tolerance,
                              mask=None if pattern.bad is None else ~pattern.bad,
                              centre=None if args.centre is None else tuple(args.centre), max_index=args.max_index,
                              max_ellipticity=args.max_ellipticity)
        ru = fit.runner_up
        if ru is not None and ru.get("penalty_margin", 99.0) < CLOSE_RUNNER_UP:
            import logging

            logging.getLogger("edorient.calibrate").warning(
                "zone [%s] at %.6g 1/Å per px fits nearly as well as the answer (zone [%s], %.6g)%s; check the "
                "overlay, or %s", " ".join(map(str, ru["zone"])), ru["calibration"], " ".join(map(str, fit.zone)),
                fit.calibration, "" if guess is None else f" within {args.tolerance:.0%} of {guess:g}",
                "give --calibration (the nominal value of the camera length) to choose" if guess is None
                else "give --zone" if zone is None else "narrow --tolerance")
        cal = calibration_from_fit(fit, voltage_kv=kv, crystal=crystal.name, source=str(args.image))
        save_calibration(args.out, cal)
        if args.overlay is not None:
            draw_overlay(args.overlay, pattern.image, fit)
        out = {"file": str(args.image), "read": pattern.source_note, "crystal": crystal.name,
               "calibration_guess": guess, **fit.summary(), "zone_family": zone_family(fit.zone, crystal),
               "voltage_kv": kv, "out": str(args.out)}
        if args.overlay is not None:
            out["overlay"] = str(args.overlay)
        print(json.dumps(out, indent=2))
        return 0


def draw_overlay(path: Path, image, fit, max_labels: int = 12) -> None:
    """PNG of ``image`` (log display) with the spots found (used: green, unused: grey), the
    fitted zone's reflections (red circles, low orders labelled hkl) and the centre (cross)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from edorient._utils.figures import hkl_label, save_png

    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, [1, 99.9])
    disp = np.log1p(np.clip(img - lo, 0, None) / max((hi - lo) / 1000.0, 1e-12))
    h, w = img.shape
    fig, ax = plt.subplots(figsize=(6, 6 * h / w), dpi=110)
    ax.imshow(disp, cmap="gray")
    P = fit.positions
    ax.scatter(P[~fit.inlier, 1], P[~fit.inlier, 0], s=30, marker="s", facecolors="none", edgecolors="0.6",
               linewidths=0.8, label="spot, not used")
    ax.scatter(P[fit.inlier, 1], P[fit.inlier, 0], s=30, marker="s", facecolors="none", edgecolors="lime",
               linewidths=0.8, label="spot used")
    rc, hkl = fit.predicted_pixels()
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w) & np.any(hkl != 0, axis=1)
    rc, hkl = rc[inside], hkl[inside]
    ax.scatter(rc[:, 1], rc[:, 0], s=80, facecolors="none", edgecolors="tab:red", linewidths=0.8,
               label=f"[{' '.join(map(str, fit.zone))}] fitted")
    order = np.argsort(np.hypot(rc[:, 0] - fit.centre[0], rc[:, 1] - fit.centre[1]))[:max_labels]
    for k in order:
        ax.annotate(hkl_label(hkl[k]), (rc[k, 1], rc[k, 0]),
                    xytext=(4, 4), textcoords="offset points", color="tab:red", fontsize=6)
    ax.plot([fit.centre[1]], [fit.centre[0]], "+", color="yellow", ms=12, label="centre")
    ax.set_title(f"{fit.calibration:.5f} 1/Å/px, ellipticity {fit.ellipticity:.4f} at {fit.angle_deg:.0f}°, "
                 f"{fit.n_spots} spots", fontsize=8)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.legend(loc="lower left", fontsize=6)
    ax.set_axis_off()
    save_png(fig, path, tight=True)
