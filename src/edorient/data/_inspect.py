"""What a data set holds: counts, parameters, split sizes, label statistics, a contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edorient.data import splits as sp
from edorient.errors import EdorientError

#: Labels summarised at most (a random sample beyond that; statistics only).
MAX_STAT_SAMPLES = 200_000


def _data(data_or_root):
    from edorient.data.dataset import EDData, open_dataset

    return data_or_root if isinstance(data_or_root, EDData) else open_dataset(data_or_root, verify="size")


def describe_dataset(data_or_root, seed: int = 0) -> dict:
    """Counts, configuration, split sizes and label statistics of a data set (JSON-friendly).

    Label statistics are over every sample, or over a random ``MAX_STAT_SAMPLES`` of them.
    """
    data = _data(data_or_root)
    n = len(data)
    ids = np.arange(n) if n <= MAX_STAT_SAMPLES else np.sort(
        np.random.default_rng(seed).choice(n, MAX_STAT_SAMPLES, replace=False)
    )
    labels = data.labels(ids)
    inplane = data.inplane(ids)
    ratios = data.ratios(ids)
    grains = "AB"[: data.n_grains]
    stats: dict = {"samples_used": int(ids.size)}
    for g, name in enumerate(grains):
        d = labels[:, g].astype(np.float64)
        stats[f"direction_{name}"] = {
            "mean": d.mean(0).round(4).tolist(),
            "std": d.std(0).round(4).tolist(),
            "min": d.min(0).round(4).tolist(),
            "max": d.max(0).round(4).tolist(),
        }
        stats[f"inplane_{name}_deg"] = {"min": float(inplane[:, g].min()), "max": float(inplane[:, g].max())}
    if data.n_grains == 2:
        cos = np.clip(np.sum(labels[:, 0] * labels[:, 1], axis=1), -1, 1)
        ang = np.degrees(np.arccos(cos))
        stats["angle_A_B_deg"] = {"mean": round(float(ang.mean()), 3), "min": round(float(ang.min()), 3),
                                  "max": round(float(ang.max()), 3)}
    stats["ratio"] = {"min": float(ratios.min()), "max": float(ratios.max()), "mean": round(float(ratios.mean()), 4)}
    out_splits = {}
    for split in sp.SPLITS:
        s = {part: int(data.index(split, part).size) for part in sp.PARTS}
        s["test_subsets"] = [int(x.size) for x in data.test_subsets(split)]
        for scheme in data.schemes(split):
            k = 0
            sizes = []
            while True:
                try:
                    sizes.append(int(data.index(split, "trainval", subset=k, scheme=scheme).size))
                except EdorientError:
                    break
                k += 1
            s[f"subsets_{scheme}"] = sizes
        out_splits[split] = s
    meta = data.meta
    return {
        "root": str(data.root),
        "mode": data.mode,
        "samples": n,
        "records": data.n_records,
        "n_grains": data.n_grains,
        "image_size": data.image_size,
        "dtype": meta["dtype"],
        "intensity": meta["intensity"],
        "shards": meta["n_shards"],
        "shard_size": meta["shard_size"],
        "bytes": int(sum(s["bytes"] for s in meta["shards"])),
        "seed": meta["seed"],
        "config": meta["config"],
        "splits": out_splits,
        "labels": stats,
    }


def format_description(desc: dict) -> str:
    """Human-readable text of :func:`describe_dataset`'s dict."""
    c = desc["config"]
    lines = [
        f"data set    {desc['root']}",
        f"mode        {desc['mode']}: {desc['samples']:,} samples of {desc['n_grains']} grain(s) "
        f"from {desc['records']:,} stored records",
        f"images      {desc['image_size']} x {desc['image_size']}, {desc['dtype']} ({desc['intensity']} intensity), "
        f"{desc['shards']} shards of {desc['shard_size']}, {desc['bytes'] / 2**20:.1f} MiB",
        f"crystal     {c['crystal']['name']} ({c['crystal']['space_group']}, Laue {c['crystal']['laue_group']}, "
        f"{c['crystal']['source']})",
        "simulation  " + ", ".join(f"{k}={v}" for k, v in sorted(c["simulation"].items())),
        f"generation  seed={c['seed']} inplane_deg={c['inplane_deg']} ratio={c['ratio']} "
        f"noise_dose={c['noise_dose']} edorient {c['edorient_version']}",
    ]
    for split, s in desc["splits"].items():
        lines.append(
            f"split {split:8s} trainval {s['trainval']:,} (train {s['train']:,} / val {s['val']:,}), "
            f"test {s['test']:,} = {' + '.join(f'{x:,}' for x in s['test_subsets'])}"
        )
        for key, sizes in s.items():
            if key.startswith("subsets_"):
                lines.append(f"  {key[8:]:8s} subsets {' / '.join(f'{x:,}' for x in sizes)}")
    st = desc["labels"]
    lines.append(f"labels      (over {st['samples_used']:,} samples)")
    for key, v in st.items():
        if key != "samples_used":
            lines.append(f"  {key:16s} " + "  ".join(f"{k} {v[k]}" for k in v))
    return "\n".join(lines)


def contact_sheet(data_or_root, path: str | Path, n: int = 16, ids=None, seed: int = 0, cols: int = 4) -> Path:
    """Save a PNG grid of example images with their labels (random samples unless ``ids``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data = _data(data_or_root)
    if ids is None:
        ids = np.sort(np.random.default_rng(seed).choice(len(data), min(int(n), len(data)), replace=False))
    ids = np.asarray(ids, dtype=np.int64)
    labels = data.labels(ids)
    ratios = data.ratios(ids)
    cols = max(1, min(int(cols), ids.size))
    rows = -(-ids.size // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.1 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sid, lab, r in zip(axes.ravel(), ids, labels, ratios):
        ax.imshow(data.image(int(sid)), cmap="gray", vmin=0, vmax=1)
        text = [f"#{sid}" + (f"  r={r:.2f}" if data.n_grains == 2 else "")]
        for g, name in enumerate("AB"[: data.n_grains]):
            text.append(f"{name} [{lab[g, 0]:.2f} {lab[g, 1]:.2f} {lab[g, 2]:.2f}]")
        ax.set_title("\n".join(text), fontsize=7)
    fig.suptitle(f"{Path(data.root).name}: {data.mode}, {len(data):,} samples", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
