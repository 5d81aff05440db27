"""``edorient cluster``: K-means balanced training subsets (thesis section 3.5).

Scheme (i) clusters every training image at once (56 x 56); scheme (ii) clusters five random
directories separately (112 x 112) and merges their parts. Both store five training subsets
(100k x 4 + 89.5k, proportional when smaller) with equal cluster proportions as the index
files of a subset scheme; the work is :func:`edorient.data.clustering.cluster_dataset`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edorient.cli._base import Subcommand, finite_float, nonneg_int, positive_int
from edorient.errors import EdorientError

log = logging.getLogger(__name__)


class Cluster(Subcommand):
    COMMAND = "cluster"
    HELP = "K-means balanced training subsets (thesis 3.5): SSE curve, elbow, equal-proportion subsets"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        from edorient.data.kmeans import ALGORITHMS

        parser.add_argument("--data", type=Path, required=True, help="data-set folder written by edorient generate")
        parser.add_argument("--scheme", choices=["i", "ii"], default="i",
                            help="i: cluster all training images at once; ii: 5 directories clustered "
                                 "separately, same-numbered parts merged (default i)")
        parser.add_argument("--split", choices=["random", "disjoint"], default="random",
                            help="whose training (trainval) set to balance (default random)")
        parser.add_argument("--resize", type=positive_int, default=None,
                            help="downscaled side, must divide the image side (default 56 for i, 112 for ii)")
        parser.add_argument("--kmax", type=nonneg_int, default=10,
                            help="SSE curve for K = 1..kmax (>= 2; 0 skips it, needs --k) (default 10)")
        parser.add_argument("--k", type=positive_int, default=None,
                            help="number of clusters (default: the elbow of the SSE curve)")
        parser.add_argument("--seed", type=int, default=0, help="seed of K-means, directories and subsets (default 0)")
        parser.add_argument("--out", type=Path, default=None,
                            help="folder for curves, plots, tables, config (default DIR/kmeans/<scheme name>)")
        k = parser.add_argument_group("K-means")
        k.add_argument("--algorithm", choices=ALGORITHMS, default="auto",
                       help="lloyd: scikit-learn KMeans on in-memory features (the thesis'); minibatch: "
                            "MiniBatchKMeans over chunks of a float32 feature file (bounded memory); auto: "
                            "lloyd if the features take <= --max-feature-gb (default auto)")
        k.add_argument("--max-feature-gb", type=finite_float, default=10.0,
                       help="auto: largest in-memory feature matrix in GB (default 10; 489,500 x 56^2 is 6.1)")
        k.add_argument("--n-init", type=positive_int, default=1, help="k-means++ restarts per K (default 1)")
        k.add_argument("--tol", type=finite_float, default=1e-4,
                       help="lloyd tolerance relative to the mean feature variance (default 1e-4, scikit-learn's; "
                            "scikit-learn's np.var for it briefly doubles the feature memory, 0 avoids that and "
                            "iterates until no label changes)")
        k.add_argument("--batch-size", type=positive_int, default=4096, help="minibatch chunk size (default 4096)")
        k.add_argument("--epochs", type=positive_int, default=3, help="minibatch passes (default 3)")
        r = parser.add_argument_group("reading")
        r.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader workers reading images (default 0)")
        r.add_argument("--read-batch", type=positive_int, default=256, help="images per read batch (default 256)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient.data import kmeans as km
        from edorient.data.clustering import cluster_dataset

        if args.kmax < 0:
            raise EdorientError(f"--kmax must be >= 2 (or 0 with --k), got {args.kmax}")
        cfg = km.KMeansConfig(
            kmax=args.kmax, k=args.k, algorithm=args.algorithm, seed=args.seed, n_init=args.n_init, tol=args.tol,
            batch_size=args.batch_size, epochs=args.epochs, max_feature_gb=args.max_feature_gb,
        )
        rep = cluster_dataset(args.data, cfg, scheme=args.scheme, split=args.split, resize=args.resize, out=args.out,
                              workers=args.workers, read_batch=args.read_batch,
                              progress=not (args.no_progress or args.quiet))
        s = rep.summary
        ks = ", ".join(f"{g['name']}: K = {g['k']} ({g['k_rule']})" for g in s["groups"])
        print(f"scheme {s['scheme']} on {s['n_images']} {args.split} training images, {s['resize']}x{s['resize']}; {ks}\n")
        print(rep.tables_markdown)
        print(f"subsets stored as scheme {s['scheme']!r} in {rep.subsets_dir}")
        print(f"curves, plots, tables, config: {rep.out}")
        return 0
