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
        from edorient.models import available_models
        from edorient.training import PRESETS, available_losses

        parser.add_argument("--data", type=Path, required=True, help="data-set folder (edorient generate)")
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
        import torch

        from edorient.errors import EdorientError
        from edorient.models import MODELS, available_models, build_model
        from edorient.training import TrainConfig, finetune, fit, preset
        from edorient.training import distributed as D

        out = args.out or Path("runs") / (args.preset or args.arch or "thesis")
        saved = _saved_args(out) if args.resume else None
        if saved:  # resume: the run's own settings, overridden by the flags given now
            settings = dict(saved["settings"])
            arch = args.arch or saved["arch"]
            args.input = args.input or saved.get("input")
        else:
            settings = preset(args.preset) if args.preset else {}
            arch = args.arch or settings.pop("arch", "thesis")
            settings.pop("arch", None)
        if arch not in MODELS:
            raise EdorientError(f"unknown architecture {arch!r}; choose one of: {', '.join(available_models())}")
        for name in _FIELDS:
            value = getattr(args, name, None)
            if value is not None:
                settings[name] = value
        config = TrainConfig(**settings)
        config.validate()
        started = D.setup(config.device)
        try:
            if args.finetune and args.subset is not None:
                raise EdorientError("--subset and --finetune exclude each other; use --subsets with --finetune")
            if not args.data.is_dir():
                raise EdorientError(f"data folder {str(args.data)!r} does not exist; create it with edorient generate")

            from edorient.data import open_dataset

            data = open_dataset(args.data)
            size = args.input or data.image_size
            ops = _laue_ops(data)
            if out.exists() and any(out.iterdir()) and not args.resume:
                raise EdorientError(f"run folder {str(out)!r} is not empty; pass --resume to continue it or choose another --out")
            D.barrier()  # every rank has checked the folder before rank 0 writes into it
            if D.is_main() and not saved:
                import json

                out.mkdir(parents=True, exist_ok=True)
                (out / "train_args.json").write_text(json.dumps(
                    {"arch": arch, "input": size, "settings": config.to_dict(), "finetune": args.finetune}, indent=2) + "\n")

            def part(p: str, subset):
                ids = data.index(args.split, p, subset=subset, scheme=args.scheme)
                if args.limit:
                    ids = ids[: args.limit if p == "train" else max(1, args.limit // 4)]
                return data.torch_dataset(ids, resize=size if size != data.image_size else None)

            extra = {"data": str(args.data.resolve()), "split": args.split, "scheme": args.scheme, "input_size": size,
                     "n_grains": data.n_grains, "preset": args.preset, "limit": args.limit}
            torch.manual_seed(config.seed)
            model = build_model(arch, input_size=size, n_grains=data.n_grains)
            if args.finetune:
                n_sub = _n_subsets(data, args.split, args.scheme)
                subsets = list(range(n_sub)) if args.subsets == "all" else args.subsets
                bad = [k for k in subsets if k >= n_sub]
                if bad:
                    raise EdorientError(f"--subsets {bad} do not exist: scheme {args.scheme!r} has subsets 0..{n_sub - 1}")
                stages = [(lambda k=k: (part("train", k), part("val", k))) for k in subsets]
                results = finetune(model, stages, config, out, mode=args.finetune, first_epochs=args.first_epochs,
                                   later_epochs=args.later_epochs, laue_ops=ops, resume=args.resume,
                                   extra={**extra, "subsets": subsets})
                res = results[-1]
            else:
                extra["subset"] = args.subset
                res = fit(model, part("train", args.subset), part("val", args.subset), config, out,
                          laue_ops=ops, resume=args.resume, extra=extra)
            if D.is_main():
                row = res.history[-1] if res.history else {}
                print(f"run folder {res.run_dir}: best epoch {res.best_epoch} ({config.select} {res.best_value:.4f}); "
                      f"last epoch MAE_1 {row.get('mae_1', float('nan')):.4f} order-free MAE {row.get('mae_of', float('nan')):.4f} "
                      f"median angle {row.get('median_angle_deg', float('nan')):.2f} deg")
        finally:
            if started:
                D.cleanup()
        return 0


def _saved_args(out: Path) -> dict | None:
    import json

    path = out / "train_args.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _n_subsets(data, split: str, scheme: str) -> int:
    n = 0
    from edorient.errors import EdorientError

    while True:
        try:
            data.index(split, "train", subset=n, scheme=scheme)
        except EdorientError:
            break
        n += 1
    if n == 0:
        raise EdorientError(f"data set has no subsets of scheme {scheme!r} for split {split}; see edorient inspect")
    return n


def _laue_ops(data):
    """The data set's Laue-group operations (4/mmm if they cannot be built)."""
    try:
        from edorient.physics.symmetry import laue_group

        return laue_group(data.config["crystal"]["laue_group"]).ops
    except Exception as exc:  # noqa: BLE001 - fall back to anatase's group, loudly
        log.warning("cannot build the data set's Laue group (%s); using 4/mmm", exc)
        return None
