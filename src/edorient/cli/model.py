"""``edorient model``: layers, Keras units, parameters and the thesis' memory rule of a model."""

from __future__ import annotations

import argparse

from edorient.cli._base import Subcommand, finite_float, positive_int


class Model(Subcommand):
    COMMAND = "model"
    HELP = "print a model's layers, units, parameters, eq. 3.4 memory and the batch sizes eq. 3.5 allows"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        from edorient.models import available_models

        parser.add_argument("--arch", default="thesis", metavar="NAME",
                            help=f"architecture: {', '.join(available_models())} (default thesis)")
        parser.add_argument("--input", type=positive_int, default=224, metavar="S", help="image side in pixels (default 224)")
        parser.add_argument("--grains", type=int, choices=(1, 2), default=None,
                            help="heads: 2 bicrystal, 1 single crystal (default: the architecture's)")
        parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size of the eq. 3.4 estimate (default 128)")
        parser.add_argument("--gpu-memory", type=finite_float, default=11.0, metavar="GB",
                            help="GPU memory for eq. 3.5 in GB (default 11, the thesis' GTX 1080 Ti)")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int | None:
        from edorient.errors import EdorientError
        from edorient.models import MODELS, build_model, feasible_batch_sizes, summarize

        if args.gpu_memory <= 0:
            raise EdorientError(f"--gpu-memory must be positive, got {args.gpu_memory}")
        try:
            model = build_model(args.arch, input_size=args.input, n_grains=args.grains, device="meta")
        except EdorientError:
            raise
        except ValueError as exc:  # too small an input for the pooling layers
            raise EdorientError(f"--input {args.input}: {exc}") from None
        s = summarize(model)
        print(f"{args.arch}: {MODELS[args.arch][2]}")
        print(f"input {args.input} x {args.input} x 1, {model.config.n_grains} head(s)\n")
        print(s.table())
        print()
        print(f"units (Keras count)     {s.units:,}")
        print(f"parameters              {s.params:,}")
        print(f"eq. 3.4 memory          {s.memory_gb(args.batch_size):.2f} GB at batch {args.batch_size}")
        ok = feasible_batch_sizes(s.units, s.params, args.gpu_memory)
        print(f"eq. 3.5 batch sizes     {' '.join(map(str, ok)) if ok else 'none'} (<= {args.gpu_memory:g} GB)")
        return 0
