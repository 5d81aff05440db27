"""``edorient evaluate``: Method 1 and Method 2 (both stages) on a data set's test split."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edorient.cli._base import Subcommand, positive_int

log = logging.getLogger(__name__)


class Evaluate(Subcommand):
    COMMAND = "evaluate"
    HELP = "evaluate a trained run: the thesis' tables, errors in degrees, Method 2 stages 1 and 2, plots"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--run", required=True, type=Path, help="run folder of `edorient train`, a .pt file, or pretrained:NAME (a shipped model)")
        parser.add_argument("--data", required=True, type=Path, help="data-set folder (its test split is used)")
        parser.add_argument("--split", choices=["random", "disjoint"], default="random",
                            help="random: the thesis hold-out; disjoint: test orientations never trained on")
        parser.add_argument("--subsets", type=positive_int, default=5, help="test subsets for the tables (default 5)")
        parser.add_argument("--single-run", type=Path, default=None,
                            help="run folder of a single-crystal model for Method 2 stage 2")
        parser.add_argument("--stage2-max", type=int, default=200,
                            help="test images for stage 2 (0 skips it; default 200)")
        parser.add_argument("--refine-max", type=int, default=200,
                            help="test images whose CNN estimates are refined against the image, errors reported "
                                 "before and after (default 200)")
        parser.add_argument("--no-refine", action="store_true", help="skip the refinement (same as --refine-max 0)")
        parser.add_argument("--matcher-directions", type=positive_int, default=300,
                            help="dictionary size of the template-matching baseline (default 300)")
        parser.add_argument("--batch-size", type=positive_int, default=128, help="images per forward pass")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        parser.add_argument("--seed", type=int, default=0, help="seed (choice of the stage-2 images)")
        parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/eval_SPLIT)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.errors import EdorientError
        from edorient.evaluation.pipeline import EvaluateConfig, evaluate_run

        if args.stage2_max < 0:
            raise EdorientError(f"--stage2-max must be >= 0, got {args.stage2_max}")
        if args.refine_max < 0:
            raise EdorientError(f"--refine-max must be >= 0, got {args.refine_max}")
        if args.stage2_max > 0:  # stage 2's template-matching baseline builds the dictionary
            from edorient._utils.resources import check_matcher_directions

            check_matcher_directions(args.matcher_directions)
        from edorient import pretrained

        shipped = pretrained.is_pretrained(args.run)
        if shipped:
            name = pretrained.resolve(args.run).stem  # an unknown name fails here, with the choices
        elif not args.run.exists():
            raise EdorientError(f"run folder {args.run} not found; give the folder `edorient train` wrote")
        cfg = EvaluateConfig(split=args.split, subsets=args.subsets, batch_size=args.batch_size,
                             stage2_max=args.stage2_max, matcher_directions=args.matcher_directions,
                             refine_max=0 if args.no_refine else args.refine_max,
                             seed=args.seed, device=args.device, progress=not args.no_progress)
        if args.out:
            out = args.out
        elif shipped:
            out = Path(f"eval_{name}_{args.split}")
        else:
            out = (args.run if args.run.is_dir() else args.run.parent) / f"eval_{args.split}"
        evaluate_run(args.run, args.data, out, cfg, single_run=args.single_run)
        print((out / "report.md").read_text())
        print(f"wrote {out}/report.md, results.json, results.csv and plots")
        return 0
