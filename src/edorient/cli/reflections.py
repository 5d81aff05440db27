"""``edorient reflections``: the reflection list of a crystal with structure factors."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float
from edorient.cli.simulate import add_crystal_arg
from edorient.errors import EdorientError


class ReflectionsCommand(Subcommand):
    COMMAND = "reflections"
    HELP = "list a crystal's reflections (hkl, d, |F|, |F|^2) down to d_min"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_crystal_arg(parser)
        parser.add_argument("--dmin", type=finite_float, default=1.0, help="smallest d-spacing in Å (default 1.0)")
        parser.add_argument("--csv", type=Path, default=None, help="write the table here (default: print)")
        parser.add_argument("--all", action="store_true", help="keep systematically absent reflections")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.physics.reflections import compute_reflections
        from edorient.structures import get_crystal

        if args.dmin <= 0:
            raise EdorientError(f"--dmin must be > 0 Å, got {args.dmin}")
        if args.csv:
            from edorient._utils.outputs import check_output_file

            check_output_file(args.csv, "--csv")
        crystal = get_crystal(args.crystal)
        refl = compute_reflections(crystal, 1.0 / args.dmin, drop_absent=not args.all)
        header = ["h", "k", "l", "d", "F_abs", "F_squared"]
        rows = [
            [int(h), int(k), int(l), f"{d:.5f}", f"{abs(F):.5f}", f"{abs(F) ** 2:.5f}"]
            for (h, k, l), d, F in zip(refl.hkl, refl.d, refl.F)
        ]
        if args.csv:
            from edorient._utils.atomic import atomic_path

            with atomic_path(args.csv) as tmp, open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows(rows)
            print(f"{len(rows)} reflections of {crystal.name} with d >= {args.dmin} Å -> {args.csv}")
        else:
            print(",".join(header))
            for r in rows:
                print(",".join(map(str, r)))
        return 0
