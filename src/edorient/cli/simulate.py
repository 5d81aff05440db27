"""``edorient simulate``: one or two grains -> PNG image and CSV spot table."""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np

from edorient.cli._base import Subcommand, finite_float
from edorient.errors import EdorientError

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
        from PIL import Image

        from edorient.physics.orientation import rotation_from_direction, rotation_from_zone_axis
        from edorient.render import Simulator, add_noise, compose, display_transform, to_uint8
        from edorient.structures import get_crystal

        crystal = get_crystal(args.crystal)
        sim = Simulator(crystal, simulation_config(args))
        grains = [("zone-axis", v) for v in (args.zone_axis or [])] + [("direction", v) for v in (args.direction or [])]
        if not grains:
            raise EdorientError("give a grain with --zone-axis U V W or --direction X Y Z")
        if len(grains) > 2:
            raise EdorientError(f"at most two grains, got {len(grains)}")
        inplane = list(args.inplane or [])
        if len(inplane) > len(grains):
            raise EdorientError(f"{len(inplane)} --inplane angles for {len(grains)} grain(s)")
        inplane += [0.0] * (len(grains) - len(inplane))
        rotations = []
        for (kind, v), theta in zip(grains, inplane):
            if kind == "zone-axis":
                rotations.append(rotation_from_zone_axis(v, crystal.direct_matrix, theta))
            else:
                rotations.append(rotation_from_direction(np.asarray(v, dtype=float), theta))
        images = [sim.linear_image(R) for R in rotations]
        image = images[0] if len(images) == 1 else compose(images[0], images[1], args.ratio)
        if args.dose is not None:
            image = add_noise(image, args.dose, args.background, np.random.default_rng(args.seed))
        rows = []
        for k, R in enumerate(rotations):
            spots = sim.spots(R)
            scale = 1.0 if len(rotations) == 1 else (args.ratio if k == 0 else 1 - args.ratio)
            for hkl, pos, g, d, s, inten in zip(spots.hkl, spots.position, spots.g, spots.d, spots.s, spots.intensity):
                rows.append([k + 1, *map(int, hkl), pos[0], pos[1], g, d, s, inten * scale])
        if args.png:
            _atomic_png(args.png, to_uint8(display_transform(image, invert=args.invert)), Image)
            log.info("wrote %s", args.png)
        if args.spots:
            _write_spots(args.spots, rows)
            log.info("wrote %s (%d spots)", args.spots, len(rows))
        summary = {
            "crystal": crystal.summary(),
            "grains": [
                {"beam_direction": [round(float(x), 6) for x in R.T[2]], "label": [round(float(x), 6) for x in crystal.laue.reduce(R.T[2])]}
                for R in rotations
            ],
            "n_spots": len(rows),
        }
        print(json.dumps(summary))
        return 0


def _atomic_png(path: Path, array: np.ndarray, Image) -> None:
    from edorient._utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _write_spots(path: Path, rows: list) -> None:
    from edorient._utils.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["grain", "h", "k", "l", "gx", "gy", "g", "d", "s", "intensity"])
        for r in rows:
            w.writerow([r[0], r[1], r[2], r[3]] + [f"{x:.6g}" for x in r[4:]])
