"""``edorient demo``: the whole job at small scale (data, training, evaluation, report)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from edorient.cli._base import Subcommand, positive_int


class Demo(Subcommand):
    COMMAND = "demo"
    HELP = "end-to-end demo on the CPU: thesis-mode data, compact CNNs, Methods 1 and 2, report (~4 min on 2 idle cores)"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
        parser.add_argument("--tiny", action="store_true", help="a one-minute version (what the tests run)")
        parser.add_argument("-n", "--orientations", type=positive_int, default=None, help="thesis mode N")
        parser.add_argument("--size", type=positive_int, default=None, help="image side in pixels")
        parser.add_argument("--epochs", type=positive_int, default=None,
                            help="training epochs per bicrystal model (default 30; fixed, so results do not depend on CPU speed)")
        parser.add_argument("--seed", type=int, default=None, help="seed of everything")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.demo import TINY, DemoConfig, run_demo
        from edorient.errors import EdorientError

        cfg = TINY if args.tiny else DemoConfig()
        changes = {k: v for k, v in (("n_orientations", args.orientations), ("image_size", args.size),
                                     ("epochs", args.epochs), ("seed", args.seed)) if v is not None}
        if changes.get("n_orientations", 3) < 3:
            raise EdorientError("the demo needs at least 3 orientations (-n 3)")
        if changes.get("image_size", 32) < 32:
            raise EdorientError(f"--size must be >= 32 pixels for the demo, got {changes['image_size']}")
        cfg = replace(cfg, **changes)
        report = run_demo(args.out, cfg, progress=not args.no_progress)
        print(report.read_text())
        print(f"report: {report}")
        return 0
