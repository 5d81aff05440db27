"""Peak RSS and time of the K-means step of ``edorient cluster`` (thesis 3.5).

Each case runs in a fresh subprocess (ru_maxrss only grows), on synthetic 56 x 56 features
(float32, N x 3136, a mixture of 5 sparse spot-like prototypes plus noise, values in [0, 1]),
for K = 1..kmax with the library's own :func:`edorient.data.kmeans.cluster`. Optionally
(``--data DIR``) it also times feature extraction (reading, composing, area-downscaling) from
a real data set.

    python benchmarks/bench_kmeans.py --sizes 25000 50000 100000 --kmax 10
    python benchmarks/bench_kmeans.py --data /tmp/ds --resize 56

Prints one JSON line per case and a summary with a linear extrapolation to 489,500 images.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

FULL_N = 489_500


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _case(n: int, size: int, kmax: int, algorithm: str, seed: int, tol: float = 1e-4) -> dict:
    import numpy as np

    from edorient.data import kmeans as km

    base = _rss_gb()
    dim = size * size
    rng = np.random.default_rng(seed)
    protos = (rng.random((5, dim)) < 0.03).astype(np.float32) * rng.random((5, dim)).astype(np.float32)
    X = np.empty((n, dim), dtype=np.float32)
    which = rng.choice(5, size=n, p=[0.08, 0.47, 0.35, 0.02, 0.08])  # Table 3.10's shares
    for a in range(0, n, 8192):  # filled in chunks: no second full-size array
        b = min(a + 8192, n)
        X[a:b] = np.clip(protos[which[a:b]] + np.float32(0.05) * rng.standard_normal((b - a, dim), dtype=np.float32), 0, 1)
    after_features = _rss_gb()
    t0 = time.perf_counter()
    res = km.cluster(X, km.KMeansConfig(kmax=kmax, seed=seed, algorithm=algorithm, tol=tol))
    seconds = time.perf_counter() - t0
    return {
        "n": n, "size": size, "kmax": kmax, "algorithm": res.algorithm, "tol": tol,
        "feature_gb": round(km.feature_bytes(n, dim) / 1e9, 3),
        "rss_after_imports_gb": round(base, 3), "rss_after_features_gb": round(after_features, 3),
        "peak_rss_gb": round(_rss_gb(), 3), "seconds": round(seconds, 1),
        "seconds_per_k": {int(k): round(v, 2) for k, v in res.seconds.items()}, "k_elbow": res.k,
    }


def _features_case(data: str, resize: int, n: int, workers: int) -> dict:
    import numpy as np
    import torch

    from edorient.data import kmeans as km
    from edorient.data import open_dataset

    d = open_dataset(data)
    ids = d.index("random", "trainval")[:n]
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(d.torch_dataset(ids, resize=resize), batch_size=256, num_workers=workers)
    X = km.compute_features((x.numpy()[:, 0] for x, _, _ in loader), ids.size, resize)
    s = time.perf_counter() - t0
    return {"features_from": data, "image_size": d.image_size, "resize": resize, "n": int(ids.size),
            "workers": workers, "seconds": round(s, 2), "images_per_s": round(ids.size / s, 1),
            "full_scale_minutes": round(FULL_N / (ids.size / s) / 60, 1), "peak_rss_gb": round(_rss_gb(), 3),
            "mean": float(np.mean(X))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[25_000, 50_000, 100_000])
    p.add_argument("--size", type=int, default=56, help="feature side (56: 3136 values)")
    p.add_argument("--kmax", type=int, default=10)
    p.add_argument("--algorithms", nargs="+", default=["lloyd", "minibatch"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-4, help="lloyd tol (0 avoids scikit-learn's np.var copy)")
    p.add_argument("--data", default=None, help="also time feature extraction from this data set")
    p.add_argument("--resize", type=int, default=56)
    p.add_argument("--n-read", type=int, default=2000)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--_case", nargs=6, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        n, size, kmax, algo, seed, tol = args._case
        print(json.dumps(_case(int(n), int(size), int(kmax), algo, int(seed), float(tol))))
        return
    results = []
    if args.data:
        r = _features_case(args.data, args.resize, args.n_read, args.workers)
        print(json.dumps(r), flush=True)
    for algo in args.algorithms:
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--_case", str(n), str(args.size), str(args.kmax), algo,
                                  str(args.seed), str(args.tol)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(r), flush=True)
            results.append(r)
    for algo in args.algorithms:
        rs = [r for r in results if r["algorithm"] == algo]
        if len(rs) >= 2:
            a, b = rs[0], rs[-1]
            slope_rss = (b["peak_rss_gb"] - a["peak_rss_gb"]) / (b["n"] - a["n"])
            slope_t = (b["seconds"] - a["seconds"]) / (b["n"] - a["n"])
            rss_full = b["peak_rss_gb"] + slope_rss * (FULL_N - b["n"])
            t_full = b["seconds"] + slope_t * (FULL_N - b["n"])
            print(f"{algo}: extrapolated to {FULL_N} x {args.size}^2: peak RSS ~ {rss_full:.1f} GB, "
                  f"K = 1..{args.kmax} in ~ {t_full / 60:.0f} min (linear in N; iterations on real images differ)")


if __name__ == "__main__":
    main()
