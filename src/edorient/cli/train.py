"""``edorient train``: train a model on a data set (presets ``thesis`` and ``cpu``), fine-tune
over subsets, resume; ``torchrun --nproc-per-node N -m edorient train ...`` for DDP."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float, nonneg_int, positive_int

log = logging.getLogger(__name__)


def _subset_list(text: str) -> list[int] | str:
    if text == "all":
        return "all"
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated subset numbers, got {text!r}") from None
    if not vals or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected 'all' or subset numbers >= 0, got {text!r}")
    return vals


# Flags that map one to one onto TrainConfig fields (argparse dest -> field).
_FIELDS = ("epochs", "batch_size", "loss", "optimizer", "lr", "rho", "eps", "momentum", "weight_decay",
           "schedule", "warmup_steps", "min_lr_ratio", "grad_clip", "select", "device", "amp",
           "channels_last", "workers", "seed", "time_limit_s", "max_steps_per_epoch", "progress")


class Train(Subcommand):
    COMMAND = "train"
    HELP = "train a model on a data set (presets thesis and cpu), fine-tune over subsets, resume"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        from edorient.cli.generate import add_sample_args
        from edorient.cli.simulate import add_crystal_arg, add_physics_args
        from edorient.models import available_models
        from edorient.training import PRESETS, available_losses

        parser.add_argument("--data", type=Path, default=None,
                            help="data-set folder (edorient generate); or --simulate")
        parser.add_argument("--out", type=Path, default=None,
                            help="run folder (default runs/<preset or arch>); with --finetune, one stage_NN folder per subset")
        parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                            help="thesis: the thesis CNN, Adadelta (lr 1.0, rho 0.95, eps 1e-7), batch 128, "
                                 "best epoch by MAE_1 + MAE_2; cpu: a compact model that trains in under 30 min "
                                 "on 2 CPU cores. Flags override the preset.")
        parser.add_argument("--arch", default=None, metavar="NAME",
                            help=f"architecture: {', '.join(available_models())} (default thesis)")
        parser.add_argument("--input", type=positive_int, default=None, metavar="S",
                            help="resize images to S x S (default: the data set's size; 56, 28 for experiment 3)")
        parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
        d = parser.add_argument_group("data")
        d.add_argument("--split", choices=("random", "disjoint"), default="random", help="hold-out split (default random)")
        d.add_argument("--scheme", default="thesis", help="subset scheme (default thesis)")
        d.add_argument("--subset", type=nonneg_int, default=None, metavar="K",
                       help="train on training subset K (from 0) only (default: the whole training set)")
        d.add_argument("--limit", type=positive_int, default=None, metavar="N",
                       help="use only the first N training and N//4 validation samples (quick runs)")
        parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                            help="start from these weights (a run folder, a .pt file or pretrained:NAME; same "
                                 "architecture) instead of a fresh initialisation")
        m = parser.add_argument_group(
            "simulated on the fly (instead of --data): fresh images every epoch, nothing on disk; the crystal, "
            "physics and noise flags below are generate's")
        m.add_argument("--simulate", choices=("random", "single"), default=None,
                       help="random: bicrystals (two grains, --ratio); single: single crystals")
        m.add_argument("--epoch-size", type=positive_int, default=100_000, help="images per epoch (default 100000)")
        m.add_argument("--val-size", type=positive_int, default=2_000,
                       help="validation images, the same every epoch (default 2000)")
        m.add_argument("--data-seed", type=int, default=None, help="seed of the simulated images (default --seed)")
        add_crystal_arg(m)
        add_physics_args(parser)
        add_sample_args(parser)
        f = parser.add_argument_group("fine-tuning over subsets (thesis pre-experiment 2)")
        f.add_argument("--finetune", choices=("all", "dense"), default=None,
                       help="train subset by subset from the previous best weights: all layers, or dense only")
        f.add_argument("--subsets", type=_subset_list, default="all", help="subsets to go through: 'all' or e.g. 0,1,2")
        f.add_argument("--first-epochs", type=positive_int, default=None, help="epochs on the first subset (default --epochs)")
        f.add_argument("--later-epochs", type=positive_int, default=None, help="epochs on each later subset (default --epochs)")
        o = parser.add_argument_group("optimisation (defaults: the preset's, else the thesis')")
        o.add_argument("--epochs", type=positive_int, default=None)
        o.add_argument("--batch-size", type=positive_int, default=None)
        o.add_argument("--loss", choices=available_losses(), default=None)
        o.add_argument("--optimizer", choices=("adadelta", "adam", "adamw", "sgd"), default=None)
        o.add_argument("--lr", type=finite_float, default=None, help="(peak) learning rate")
        o.add_argument("--rho", type=finite_float, default=None, help="Adadelta rho")
        o.add_argument("--eps", type=finite_float, default=None, help="optimizer epsilon")
        o.add_argument("--momentum", type=finite_float, default=None, help="SGD momentum")
        o.add_argument("--weight-decay", type=finite_float, default=None)
        o.add_argument("--schedule", choices=("constant", "cosine"), default=None)
        o.add_argument("--warmup-steps", type=nonneg_int, default=None)
        o.add_argument("--min-lr-ratio", type=finite_float, default=None)
        o.add_argument("--grad-clip", type=finite_float, default=None)
        o.add_argument("--select", choices=("sum_mae", "mae_of", "median_angle_deg", "val_loss"), default=None,
                       help="validation metric that picks best.pt")
        o.add_argument("--time-limit", dest="time_limit_s", type=finite_float, default=None, metavar="SECONDS",
                       help="stop training after this many seconds (0: none)")
        o.add_argument("--max-steps-per-epoch", type=nonneg_int, default=None)
        r = parser.add_argument_group("hardware")
        r.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
        r.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision on CUDA (default on)")
        r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="channels_last on CUDA (default on)")
        r.add_argument("--workers", type=nonneg_int, default=None, help="DataLoader workers (default 0)")
        r.add_argument("--seed", type=int, default=None, help="seed (default 0)")
        r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default on)")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int | None:
        import os

        from edorient.errors import EdorientError
        from edorient.training.run import train_on_dataset, train_on_simulation

        if (args.data is None) == (args.simulate is None):
            raise EdorientError("give either --data FOLDER (a generated data set) or --simulate random|single "
                                "(images simulated while training)")
        out = args.out or Path("runs") / (args.preset or args.arch or "thesis")
        overrides = {name: getattr(args, name, None) for name in _FIELDS}
        if args.simulate:
            if args.finetune or args.subset is not None or args.limit is not None:
                raise EdorientError("--finetune, --subset and --limit select parts of a data set on disk; with "
                                    "--simulate set the amount with --epoch-size and --val-size")
            from edorient.cli.generate import generate_config

            seed = args.seed if args.data_seed is None else args.data_seed
            res, config = train_on_simulation(
                generate_config(args, args.simulate, args.epoch_size, 0 if seed is None else seed), out,
                epoch_size=args.epoch_size, val_size=args.val_size, preset_name=args.preset, arch=args.arch,
                overrides=overrides, input_size=args.input, resume=args.resume, init=args.init)
        else:
            res, config = train_on_dataset(
                args.data, out, preset_name=args.preset, arch=args.arch, overrides=overrides,
                input_size=args.input, resume=args.resume, split=args.split, scheme=args.scheme,
                subset=args.subset, limit=args.limit, finetune_mode=args.finetune, subsets=args.subsets,
                first_epochs=args.first_epochs, later_epochs=args.later_epochs, init=args.init)
        if os.environ.get("RANK", "0") == "0":  # the process group is gone by now: torchrun's rank
            row = res.history[-1] if res.history else {}
            print(f"run folder {res.run_dir}: best epoch {res.best_epoch} ({config.select} {res.best_value:.4f}); "
                  f"last epoch MAE_1 {row.get('mae_1', float('nan')):.4f} order-free MAE {row.get('mae_of', float('nan')):.4f} "
                  f"median angle {row.get('median_angle_deg', float('nan')):.2f} deg")
        return 0
