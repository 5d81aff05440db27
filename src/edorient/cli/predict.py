"""``edorient predict``: zone axes of the grain(s) in a microscope image file."""

from __future__ import annotations

import argparse
from pathlib import Path

from edorient.cli._base import Subcommand, bin_arg, disc_radius, finite_float, positive_int


def _calibration_arg(args: argparse.Namespace):
    """--calibration as a number or a calibration file: (calibration, centre, kV, distortion,
    the file's name or None)."""
    from edorient.cli._base import calibration_or_file

    centre = None if args.centre is None else tuple(args.centre)
    if args.calibration is None:
        return None, centre, args.kv, None, None
    calibration, cal = calibration_or_file(args.calibration)
    if cal is None:
        return calibration, centre, args.kv, None, None
    kv = args.kv if args.kv is not None else getattr(cal, "voltage_kv", None)
    distortion = (float(cal.ellipticity), float(cal.angle_deg)) if cal.ellipticity != 1.0 else None
    return calibration, centre, kv, distortion, str(args.calibration)


def _tolerances(args: argparse.Namespace, calibrated: bool) -> tuple[float, float]:
    """(calibration, ellipticity) tolerance: the user's, else predict's defaults, tighter where
    --calibration is a calibration file (:data:`edorient.predict.CALIBRATED_TOLERANCE`)."""
    from edorient import predict as p

    base = (p.CALIBRATED_TOLERANCE, p.CALIBRATED_ELLIPTICITY_TOLERANCE) if calibrated else (
        p.PredictConfig.calibration_tolerance, p.PredictConfig.ellipticity_tolerance)
    return (base[0] if args.calibration_tolerance is None else args.calibration_tolerance,
            base[1] if args.ellipticity_tolerance is None else args.ellipticity_tolerance)


def _set_threads(threads: int | None) -> None:
    """torch's intra-op threads: ``threads``, else ``$OMP_NUM_THREADS`` where set, else 1. With
    torch's default (one a core) and another job on the machine, a pattern took 28 s instead of
    2.8 s (a new user's review, 2 cores): the threads of its many small operations wait for a core."""
    import os

    import torch

    if threads is None:
        threads = 1 if not os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() else int(os.environ["OMP_NUM_THREADS"])
    torch.set_num_threads(max(1, int(threads)))


