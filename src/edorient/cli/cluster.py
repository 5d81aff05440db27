"""``edorient cluster``: K-means balanced training subsets (thesis section 3.5).

Scheme (i) clusters every training image at once (56 x 56); scheme (ii) clusters five random
directories separately (112 x 112) and merges their parts. Both store five training subsets
(100k x 4 + 89.5k, proportional when smaller) with equal cluster proportions as the index
files of a subset scheme (``kmeans_i`` / ``kmeans_ii``), which ``EDData.index(...,
scheme=...)`` and ``edorient train`` read. Written next to them, in ``--out`` (default
``DIR/kmeans/<scheme>``): the SSE curve (``sse.csv``), the elbow plot(s), the composition
tables (``tables.md`` and one CSV each), every image's cluster (``clusters.npz``) and the
resolved configuration (``config.json``).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

from edorient.cli._base import Subcommand, finite_float, nonneg_int, positive_int
from edorient.errors import EdorientError

log = logging.getLogger(__name__)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux ru_maxrss is in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) * (1 if sys.platform == "darwin" else 1024)


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
        from edorient.data import open_dataset
        from edorient.data._storage import atomic_write_bytes, atomic_write_json
        from edorient.data.splits import write_subsets

        t_start = time.perf_counter()
        if args.kmax < 0:
            raise EdorientError(f"--kmax must be >= 2 (or 0 with --k), got {args.kmax}")
        if args.workers < 0:
            raise EdorientError(f"--workers must be >= 0, got {args.workers}")
        cfg = km.KMeansConfig(
            kmax=args.kmax, k=args.k, algorithm=args.algorithm, seed=args.seed, n_init=args.n_init, tol=args.tol,
            batch_size=args.batch_size, epochs=args.epochs, max_feature_gb=args.max_feature_gb,
        ).validated()
        data = open_dataset(args.data)
        resize = km.THESIS_RESIZE[args.scheme] if args.resize is None else args.resize
        km.check_resize(resize, data.image_size)
        ids = data.index(args.split, "trainval")
        min_n = km.N_DIRECTORIES * max(args.kmax, args.k or 0) if args.scheme == "ii" else max(args.kmax, args.k or 0)
        if ids.size < max(min_n, len(km.SUBSET_WEIGHTS)):
            raise EdorientError(
                f"the {args.split} training set of {args.data} has {ids.size} images, too few for "
                f"scheme {args.scheme} with K up to {max(args.kmax, args.k or 0)}; lower --kmax or use a bigger data set"
            )
        scheme_name = km.SCHEME_I if args.scheme == "i" else km.SCHEME_II
        out = Path(args.out) if args.out is not None else Path(args.data) / "kmeans" / scheme_name
        if out.exists() and not out.is_dir():
            raise EdorientError(f"--out {out} is a file; give a folder")
        out.mkdir(parents=True, exist_ok=True)
        progress = not (args.no_progress or args.quiet)

        tmp_files: list[Path] = []

        def features(sample_ids: np.ndarray, name: str) -> np.ndarray:
            import torch

            dim = resize * resize
            algo = cfg.resolve_algorithm(sample_ids.size, dim)
            store = None
            if algo == "minibatch":  # features on disk, read back in chunks
                path = out / f".features_{name}.npy"
                tmp_files.append(path)
                store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(sample_ids.size, dim))
            log.info("group %s: %d images -> %dx%d features (%.2f GB, %s)", name, sample_ids.size, resize, resize,
                     km.feature_bytes(sample_ids.size, dim) / 1e9, algo)
            ds = data.torch_dataset(sample_ids, resize=resize)
            loader = torch.utils.data.DataLoader(ds, batch_size=args.read_batch, shuffle=False,
                                                 num_workers=args.workers)
            batches = (x.numpy()[:, 0] for x, _, _ in loader)
            return km.compute_features(batches, sample_ids.size, resize, out=store, progress=progress)

        try:
            run = km.scheme_i if args.scheme == "i" else km.scheme_ii
            result = run(ids, features, cfg, progress=progress)
        finally:
            for p in tmp_files:
                p.unlink(missing_ok=True)

        # index files of the scheme, in the data layer's format
        write_subsets(args.data, args.split, result.scheme, result.subsets, seed=args.seed)

        # SSE curve, elbow plots, tables, clusters
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["group", "k", "sse", "chosen", "seconds"])
        for g in result.groups:
            for k, s in zip(g.result.ks.tolist(), g.result.sse.tolist()):
                w.writerow([g.name, k, repr(float(s)), int(k == g.result.k), f"{g.result.seconds.get(k, 0.0):.3f}"])
        atomic_write_bytes(out / "sse.csv", buf.getvalue().encode())
        plots = []
        for g in result.groups:
            if g.result.ks.size:
                name = "elbow.png" if len(result.groups) == 1 else f"elbow_{g.name}.png"
                atomic_write_bytes(out / name, _elbow_png(g, resize))
                plots.append(name)
        tables = km.scheme_tables(result)
        for stem, _, header, rows in tables:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
            atomic_write_bytes(out / f"{stem}.csv", buf.getvalue().encode())
        text = km.scheme_markdown(result)
        atomic_write_bytes(out / "tables.md", text.encode())
        bio = io.BytesIO()
        np.savez(bio, ids=np.concatenate([g.ids for g in result.groups]),
                 labels=np.concatenate([g.result.labels for g in result.groups]),
                 group=np.concatenate([np.full(g.ids.size, i, dtype=np.int16) for i, g in enumerate(result.groups)]))
        atomic_write_bytes(out / "clusters.npz", bio.getvalue())

        summary = {
            "command": "cluster",
            "data": str(Path(args.data).resolve()),
            "split": args.split,
            "scheme": result.scheme,
            "resize": resize,
            "kmeans": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "subset_weights": list(km.SUBSET_WEIGHTS),
            "subset_sizes": [int(s.size) for s in result.subsets],
            "n_images": int(ids.size),
            "groups": [
                {"name": g.name, "n_images": int(g.ids.size), "k": g.result.k, "k_rule": g.result.k_rule,
                 "algorithm": g.result.algorithm, "cluster_sizes": g.counts.sum(axis=0).tolist(),
                 "sse": g.result.sse.tolist()}
                for g in result.groups
            ],
            "elbow_rule": "K farthest below the chord from (1, SSE_1) to (kmax, SSE_kmax) on normalised axes",
            "outputs": sorted(["sse.csv", "tables.md", "clusters.npz", *plots, *(f"{t[0]}.csv" for t in tables)]),
            "index_files": f"splits/{args.split}/{result.scheme}/subset_<k>[_train|_val].npy",
            "peak_rss_gb": round(peak_rss_bytes() / 1e9, 3),
            "seconds": round(time.perf_counter() - t_start, 2),
        }
        atomic_write_json(out / "config.json", summary)
        ks = ", ".join(f"{g.name}: K = {g.result.k} ({g.result.k_rule})" for g in result.groups)
        print(f"scheme {result.scheme} on {ids.size} {args.split} training images, {resize}x{resize}; {ks}\n")
        print(text)
        print(f"subsets stored as scheme {result.scheme!r} in {Path(args.data) / 'splits' / args.split / result.scheme}")
        print(f"curves, plots, tables, config: {out}")
        return 0


def _elbow_png(group, resize: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = group.result
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    try:
        ax.plot(res.ks, res.sse, "o-", color="tab:blue")
        if res.k in res.ks:
            i = int(np.flatnonzero(res.ks == res.k)[0])
            ax.plot([res.k], [res.sse[i]], "o", ms=12, mfc="none", mec="tab:red",
                    label=f"K = {res.k} ({res.k_rule})")
            ax.legend()
        ax.set_xlabel("number of clusters K")
        ax.set_ylabel("SSE")
        title = "all training images" if group.name == "all" else f"directory {group.name}"
        ax.set_title(f"Elbow method, {title} ({resize}x{resize})")
        ax.set_xticks(res.ks)
        fig.tight_layout()
        bio = io.BytesIO()
        fig.savefig(bio, format="png")
    finally:
        plt.close(fig)
    return bio.getvalue()
