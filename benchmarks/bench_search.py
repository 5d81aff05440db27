"""The dictionary search and the refinement's objective: compiled paths against their baselines.

Three measurements, each against its baseline in the same run on the same inputs:

- **Dictionary proposals** (:class:`~edorient.indexing.proposals.DictionaryProposals`): the
  bounded search (``pruned=True``, the default) against the full correlation (``pruned=False``),
  ms an image for k = 3, 4 (both mirror families) and 8, and whether the candidates agree. The
  bounded search's one-off factorisation of the dictionary is timed apart. Then the bounded
  search ranking the entries projected on the factorisation's bases (``projected``, the default
  since session 41) against the exact one: ms an image and how often its candidates are the
  exact correlation's.
- **The exact reads** (:func:`~edorient.indexing._kernels.entry_products`, the products of the
  entries the bound cannot rule out): the vectorised kernel (two real dot products a frequency)
  against the kernel before session 21 (the interleaved complex product summed in order, kept
  here as :func:`_interleaved_products`), on the dictionary's own entries and the test images'
  FFTs, µs a read of 32, 128 and 1,024 entries, and the largest relative difference.
- **The refinement's objective** (:meth:`~edorient.indexing.refine.Refiner._normal_equations`):
  the compiled kernel against the tensor evaluation (``compiled=False``, the CUDA path), ms a
  call and per hypothesis for one and two grains, and the largest relative difference.

Test images: anatase, orientations uniform over SO(3) (seed ``--seed``), the accuracy
benchmark's noise (:func:`bench_accuracy.make_images`), bicrystals 0.5:0.5.

    OMP_NUM_THREADS=1 python benchmarks/bench_search.py
    OMP_NUM_THREADS=1 python benchmarks/bench_search.py --directions 800 --n 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _table(title: str, header: list, rows: list) -> None:
    """A markdown table under a ``# title`` line."""
    print(f"# {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print()


def _timed(fn, repeat: int) -> tuple[float, object]:
    """(median seconds of ``repeat`` calls after one warm call, the last result)."""
    out = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def bench_dictionary(x: np.ndarray, directions: int, repeat: int) -> dict:
    from edorient.indexing.matching import TemplateMatcher
    from edorient.indexing.proposals import DictionaryProposals
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    sim = Simulator(anatase(), SimulationConfig(image_size=x.shape[-1]))
    matcher = TemplateMatcher(sim, n_directions=directions)
    kw = dict(max_frequency=60, n_angles=360)
    full = DictionaryProposals(matcher, pruned=False, **kw)
    pruned = DictionaryProposals(matcher, projected=False, **kw)
    projected = DictionaryProposals(matcher, projected=True, **kw)
    t = time.perf_counter()
    pruned._factorisation()
    out = {"entries": int(pruned._conj.shape[1]), "factorisation_s": time.perf_counter() - t, "k": {}}
    projected._factorisation()

    def same(r1, r2):  # (n, k) whether each slot holds the same rotation
        return np.abs(r1 - r2).max(axis=(-1, -2)) < 1e-6

    def read_share(prop, k):
        return np.isfinite(prop._best_entries(prop._image_spectra(x[: prop.chunk]), k)[0]).mean(1)

    for k, both in ((3, False), (4, True), (8, False)):
        tf, a = _timed(lambda: full.candidates(x, k=k, other_family=both), repeat)
        tp, b = _timed(lambda: pruned.candidates(x, k=k, other_family=both), repeat)
        tq, c = _timed(lambda: projected.candidates(x, k=k, other_family=both), repeat)
        read, read_q = read_share(pruned, k), read_share(projected, k)
        sq = same(a[0], c[0])
        out["k"][f"{k}{' both families' if both else ''}"] = {
            "full_ms_per_image": 1e3 * tf / len(x), "pruned_ms_per_image": 1e3 * tp / len(x),
            "speed_up": tf / tp, "same_candidates": bool(np.allclose(a[0], b[0], atol=1e-6)),
            "max_score_difference": float(np.abs(a[1] - b[1]).max()),
            "entries_read_median": float(np.median(read)), "entries_read_max": float(read.max()),
            "projected_ms_per_image": 1e3 * tq / len(x), "projected_speed_up": tp / tq,
            "projected_first_same": float(sq[:, 0].mean()), "projected_all_same": float(sq.all(1).mean()),
            "projected_entries_read_median": float(np.median(read_q))}
    return out


def _interleaved_products(entries_first, image, entries):
    """The exact reads' kernel before session 21 (the baseline): ``P[f, e] = Σ_r T A`` from the
    interleaved complex rows, summed in order (two partial sums), not vectorised."""
    m, nf, r2 = entries_first.shape
    out = np.empty((nf, entries.shape[0], 2), dtype=np.float32)
    q4 = r2 - r2 % 4
    for q in range(entries.shape[0]):
        block = entries_first[entries[q]]
        for f in range(nf):
            t, a = block[f], image[f]
            re0 = im0 = re1 = im1 = np.float32(0.0)
            for k in range(0, q4, 4):
                re0 += t[k] * a[k] - t[k + 1] * a[k + 1]
                im0 += t[k] * a[k + 1] + t[k + 1] * a[k]
                re1 += t[k + 2] * a[k + 2] - t[k + 3] * a[k + 3]
                im1 += t[k + 2] * a[k + 3] + t[k + 3] * a[k + 2]
            for k in range(q4, r2, 2):
                re0 += t[k] * a[k] - t[k + 1] * a[k + 1]
                im0 += t[k] * a[k + 1] + t[k + 1] * a[k]
            out[f, q, 0] = re0 + re1
            out[f, q, 1] = im0 + im1
    return out


def bench_reads(x: np.ndarray, directions: int, repeat: int) -> dict:
    import numba as nb
    import torch

    from edorient.indexing._kernels import entry_products, product_rows
    from edorient.indexing.matching import TemplateMatcher
    from edorient.indexing.proposals import DictionaryProposals
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    f4 = nb.float32
    baseline = nb.njit(f4[:, :, ::1](f4[:, :, ::1], f4[:, ::1], nb.int64[::1]), nogil=True)(_interleaved_products)
    from edorient.indexing.estimators import DICTIONARY_ANGLES, DICTIONARY_MAX_FREQUENCY

    prop = DictionaryProposals(TemplateMatcher(Simulator(anatase(), SimulationConfig(image_size=x.shape[-1])),
                                               n_directions=directions),
                               max_frequency=DICTIONARY_MAX_FREQUENCY, n_angles=DICTIONARY_ANGLES)  # the chain's
    prop.projected = False  # (the entries themselves)
    entries_first = prop._read_copy()
    grid = prop.scorer.grid
    nf = prop._conj.shape[0]
    fa = torch.fft.rfft(torch.from_numpy(grid.normalise(grid.transform(x)).astype(np.float32)), dim=-1)[..., :nf]
    img = np.ascontiguousarray(torch.view_as_real(fa.permute(0, 2, 1)).reshape(len(x), nf, -1).numpy())
    rng = np.random.default_rng(0)
    out = {"entries": int(entries_first.shape[0]), "frequencies": int(nf), "radii": int(entries_first.shape[2] // 2),
           "reads": {}}
    for e in (32, 128, 1024):
        ent = np.sort(rng.choice(entries_first.shape[0], e, replace=False)).astype(np.int64)
        tb, want = _timed(lambda: [baseline(entries_first, a, ent) for a in img], repeat)
        tn, got = _timed(lambda: [entry_products(entries_first, product_rows(a), ent) for a in img], repeat)
        diff = max(float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want))
        out["reads"][e] = {"baseline_us": 1e6 * tb / len(img), "vectorised_us": 1e6 * tn / len(img),
                           "speed_up": tb / tn, "max_relative_difference": diff}
    return out


def bench_objective(x2: np.ndarray, x1: np.ndarray, rot2: np.ndarray, rot1: np.ndarray, h: int, repeat: int) -> dict:
    import torch

    from edorient.indexing.refine import DEFAULT_LEVELS, Refiner, _expmap, _to_linear
    from edorient.render import SimulationConfig
    from edorient.structures import anatase

    cfg = SimulationConfig(image_size=x2.shape[-1])
    ref = Refiner(anatase(), cfg)
    rng = np.random.default_rng(1)
    out = {}
    for name, x, rot in (("one grain", x1, rot1), ("two grains", x2, rot2)):
        n, G = len(x), rot.shape[1]
        feats = ref._filtered(_to_linear(torch.as_tensor(x, dtype=torch.float32)), DEFAULT_LEVELS[0].blur_px)
        turn = torch.as_tensor(rng.normal(size=(n * h, G, 3)) * np.radians(0.7))
        R = (_expmap(turn) @ torch.as_tensor(np.repeat(rot, h, axis=0))).float()
        p = torch.zeros(n * h, 5)
        p[:, 3] = 0.5 if G == 2 else 1.0
        lv = ref._make_level(DEFAULT_LEVELS[0], feats, R, p)
        ref.compiled = False
        tt, want = _timed(lambda: ref._normal_equations(lv, R, p, n, h), repeat)
        ref.compiled = True
        tc, got = _timed(lambda: ref._normal_equations(lv, R, p, n, h), repeat)
        diff = max(float((a - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30))
                   for a, b in zip(got[:4], want[:4]))
        out[name] = {"hypotheses": n * h, "spots_per_hypothesis": int(lv.valid.shape[1] * lv.valid.shape[2] + 1),
                     "tensor_ms": 1e3 * tt, "compiled_ms": 1e3 * tc, "speed_up": tt / tc,
                     "compiled_us_per_hypothesis": 1e6 * tc / (n * h), "max_relative_difference": diff}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128, help="images for the dictionary (default 128)")
    ap.add_argument("--directions", type=int, default=6400, help="dictionary directions (default 6400)")
    ap.add_argument("--hypotheses", type=int, default=4, help="hypotheses an image for the objective")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1010)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_accuracy import make_images

    torch.set_num_threads(1)
    x2, rot2, _ = make_images(a.n, 128, 2, (0.5, 0.5), True, a.seed)
    x1, rot1, _ = make_images(a.n // 4, 128, 1, (1.0, 1.0), True, a.seed + 1)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "images": a.n, "directions": a.directions,
           "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "torch_threads": 1}
    res["dictionary"] = bench_dictionary(np.concatenate([x2, x1]), a.directions, a.repeat)
    res["reads"] = bench_reads(x2[:16], a.directions, a.repeat)
    res["objective"] = bench_objective(x2[:16], x1[:16], rot2[:16], rot1[:16], a.hypotheses, a.repeat)
    d = res["dictionary"]
    _table(f"dictionary proposals, {d['entries']} entries, {a.n + a.n // 4} noisy images "
           f"(factorisation once: {d['factorisation_s']:.2f} s)",
           ["k", "full ms/image", "bounded ms/image", "speed-up", "same candidates", "entries read (median / max)"],
           [[k, f"{v['full_ms_per_image']:.1f}", f"{v['pruned_ms_per_image']:.1f}", f"{v['speed_up']:.1f}x",
             v["same_candidates"], f"{100 * v['entries_read_median']:.1f} % / {100 * v['entries_read_max']:.1f} %"]
            for k, v in d["k"].items()])
    _table("the bounded search ranking the entries projected on the bases (``projected``, the default) "
           "against the exact bounded search above",
           ["k", "projected ms/image", "speed-up", "first candidate the exact one's", "all the exact one's",
            "entries read (median)"],
           [[k, f"{v['projected_ms_per_image']:.1f}", f"{v['projected_speed_up']:.2f}x",
             f"{100 * v['projected_first_same']:.1f} %", f"{100 * v['projected_all_same']:.1f} %",
             f"{100 * v['projected_entries_read_median']:.2f} %"] for k, v in d["k"].items()])
    r = res["reads"]
    _table(f"exact reads of dictionary entries ({r['entries']} entries, {r['frequencies']} frequencies x "
           f"{r['radii']} radii), one image's read, mean of 16 images",
           ["entries read", "before session 21 µs", "vectorised µs", "speed-up", "max rel. difference"],
           [[e, f"{v['baseline_us']:.0f}", f"{v['vectorised_us']:.0f}", f"{v['speed_up']:.2f}x",
             f"{v['max_relative_difference']:.1e}"] for e, v in r["reads"].items()])
    _table("the refinement's objective (normal equations), one call",
           ["grains", "hypotheses", "spots a hypothesis", "tensor ms", "compiled ms", "speed-up", "us a hypothesis",
            "max rel. difference"],
           [[k, v["hypotheses"], v["spots_per_hypothesis"], f"{v['tensor_ms']:.1f}", f"{v['compiled_ms']:.1f}",
             f"{v['speed_up']:.1f}x", f"{v['compiled_us_per_hypothesis']:.0f}", f"{v['max_relative_difference']:.1e}"]
            for k, v in res["objective"].items()])
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