class Predict(Subcommand):
    COMMAND = "predict"
    HELP = "estimate the beam direction(s) in a diffraction image file (PNG, TIFF, MRC, NPY)"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("image", type=Path, nargs="+",
                            help="image file (.png .tif .mrc .npy ...); several (e.g. a shell glob) with --out-dir")
        parser.add_argument("--calibration", default=None,
                            help="1/Å per pixel of the file, or a calibration file of `edorient calibrate`; "
                                 "the starting value of the fitted scale (default: the file's metadata)")
        parser.add_argument("--calibration-tolerance", type=finite_float, default=None,
                            help="fit the calibration scale within 1 ± this (default 0.15, or 0.03 with a calibration "
                                 "file; 0 fixes it); an answer that needs a calibration outside it is 'no match', so a "
                                 "tight tolerance where the calibration is known also refuses a wrong crystal with a "
                                 "similar lattice")
        parser.add_argument("--ellipticity-tolerance", type=finite_float, default=None,
                            help="the elliptical distortion (major / minor axis - 1) the camera may add (default "
                                 "0.04, or 0.01 beyond a calibration file's own); a one-grain answer whose spots need "
                                 "more is 'no match'. A camera more distorted than that: widen it, or give a "
                                 "calibration file of `edorient calibrate`")
        parser.add_argument("--kv", type=finite_float, default=None,
                            help="accelerating voltage in kV (default: the file's, else 200)")
        parser.add_argument("--no-background", dest="background", action="store_false",
                            help="do not subtract the radial-median background")
        parser.add_argument("--grains", type=int, default=1, help="grains to find: 1 or 2 (default 1)")
        parser.add_argument("--run", type=Path, default=None,
                            help="a trained run folder, or pretrained:NAME for a shipped model (pretrained:anatase-single, "
                                 "pretrained:anatase-bicrystal); default: template matching, no model needed")
        parser.add_argument("--crystal", default=None,
                            help="'anatase' (the built-in crystal, the default) or a CIF path")
        parser.add_argument("--zone", nargs="+", type=int, default=None, metavar="INDEX",
                            help="a zone axis you expect (tilted to), U V W, or U V T W (Miller-Bravais) for "
                                 "hexagonal axes: each grain also says how far its beam is from "
                                 "it and which way on the detector the zone lies (the way to tilt); the search "
                                 "itself does not use it")
        parser.add_argument("--centre", nargs=2, type=finite_float, default=None, metavar=("ROW", "COL"),
                            help="direct-beam position in the file (default: found by Friedel symmetry; a given one "
                                 "is used as given, with a warning where the spots put the beam over 3 px away)")
        parser.add_argument("--frame", type=int, default=None, help="frame of a stack")
        parser.add_argument("--bin", type=bin_arg, default=None, metavar="auto|N",
                            help="bin the pattern N x N first (1: never); auto (default): by its spots' width, "
                                 "so that spots 8 px wide or more (a large detector, an enlarged figure) become 4-8 "
                                 "px wide, and a frame of 12 or more pixels to a working-frame pixel (a 2048-4096 px "
                                 "camera) by the whole number of times 6 go into it; auto is 1 with --disc. Centre and calibration stay in the file's pixels")
        parser.add_argument("--disc", type=disc_radius, default=0.0, metavar="auto|off|PX",
                            help="radius in pixels of the probe's diffraction discs (nano-beam data), deconvolved from "
                                 "the pattern first (auto: measured on its direct beam; default off)")
        parser.add_argument("--mask", type=Path, default=None,
                            help="an image of the detector's size, nonzero at pixels to ignore (dead, hot, gaps, a beam "
                                 "stop); they are left out of the centre finding, the background and the fits")
        parser.add_argument("--intensity", choices=["linear", "display", "inverted"], default="linear",
                            help="linear: detector counts (default); display: an already contrast-adjusted image; "
                                 "inverted: a negative (dark spots on a light ground), turned over first")
        parser.add_argument("--matcher-directions", type=positive_int, default=400,
                            help="template dictionary size: directions over the Laue sector (default 400; "
                                 "low-index zone axes are always added; cached on disk)")
        parser.add_argument("--single-directions", type=positive_int, default=1600,
                            help="with the refinement: directions of the one-grain chain's dictionary, whose answer "
                                 "joins the refinement's hypotheses (default 1600; built once per working frame, "
                                 "then cached on disk)")
        parser.add_argument("--pair-directions", type=positive_int, default=6400,
                            help="--grains 2: directions of the two-grain chain's dictionary (default 6400; built "
                                 "once per working frame, ~25 s on one core, then cached on disk)")
        parser.add_argument("--size", type=positive_int, default=150,
                            help="working image size of the template search (default 150)")
        parser.add_argument("--no-refine", dest="refine", action="store_false",
                            help="skip the refinement (fit of the kinematic spot model from the coarse estimate: "
                                 "sub-degree orientations, uncertainty, ambiguity flag); on by default")
        parser.add_argument("--device", default="cpu", help="torch device of the refinement (cpu, cuda; default cpu)")
        parser.add_argument("--threads", type=positive_int, default=None,
                            help="torch threads (default: $OMP_NUM_THREADS, else 1: a pattern's small tensors gain "
                                 "little from more, and threads that wait for a busy core cost 10x)")
        parser.add_argument("--overlay", type=Path, default=None, help="write a PNG with the predicted spots")
        parser.add_argument("--json", type=Path, default=None,
                            help="write the result as JSON to this file and print a short summary (default: the "
                                 "JSON on stdout)")
        parser.add_argument("--out-dir", type=Path, default=None,
                            help="a folder for the results of one or more files, in one process (the dictionaries "
                                 "built once): NAME.json and NAME.png a file, summary.tsv (a row a grain), "
                                 "config.json; a killed run goes on where it stopped (default: none, one file)")
        parser.add_argument("--no-overlays", dest="overlays", action="store_false",
                            help="with --out-dir: no NAME.png overlays (on by default)")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient._utils.outputs import check_output_file
        from edorient._utils.resources import check_matcher_directions
        from edorient.predict import PredictConfig, predict_file, result_json

        from edorient.errors import EdorientError

        if args.out_dir is None and len(args.image) > 1:
            raise EdorientError(f"{len(args.image)} image files given: give --out-dir DIR for their results (a JSON and "
                                "an overlay each, and summary.tsv), or one file")
        if args.out_dir is not None and (args.json is not None or args.overlay is not None):
            raise EdorientError("--out-dir writes each file's JSON and overlay itself; leave out --json and --overlay")
        for flag, path in (("--json", args.json), ("--overlay", args.overlay)):
            if path is not None:
                check_output_file(path, flag)
        _set_threads(args.threads)
        check_matcher_directions(args.matcher_directions)  # before the dictionary is allocated
        if args.refine:
            check_matcher_directions(args.single_directions, "--single-directions")
        if args.grains == 2:
            check_matcher_directions(args.pair_directions, "--pair-directions")
        calibration, centre, kv, distortion, cal_file = _calibration_arg(args)
        scale_tol, ell_tol = _tolerances(args, cal_file is not None)
        cfg = PredictConfig(calibration=calibration, grains=args.grains, distortion=distortion,
                            calibration_tolerance=scale_tol, calibration_file=cal_file,
                            ellipticity_tolerance=ell_tol, voltage_kv=kv,
                            background=args.background, size=args.size,
                            centre=centre, frame=args.frame, mask=None if args.mask is None else str(args.mask),
                            disc_px=args.disc, bin=args.bin,
                            intensity=args.intensity, matcher_directions=args.matcher_directions,
                            single_directions=args.single_directions, pair_directions=args.pair_directions,
                            refine=args.refine, device=args.device,
                            zone=None if args.zone is None else tuple(args.zone))
        def assumed() -> None:
            if args.crystal is None:  # (another crystal's pattern can fit anatase's; say it was assumed)
                import logging

                logging.getLogger("edorient.predict").warning(
                    "no --crystal given: indexed as anatase TiO2, the built-in crystal; give --crystal FILE.cif for "
                    "another")

        if args.out_dir is not None:
            assumed()
            from edorient.predict import predict_files

            done = predict_files(args.image, cfg, args.out_dir, run=args.run, crystal_name=args.crystal or "anatase",
                                 overlays=args.overlays, echo=print)
            failed = done["failed"]
            print(f"{done['done']} file(s) predicted, {done['skipped']} done before, {len(failed)} failed; "
                  f"table: {done['summary']}")
            if failed:
                raise EdorientError(f"{len(failed)} of {len(args.image)} file(s) failed (first: {failed[0][0]}: "
                                    f"{failed[0][1]}); the others' results are in {args.out_dir}")
            return 0
        result = predict_file(args.image[0], cfg, run=args.run, crystal_name=args.crystal or "anatase",
                              overlay=args.overlay)
        assumed()
        text = result_json(result)
        if args.json:  # the JSON in its file; on the screen what a person reads
            from edorient._utils.atomic import atomic_write_text
            from edorient.predict import summary_text

            atomic_write_text(args.json, text + "\n")
            print(summary_text(result))
        else:  # (no file asked for: the JSON on stdout, for pipes)
            print(text)
        return 0
