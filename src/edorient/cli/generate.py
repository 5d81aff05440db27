"""``edorient generate``: write a data set (thesis pairs, random bicrystals, single crystals)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float, positive_int
from edorient.cli.simulate import add_crystal_arg, add_physics_args, simulation_kwargs

log = logging.getLogger(__name__)


def ratio_range(text: str) -> tuple[float, float]:
    """argparse type: ``R`` (fixed, returned as ``(R, R)``) or ``LO:HI`` (a range)."""
    parts = text.split(":")
    try:
        values = [finite_float(p) for p in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected R or LO:HI, got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(f"expected R or LO:HI, got {text!r}")


def add_sample_args(parser: argparse.ArgumentParser) -> None:
    """What each image draws besides its orientations (``generate`` and ``train --simulate``)."""
    g = parser.add_argument_group("orientations, ratio, noise")
    g.add_argument("--inplane", type=finite_float, default=None, metavar="DEG",
                   help="fixed in-plane angle of every grain (default: uniform in [0, 360))")
    g.add_argument("--ratio", type=ratio_range, default=(0.5, 0.5), metavar="R|LO:HI",
                   help="random mode: weight of grain A, fixed or uniform in LO:HI (default 0.5)")
    g.add_argument("--dose", type=ratio_range, default=None, metavar="D|LO:HI",
                   help="Poisson noise: counts at the direct-beam peak, fixed or log-uniform in LO:HI per image")
    g.add_argument("--background", type=ratio_range, default=(0.0, 0.0), metavar="B|LO:HI",
                   help="uniform background intensity (with --dose), fixed or uniform in LO:HI per image")


def generate_config(args: argparse.Namespace, mode: str, n: int, seed: int, **more):
    """The :class:`~edorient.data.GenerateConfig` of the crystal, physics and sample flags."""
    from edorient.data import GenerateConfig

    return GenerateConfig(mode=mode, n=n, crystal=args.crystal, image_size=args.size,
                          simulation=simulation_kwargs(args), seed=seed, inplane_deg=args.inplane,
                          ratio=args.ratio, noise_dose=args.dose, noise_background=args.background, **more)


class Generate(Subcommand):
    COMMAND = "generate"
    HELP = "generate a data set on disk (shards, labels, splits, meta.json); resumable"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        from edorient.data.generate import MODES

        parser.add_argument("--mode", choices=MODES, default="thesis",
                            help="thesis: N orientations, every pair composed when read; random: bicrystals "
                                 "with fresh orientations; single: single crystals (default thesis)")
        parser.add_argument("-n", "--n", type=positive_int, default=1000,
                            help="thesis: number of orientations N (C(N,2) pairs); else number of images (default 1000)")
        parser.add_argument("--out", type=Path, required=True, help="data-set folder (created; resumed if it holds the same set)")
        parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
        add_crystal_arg(parser)
        add_physics_args(parser)
        add_sample_args(parser)
        s = parser.add_argument_group("storage and splits")
        s.add_argument("--dtype", default=None,
                       help="thesis: float32 (default) or float16 linear intensity; random/single: uint8 (default) or float16")
        s.add_argument("--shard-size", type=positive_int, default=None,
                       help="records per shard (default 100 in thesis mode, 1000 otherwise)")
        s.add_argument("--test-fraction", type=finite_float, default=None,
                       help="test share of the random hold-out (default 10000/499500, the thesis')")
        s.add_argument("--holdout-fraction", type=finite_float, default=None,
                       help="thesis mode: share of orientations held out for the disjoint split (default sqrt(test fraction))")
        p = parser.add_argument_group("processes and machines")
        p.add_argument("--workers", type=positive_int, default=1, help="rendering processes (default 1)")
        p.add_argument("--shard-index", type=int, default=0, help="this machine's part, in [0, --num-shards)")
        p.add_argument("--num-shards", type=positive_int, default=1,
                       help="split the shards across this many machines (default 1)")
        p.add_argument("--verify", action="store_true", help="hash finished shards before keeping them on resume")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.data import generate_dataset
        from edorient.data import splits as sp

        config = generate_config(
            args, args.mode, args.n, args.seed, shard_size=args.shard_size, dtype=args.dtype,
            test_fraction=sp.THESIS_TEST_FRACTION if args.test_fraction is None else args.test_fraction,
            holdout_fraction=args.holdout_fraction,
        )
        out = generate_dataset(
            config,
            args.out,
            workers=args.workers,
            shard_index=args.shard_index,
            num_shards=args.num_shards,
            verify=args.verify,
            progress=not (args.no_progress or args.quiet),
        )
        print(out)
        return 0
