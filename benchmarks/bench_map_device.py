"""The map's indexing (``mapping.index.Indexer``, the chunk task of ``edorient map``) on each
torch device given: the same 16 x 16 simulated scan (8 grains, dose 20000, seed 3) as one chunk,
1 torch thread, anchors every 8th pattern; patterns/s of each and, for two devices, how far
their outputs differ.

    python benchmarks/bench_map_device.py cuda cpu      # on a machine with a GPU
    python benchmarks/bench_map_device.py cpu           # anywhere
"""
import sys
import time

import numpy as np

from edorient.mapping.index import Indexer, MapSettings
from edorient.mapping.simulate import ScanSimConfig, simulate_scan

cfg = ScanSimConfig(probes=(16, 16), dose=20000, seed=3)
counts, truth = simulate_scan(cfg)
raw = counts.reshape(-1, *counts.shape[2:]).astype(np.float32)
devs = sys.argv[1:] or ["cuda", "cpu"]
out = {}
for dev in devs:
    ix = Indexer(MapSettings(device=dev, torch_threads=1))
    ix.index(raw[:16], cfg.calibration, first_index=0, anchor_stride=8)  # warm-up
    t = time.perf_counter()
    res = ix.index(raw, cfg.calibration, first_index=0, anchor_stride=8)
    dt = time.perf_counter() - t
    out[dev] = res
    print(f"{dev}: {len(raw)} patterns in {dt:.2f} s = {len(raw) / dt:.1f} patterns/s (one process, 1 torch thread)", flush=True)
if len(out) == 2:
    a, b = (out[d] for d in devs)
    for k in ("rotations", "n_grains", "score", "image_fit"):
        if k in a:
            x, y = np.asarray(a[k], float), np.asarray(b[k], float)
            print(k, "max |diff|", float(np.nanmax(np.abs(x - y))) if x.size else None, "equal nan", bool(np.array_equal(np.isnan(x), np.isnan(y))))
