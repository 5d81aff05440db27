"""``edorient reproduce``: the thesis' pre-experiments and experiments 1-3 at a fraction of
their sizes, with the thesis' tables (ours beside its numbers) and ``OUT/summary.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float, nonneg_int, positive_int


class Reproduce(Subcommand):
    COMMAND = "reproduce"
    HELP = "run the thesis' pre-experiments and experiments 1-3 at a fraction of their sizes; write its tables"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--experiment", default="all", metavar="WHICH",
                            help="pre, 1, 2, 3, all, or a comma list such as pre,3 (default all)")
        parser.add_argument("--scale", type=finite_float, default=0.02, metavar="F",
                            help="fraction of the thesis' sizes, 0 < F <= 1: N = smallest with C(N,2) >= F x 499,500 "
                                 "orientations, every set in the thesis' proportions, epochs x F (default 0.02: "
                                 "142 orientations, 10,011 images; training capped at 40 min, 36 min in all measured on 2 shared CPU cores; 1: the thesis, for a GPU)")
        parser.add_argument("--out", type=Path, default=Path("reproduce-out"),
                            help="output folder; rerun with the same settings to resume (default reproduce-out)")
        parser.add_argument("--arch", default=None, metavar="NAME",
                            help="model (edorient model --list); default thesis for F >= 0.5, else compact")
        parser.add_argument("--size", type=positive_int, default=None, metavar="S",
                            help="simulated image side, a multiple of 8; default 224 for F >= 0.5, else 64 "
                                 "(the thesis CNN at 224 trains at a few images/s on a CPU)")
        parser.add_argument("--recipe", choices=("thesis", "cpu"), default=None,
                            help="thesis: Adadelta (lr 1.0, rho 0.95, eps 1e-7), batch 128; cpu: AdamW 2e-3, cosine "
                                 "per stage, batch 32 (more steps on small sets); default thesis for F >= 0.5, else cpu")
        parser.add_argument("--batch-size", type=positive_int, default=None, help="override the recipe's batch size")
        parser.add_argument("--objective", choices=("order-free", "thesis"), default="order-free",
                            help="order-free (default): MAE under the better head-to-grain assignment, best epoch by it; "
                                 "thesis: the thesis' MAE in its grain order, best epoch by MAE_1 + MAE_2")
        parser.add_argument("--epoch-scale", type=finite_float, default=None, metavar="E",
                            help="multiply the thesis' epochs (500 first, 50 later) by E, at least 1 (default F)")
        parser.add_argument("--time-budget", type=finite_float, default=None, metavar="SECONDS",
                            help="cap on the training time of all stages, split by planned work (epochs x images x sqrt(input/S)) (0: none; default "
                                 "2400 for F < 0.5, none otherwise)")
        parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
        parser.add_argument("--seed", type=int, default=0, help="seed of data, splits, K-means and training (default 0)")
        parser.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader workers (default 0)")
        parser.add_argument("--gen-workers", type=positive_int, default=2, help="simulation processes (default 2)")
        parser.add_argument("--kmax", type=positive_int, default=10, help="K-means SSE curve K = 1..kmax (default 10)")
        parser.add_argument("--no-plots", action="store_true", help="no learning-curve plots (faster tiny runs)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        import time

        from edorient.experiments import ReproduceConfig, parse_experiments, reproduce

        cfg = ReproduceConfig(
            experiments=parse_experiments(args.experiment), scale=args.scale, arch=args.arch, image_size=args.size,
            recipe=args.recipe, batch_size=args.batch_size, epoch_scale=args.epoch_scale,
            time_budget_s=args.time_budget, device=args.device, seed=args.seed, workers=args.workers,
            gen_workers=args.gen_workers, kmeans_kmax=args.kmax, plots=not args.no_plots, objective=args.objective,
        ).resolved()
        t0 = time.perf_counter()
        summary = reproduce(args.out, cfg, progress=not (args.no_progress or args.quiet))
        if not args.quiet:
            print(summary.read_text())
        print(f"summary: {summary} ({time.perf_counter() - t0:.0f} s)")
        return 0
