"""``edorient map``: orientation map of a 4D-STEM scan or a folder of patterns;
``edorient simulate-scan``: a simulated polycrystal scan with its ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from edorient.cli._base import Subcommand, disc_radius, finite_float, nonneg_int, positive_int


class Map(Subcommand):
    COMMAND = "map"
    HELP = "orientation map (one or two grains per pattern) of a 4D-STEM scan or a folder of patterns; resumable"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        from edorient.mapping.index import SECOND_GRAIN_MIN_SPOTS

        parser.add_argument("scan", nargs="+",
                            help="4D-STEM file (.hspy .zspy .mib .blo .dm4 .emd), .npy/.zarr (rows, cols, H, W), "
                                 "or a folder / glob / list of pattern files (one row per file, in the order given)")
        parser.add_argument("--out", type=Path, required=True, help="output folder (created; rerun to resume)")
        parser.add_argument("--crystal", default="anatase", help="'anatase' or a CIF path")
        parser.add_argument("--grains", choices=["auto", "1", "2"], default="auto",
                            help="grains per pattern: auto (a second one only where the fit says so; default), 1 or 2")
        parser.add_argument("--second-grain", choices=["partner", "model"], default="partner",
                            help="how --grains auto looks for a second grain: partner (the one-grain fit's spots "
                                 "erased, the template dictionary on the rest; default, faster) or model (the "
                                 "two-grain model's proposals; docs/mapping.md)")
        parser.add_argument("--run", action="append", default=None,
                            help="a trained run folder or pretrained:NAME giving the proposals; once for a one-grain and "
                                 "once for a two-grain model (default for anatase: both shipped models; for a CIF: "
                                 "template matching, ~100x slower)")
        parser.add_argument("--calibration", default=None,
                            help="1/Å per detector pixel, or a calibration file of `edorient calibrate` (its ellipticity is "
                                 "then undone in every pattern; default: from the file's axes; required for .npy, .zarr, "
                                 "folders)")
        parser.add_argument("--step", type=finite_float, default=None, metavar="NM",
                            help="probe step in nm for the orientation files' coordinates (default: the file's "
                                 "scan axes; unknown: counted in probe steps); changes no answer, a rerun may set it")
        parser.add_argument("--scan-shape", type=positive_int, nargs=2, default=None, metavar=("ROWS", "COLS"),
                            help="lay the file's patterns, in the order stored, out on this grid of probes (a stack "
                                 "of patterns, a Merlin .mib without its .hdr, a scan stored as one line, a folder of "
                                 "one file a probe in sorted name order; default: the file's own grid, a folder's one "
                                 "row per file)")
        parser.add_argument("--no-refine", dest="refine", action="store_false",
                            help="skip the refinement (no sub-degree orientations, no uncertainty)")
        parser.add_argument("--mask", type=Path, default=None,
                            help="an image of the detector's size, nonzero at pixels to ignore (dead, hot, gaps, a beam "
                                 "stop), joined with the defects found; written as OUT/detector_mask.npy")
        parser.add_argument("--no-defects", dest="find_defects", action="store_false",
                            help="do not look for dead and hot pixels in a sample of the scan (on by default)")
        parser.add_argument("--thickness", type=finite_float, default=None, metavar="A",
                            help="effective specimen thickness in Å for the models' relrods (default: fitted on 32 "
                                 "patterns of the scan among 15-120 Å; the shipped models were trained at 50)")
        parser.add_argument("--disc", type=disc_radius, default=None, metavar="auto|off|PX",
                            help="radius in detector pixels of the probe's diffraction discs (nano-beam data), "
                                 "deconvolved from every pattern (default auto: measured on the direct beam of 32 "
                                 "patterns, deconvolved where at least 1.5 px; off: none)")
        parser.add_argument("--min-new-spots", type=positive_int, default=SECOND_GRAIN_MIN_SPOTS,
                            help="a second grain must explain at least this many of the pattern's spots that the "
                                 f"one-grain fit leaves unexplained (default {SECOND_GRAIN_MIN_SPOTS}; docs/mapping.md)")
        parser.add_argument("--second-chance", type=finite_float, default=None, metavar="SHARE",
                            help="where the refined fit explains less than SHARE of the pattern's spots (e.g. 0.9), "
                                 "refine template matching's proposal too (slower; default off)")
        parser.add_argument("--anchor-stride", type=positive_int, default=None, metavar="N",
                            help="every N-th pattern of a chunk is indexed by the whole chain, the others refine their "
                                 "neighbouring anchors' grains (a pattern they do not fit gets the whole chain); 1: "
                                 "every pattern the whole chain (slower; default 8 for a scan, 1 for a folder of files, "
                                 "docs/mapping.md)")
        parser.add_argument("--anchor-rows", type=positive_int, default=None, metavar="N",
                            help="where a chunk holds whole scan rows, only every N-th row (centred in the chunk) holds anchors, "
                                 "the others refine the grains of the nearest anchors in 2-D (default 4; 1: every row)")
        parser.add_argument("--partner-again", type=positive_int, default=None, metavar="K",
                            help="after the two-grain search, search each chosen grain's partner again among the "
                                 "dictionary's K best (better pairs at grain boundaries, ~20 %% slower; default off; "
                                 "docs/mapping.md)")
        parser.add_argument("--neighbour-radius", type=nonneg_int, default=None, metavar="N",
                            help="after every chunk, pair each one-grain pattern that leaves spots unexplained with the "
                                 "grains reported within N probe steps (a boundary's other grain; default 3, 0: off; "
                                 "scans only, docs/mapping.md)")
        parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                            help="an existing dask.distributed scheduler (tcp://HOST:PORT); default: a local cluster")
        parser.add_argument("--workers", type=nonneg_int, default=None,
                            help="local worker processes (default: every core; 0: no Dask, this process)")
        parser.add_argument("--chunk", type=positive_int, default=None,
                            help="patterns per chunk, rounded down to whole scan rows where it holds two or more (then "
                                 "each chunk's anchors form a 2-D lattice; default 512, at most a quarter of the scan)")
        parser.add_argument("--kv", type=finite_float, default=None,
                            help="accelerating voltage in kV (default: the scan file's beam energy, else 200)")
        parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda; default cpu)")
        parser.add_argument("--matcher-directions", type=positive_int, default=400,
                            help="template dictionary size (template matching)")
        parser.add_argument("--seed", type=int, default=0, help="seed recorded with the map (default 0)")
        parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.mapping import ComputeSettings, MapSettings, run_map
        from edorient.mapping.index import resolve_runs

        single, bi = resolve_runs(args.run, args.crystal)
        settings = MapSettings(crystal=args.crystal, grains=args.grains, run_single=single, run_bicrystal=bi,
                               min_new_spots=args.min_new_spots, explained_below=args.second_chance, refine=args.refine,
                               second_grain=None if args.second_grain == "partner" else args.second_grain,
                               device=args.device, matcher_directions=args.matcher_directions,
                               chosen_partner_k=args.partner_again, find_defects=args.find_defects,
                               thickness=args.thickness, disc_px=args.disc, voltage_kv=args.kv,
                               detector_mask=None if args.mask is None else str(args.mask),
                               **({} if args.anchor_stride is None else {"anchor_stride": args.anchor_stride}),
                               **({} if args.anchor_rows is None else {"anchor_rows": args.anchor_rows}),
                               **({} if args.neighbour_radius is None else {"neighbour_radius": args.neighbour_radius}))
        compute = ComputeSettings(workers=args.workers, scheduler=args.scheduler, chunk=args.chunk,
                                  progress=args.progress)
        calibration, distortion = None, None
        if args.calibration is not None:
            from edorient.cli._base import calibration_or_file

            calibration, cal = calibration_or_file(args.calibration)
            if cal is not None and cal.ellipticity != 1.0:
                distortion = (float(cal.ellipticity), float(cal.angle_deg))
        scan = args.scan[0] if len(args.scan) == 1 else list(args.scan)  # (several: an unquoted glob's files)
        run = run_map(scan, args.out, settings, compute, calibration=calibration, seed=args.seed,
                      distortion=distortion, scan_shape=None if args.scan_shape is None else tuple(args.scan_shape),
                      step_nm=args.step)
        n = len(run.results["status"])
        two = int((run.results["n_grains"] == 2).sum())
        nb = run.neighbours.get("second_grains_added")
        print(f"mapped {n} patterns ({two} with two grains"
              + (f", {nb} of them from the neighbour pass" if nb else "") + f") into {run.out}; "
              f"{run.patterns_computed} indexed in {run.compute_s:.1f} s; see {run.out / 'report.md'}")
        return 0


class SimulateScan(Subcommand):
    COMMAND = "simulate-scan"
    HELP = "write a simulated polycrystal 4D-STEM scan (.hspy) with its ground truth (_truth.npz)"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="the scan file (.hspy); truth beside it")
        parser.add_argument("--probes", type=positive_int, nargs=2, default=(64, 64), metavar=("ROWS", "COLS"),
                            help="probe positions (default 64 64)")
        parser.add_argument("--grains", type=positive_int, default=8, help="Voronoi grains (default 8)")
        parser.add_argument("--detector", type=positive_int, default=128, help="detector side in pixels (default 128)")
        parser.add_argument("--calibration", type=finite_float, default=0.02,
                            help="detector calibration, 1/Å per pixel (default 0.02)")
        parser.add_argument("--dose", type=finite_float, default=3000.0,
                            help="counts at the direct beam's peak (default 3000)")
        parser.add_argument("--incline", type=finite_float, default=3.0,
                            help="boundary shift through the thickness, in probe steps (default 3)")
        parser.add_argument("--crystal", default="anatase", help="'anatase' or a CIF path")
        parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
        parser.add_argument("--hot-pixels", type=nonneg_int, default=0,
                            help="detector defects: pixels counting ~5000 in every pattern (default 0)")
        parser.add_argument("--dead-pixels", type=nonneg_int, default=0, help="pixels that never count (default 0)")
        parser.add_argument("--gap", type=nonneg_int, default=0, metavar="PX",
                            help="a cross of dead rows and columns PX wide between four chips (default 0: none)")
        parser.add_argument("--disc", type=finite_float, default=0.0, metavar="PX",
                            help="spots and direct beam as discs of this radius in detector pixels (a convergent "
                                 "probe; default 0: Gaussian spots)")
        parser.add_argument("--thickness", type=finite_float, default=50.0, metavar="A",
                            help="specimen thickness in Å of the relrods (default 50, the shipped models')")
        parser.add_argument("--wedge", type=finite_float, nargs=2, default=None, metavar=("A", "B"),
                            help="a wedge: the thickness in Å at the first and the last scan column, linear in "
                                 "between (overrides --thickness)")
        parser.add_argument("--ellipticity", type=finite_float, nargs=2, default=(1.0, 0.0), metavar=("E", "DEG"),
                            help="the detector's elliptical distortion: major / minor axis of a ring and the major "
                                 "axis' angle from +col (default 1 0: none)")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient._utils.outputs import check_output_file
        from edorient.mapping.simulate import ScanSimConfig, write_scan

        check_output_file(args.out, "--out")
        cfg = ScanSimConfig(probes=tuple(args.probes), n_grains=args.grains, detector_px=args.detector,
                            calibration=args.calibration, dose=args.dose, incline_px=args.incline, seed=args.seed,
                            hot_pixels=args.hot_pixels, dead_pixels=args.dead_pixels, gap_px=args.gap,
                            ellipticity=args.ellipticity[0], ellipticity_angle_deg=args.ellipticity[1],
                            disc_px=args.disc, thickness=args.thickness,
                            wedge=None if args.wedge is None else tuple(args.wedge))
        path, truth = write_scan(args.out, cfg, args.crystal)
        print(f"wrote {path} and {truth}")
        return 0
