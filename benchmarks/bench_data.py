"""Benchmarks of the data layer (issue 3): generation speed, DataLoader speed, peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_data.py [--work DIR] [--skip-rss] [--pairs-limit K]

Prints (and writes as JSON to ``DIR/bench_data_<parts>.json``):

- generation images/s at 224 x 224 with 1 and 2 workers (single and random modes), and the
  wall time to build the N = 1,000 thesis set (499,500 pairs) with 2 workers;
- DataLoader images/s at 224 x 224, batch 128, with 0, 1 and 2 workers, for thesis pairs and
  for random-mode uint8 shards;
- ``--parts onthefly``: images simulated while read (``OnTheFlyDataset``, what ``edorient train
  --simulate`` reads; random bicrystals at 128 px with the shipped cards' noise): images/s of one
  process reading sample by sample and in batches of 128 (one rendering call a batch), and of a
  DataLoader with 0, 1 and 2 workers;
- peak memory of one pass over the 489,500 training(+validation) pairs of the thesis set with 2
  workers: the largest sampled sum of RSS over the process tree (counts shared pages once per
  process, so it over-counts), the largest sampled sum of PSS (shared pages split between the
  processes that map them), and the largest RSS of any one process.

Every figure depends on the machine and on what else runs on it: note both with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

# torch is imported lazily: the spawned generation workers re-import this module
from edorient.data import GenerateConfig, generate_dataset


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kb(pid: int, path: str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryMonitor:
    """Samples RSS and PSS of this process and its descendants every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peak_rss_sum = self.peak_pss_sum = self.peak_rss_one = 0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        pids = _tree(os.getpid())
        rss = [_kb(p, "status", "VmRSS:") for p in pids]
        pss = [_kb(p, "smaps_rollup", "Pss:") for p in pids]
        self.peak_rss_sum = max(self.peak_rss_sum, sum(rss))
        self.peak_pss_sum = max(self.peak_pss_sum, sum(pss))
        self.peak_rss_one = max(self.peak_rss_one, max(rss))
        self.max_procs = max(self.max_procs, len(pids))

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def report(self) -> dict:
        mib = 1024
        return {
            "peak_rss_sum_mib": round(self.peak_rss_sum / mib, 1),
            "peak_pss_sum_mib": round(self.peak_pss_sum / mib, 1),
            "peak_rss_one_process_mib": round(self.peak_rss_one / mib, 1),
            "processes": self.max_procs,
        }


