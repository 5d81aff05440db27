"""``edorient simulate``: one or two grains -> PNG image and CSV spot table."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float

log = logging.getLogger(__name__)


def add_crystal_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crystal", default="anatase", help="'anatase' (built in) or a CIF path")


def add_physics_args(parser: argparse.ArgumentParser) -> None:
    from edorient import conventions as cv

    g = parser.add_argument_group("physics and rendering")
    g.add_argument("--voltage", type=finite_float, default=cv.DEFAULT_VOLTAGE_KV, help="kV (default 200)")
    g.add_argument("--thickness", type=finite_float, default=cv.DEFAULT_THICKNESS_A, help="specimen thickness in Å")
    g.add_argument("--shape", choices=["sinc2", "gaussian"], default="sinc2", help="relrod shape factor")
    g.add_argument("--size", type=int, default=cv.DEFAULT_IMAGE_SIZE, help="image side in pixels (>= 16)")
    g.add_argument("--calibration", type=finite_float, default=None, help="1/Å per pixel (default: 1.5 1/Å at the edge)")
    g.add_argument("--spot-sigma", type=finite_float, default=cv.DEFAULT_SPOT_SIGMA_PX, help="spot radius in pixels")


def simulation_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`edorient.render.SimulationConfig` fields set by :func:`add_physics_args`
    (all but the image size)."""
    return {
        "voltage_kv": args.voltage,
        "thickness": args.thickness,
        "shape": args.shape,
        "calibration": args.calibration,
        "spot_sigma_px": args.spot_sigma,
    }


def simulation_config(args: argparse.Namespace):
    from edorient.render import SimulationConfig

    return SimulationConfig(image_size=args.size, **simulation_kwargs(args))


class Simulate(Subcommand):
    COMMAND = "simulate"
    HELP = "simulate the diffraction image of one or two grains (PNG and spot table)"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_crystal_arg(parser)
        g = parser.add_argument_group("grains (give one or two)")
        g.add_argument("--zone-axis", nargs=3, type=finite_float, action="append", metavar=("U", "V", "W"),
                       help="zone axis [u v w] of a grain; repeat for a second grain")
        g.add_argument("--direction", nargs=3, type=finite_float, action="append", metavar=("X", "Y", "Z"),
                       help="beam direction (crystal Cartesian frame) of a grain; repeat for a second grain")
        g.add_argument("--inplane", type=finite_float, action="append", metavar="DEG",
                       help="in-plane angle (degrees) of each grain, in order (default 0)")
        parser.add_argument("--ratio", type=finite_float, default=0.5, help="intensity share of the first grain (default 0.5)")
        add_physics_args(parser)
        n = parser.add_argument_group("noise and display")
        n.add_argument("--dose", type=finite_float, default=None, help="Poisson noise: counts at the direct-beam peak")
        n.add_argument("--background", type=finite_float, default=0.0, help="uniform background intensity (with --dose)")
        n.add_argument("--invert", action="store_true", help="dark spots on a light ground")
        parser.add_argument("--seed", type=int, default=0, help="random seed (noise)")
        parser.add_argument("--png", type=Path, default=None, help="write the image here")
        parser.add_argument("--spots", type=Path, default=None, help="write the spot table (CSV) here")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient._utils.outputs import check_output_file
        from edorient.render import display_transform, to_uint8
        from edorient.simulate import grain_specs, simulate_grains, write_png, write_spot_table
        from edorient.structures import get_crystal

        for flag, path in (("--png", args.png), ("--spots", args.spots)):
            if path is not None:
                check_output_file(path, flag)
        crystal = get_crystal(args.crystal)
        grains = grain_specs(args.zone_axis, args.direction, args.inplane)
        out = simulate_grains(crystal, simulation_config(args), grains, ratio=args.ratio,
                              dose=args.dose, background=args.background, seed=args.seed)
        if args.png:
            write_png(args.png, to_uint8(display_transform(out.image, invert=args.invert)))
            log.info("wrote %s", args.png)
        if args.spots:
            write_spot_table(args.spots, out.spots)
            log.info("wrote %s (%d spots)", args.spots, len(out.spots))
        print(json.dumps(out.summary))
        return 0
