"""K-means balanced training subsets of a data set on disk (thesis section 3.5), end to end.

:func:`cluster_dataset` is what ``edorient cluster`` runs: read the training images of a split
(downscaled), cluster them (:mod:`edorient.data.kmeans`: scheme (i) all at once, scheme (ii)
five directories separately), store five equal-proportion subsets as the index files of a
subset scheme (``kmeans_i`` / ``kmeans_ii``), and write next to them the SSE curve
(``sse.csv``), the elbow plot(s), the composition tables (``tables.md`` and one CSV each),
every image's cluster (``clusters.npz``) and the resolved configuration (``config.json``).
"""

from __future__ import annotations

import csv
import io
import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edorient.errors import EdorientError

log = logging.getLogger(__name__)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux ru_maxrss is in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) * (1 if sys.platform == "darwin" else 1024)


@dataclass
class ClusterReport:
    """What :func:`cluster_dataset` did: the resolved configuration written to config.json,
    the composition tables (markdown) and where the outputs are."""

    summary: dict
    tables_markdown: str
    out: Path
    subsets_dir: Path


def cluster_dataset(data_path: str | Path, cfg, scheme: str = "i", split: str = "random",
                    resize: int | None = None, out: str | Path | None = None, workers: int = 0,
                    read_batch: int = 256, progress: bool = True) -> ClusterReport:
    """Cluster the ``split`` training images of the data set at ``data_path``; see the module docstring.

    ``cfg`` is a :class:`edorient.data.kmeans.KMeansConfig`; ``resize`` defaults to the thesis'
    side for the scheme (56 for i, 112 for ii); ``out`` to ``DATA/kmeans/<scheme name>``.
    """
    from edorient._utils.outputs import claim_output_dir
    from edorient.data import kmeans as km
    from edorient.data import open_dataset
    from edorient.data._storage import atomic_write_bytes, atomic_write_json
    from edorient.data.splits import write_subsets

    t_start = time.perf_counter()
    if scheme not in ("i", "ii"):
        raise EdorientError(f"unknown scheme {scheme!r}: choose i or ii")
    if workers < 0:
        raise EdorientError(f"--workers must be >= 0, got {workers}")
    cfg = cfg.validated()
    data = open_dataset(data_path)
    resize = km.THESIS_RESIZE[scheme] if resize is None else int(resize)
    km.check_resize(resize, data.image_size)
    ids = data.index(split, "trainval")
    kmax = max(cfg.kmax, cfg.k or 0)
    min_n = km.N_DIRECTORIES * kmax if scheme == "ii" else kmax
    if ids.size < max(min_n, len(km.SUBSET_WEIGHTS)):
        raise EdorientError(
            f"the {split} training set of {data_path} has {ids.size} images, too few for "
            f"scheme {scheme} with K up to {kmax}; lower --kmax or use a bigger data set"
        )
    scheme_name = km.SCHEME_I if scheme == "i" else km.SCHEME_II
    out = Path(out) if out is not None else Path(data_path) / "kmeans" / scheme_name
    claim_output_dir(out, "clusters")  # new, empty or an earlier cluster output: never a user's folder

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
        loader = torch.utils.data.DataLoader(ds, batch_size=read_batch, shuffle=False, num_workers=workers)
        batches = (x.numpy()[:, 0] for x, _, _ in loader)
        return km.compute_features(batches, sample_ids.size, resize, out=store, progress=progress)

    try:
        run = km.scheme_i if scheme == "i" else km.scheme_ii
        result = run(ids, features, cfg, progress=progress)
    finally:
        for p in tmp_files:
            p.unlink(missing_ok=True)

    # index files of the scheme, in the data layer's format
    write_subsets(data_path, split, result.scheme, result.subsets, seed=cfg.seed)

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
        "data": str(Path(data_path).resolve()),
        "split": split,
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
        "index_files": f"splits/{split}/{result.scheme}/subset_<k>[_train|_val].npy",
        "peak_rss_gb": round(peak_rss_bytes() / 1e9, 3),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    atomic_write_json(out / "config.json", summary)
    return ClusterReport(summary, text, out, Path(data_path) / "splits" / split / result.scheme)


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