def _cli_generate(root: Path, *args: str) -> float:
    """Wall time of ``edorient generate`` in a fresh process (start-up included), as a user runs it."""
    shutil.rmtree(root, ignore_errors=True)
    cmd = [sys.executable, "-m", "edorient", "-q", "generate", "--no-progress", "--out", str(root), *args]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_generation(work: Path, n: int) -> dict:
    """In-process generate_dataset (pool start-up included, interpreter start-up not)."""
    out = {}
    for mode in ("single", "random"):
        for workers in (1, 2):
            root = work / f"gen_{mode}_{workers}"
            shutil.rmtree(root, ignore_errors=True)
            cfg = GenerateConfig(mode=mode, n=n, shard_size=max(1, n // 8), seed=0)
            t = time.perf_counter()
            generate_dataset(cfg, root, workers=workers, progress=False)
            dt = time.perf_counter() - t
            out[f"{mode}_{workers}w_images_per_s"] = round(n / dt, 1)
            print(f"generate {mode:6s} 224x224 n={n} workers={workers}: {dt:6.1f} s, {n / dt:7.1f} images/s", flush=True)
    return out


def build_thesis(work: Path, workers: int = 2) -> tuple[Path, float]:
    root = work / "thesis_1000"
    dt = _cli_generate(root, "--mode", "thesis", "-n", "1000", "--workers", str(workers))
    print(f"build thesis N=1000 (499,500 pairs) 224x224 workers={workers}: {dt:.1f} s", flush=True)
    return root, dt


def _loader_rate(ds, workers: int, batches: int, batch: int = 128) -> float:
    import torch

    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    next(it)  # start-up (worker spawn, first maps) not counted
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            x, _, _ = next(it)
        except StopIteration:
            break
        n += x.shape[0]
    dt = time.perf_counter() - t
    del it
    return n / dt


def bench_loader(thesis_root: Path, shards_root: Path, batches: int) -> dict:
    from edorient.data import open_dataset

    out = {}
    for name, root in (("thesis_pairs", thesis_root), ("random_shards", shards_root)):
        ds = open_dataset(root, verify="size").torch_dataset()
        for workers in (0, 1, 2):
            rate = _loader_rate(ds, workers, batches)
            out[f"{name}_{workers}w_images_per_s"] = round(rate, 1)
            print(f"DataLoader {name:13s} 224x224 batch 128 workers={workers}: {rate:7.1f} images/s", flush=True)
    return out


def bench_rss(thesis_root: Path, limit: int | None) -> dict:
    import torch

    from edorient.data import open_dataset

    data = open_dataset(thesis_root, verify="size")
    ids = data.index("random", "trainval")
    if limit:
        ids = ids[:limit]
    ds = data.torch_dataset(ids)
    dl = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=2,
                                     generator=torch.Generator().manual_seed(0))
    n = 0
    t = time.perf_counter()
    with MemoryMonitor() as mon:
        for x, y, i in dl:
            n += x.shape[0]
    dt = time.perf_counter() - t
    rep = {"images": n, "seconds": round(dt, 1), "images_per_s": round(n / dt, 1), **mon.report()}
    print(f"one pass over {n:,} pairs, 224x224, batch 128, 2 workers: {dt:.1f} s ({n / dt:.0f} images/s); "
          f"peak RSS sum {rep['peak_rss_sum_mib']} MiB, peak PSS sum {rep['peak_pss_sum_mib']} MiB, "
          f"largest process {rep['peak_rss_one_process_mib']} MiB ({rep['processes']} processes)", flush=True)
    return rep


def bench_onthefly(batches: int) -> dict:
    from edorient.data import OnTheFlyDataset

    cfg = GenerateConfig(mode="random", n=10**6, image_size=128, ratio=(0.35, 0.65), noise_dose=(300, 1e5),
                         noise_background=(0, 0.002), seed=3)
    ds = OnTheFlyDataset(cfg, length=10**6)
    ds[0]  # the simulator and its compiled kernels
    n = 128 * max(1, batches // 4)
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    one = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for a in range(0, n, 128):
        ds.__getitems__(list(range(a, a + 128)))
    batched = n / (time.perf_counter() - t)
    out = {"one_by_one_images_per_s": round(one, 1), "batches_of_128_images_per_s": round(batched, 1)}
    print(f"on the fly 128x128 bicrystals, one process: one by one {one:7.1f} images/s, in batches of 128 "
          f"{batched:7.1f} images/s", flush=True)
    for workers in (0, 1, 2):
        rate = _loader_rate(ds, workers, batches)
        out[f"loader_{workers}w_images_per_s"] = round(rate, 1)
        print(f"DataLoader on the fly   128x128 batch 128 workers={workers}: {rate:7.1f} images/s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/edorient_bench_data"), help="scratch folder")
    p.add_argument("--gen-n", type=int, default=400, help="images per generation run (default 400)")
    p.add_argument("--shards-n", type=int, default=4000, help="random-mode images for the shard loader (default 4000)")
    p.add_argument("--batches", type=int, default=30, help="batches of 128 per loader measurement (default 30)")
    p.add_argument("--skip-rss", action="store_true", help="skip the pass over 489,500 pairs")
    p.add_argument("--parts", nargs="+", default=["gen", "thesis", "loader", "rss"],
                   choices=["gen", "thesis", "loader", "rss", "onthefly"],
                   help="what to run (default gen thesis loader rss)")
    p.add_argument("--pairs-limit", type=int, default=None, help="pass over only this many pairs")
    args = p.parse_args()
    import torch

    # one intra-op thread in this process: with 2 shared cores, OpenMP threads of the main
    # process fighting the workers make torch.stack in the collate up to 50x slower
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}",
    }
    print(results["machine"], flush=True)
    if "gen" in args.parts:
        results["generation"] = bench_generation(args.work, args.gen_n)
    thesis_root = args.work / "thesis_1000"
    needs_thesis = {"thesis", "loader"} & set(args.parts) or ("rss" in args.parts and not args.skip_rss)
    if "thesis" in args.parts or (needs_thesis and not (thesis_root / "meta.json").is_file()):
        thesis_root, dt = build_thesis(args.work)
        results["thesis_build_s"] = round(dt, 1)
    if "loader" in args.parts:
        shards_root = args.work / "random_shards"
        if not (shards_root / "meta.json").is_file():
            generate_dataset(GenerateConfig(mode="random", n=args.shards_n, seed=1), shards_root, workers=2, progress=False)
        results["loader"] = bench_loader(thesis_root, shards_root, args.batches)
    if "onthefly" in args.parts:
        results["onthefly"] = bench_onthefly(args.batches)
    if "rss" in args.parts and not args.skip_rss:
        results["pass_489500"] = bench_rss(thesis_root, args.pairs_limit)
    (args.work / f"bench_data_{'_'.join(args.parts)}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
