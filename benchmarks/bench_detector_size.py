"""The same patterns on detectors of 256 to 2048 pixels: does ``edorient predict`` still find them?
(issue 11; the development cases are 88-360 px, modern cameras 512-4096)

    python benchmarks/bench_detector_size.py [--sizes 256,512,1024] [--size 150] [--out DIR]
        [--find-centre] [--calibration-error FRACTION] [--beam-stop] [--grains 2]

Eight anatase orientations (three within 0.3° of [1 0 1], [0 0 1], [1 1 1] with in-plane turns,
five uniform over SO(3), seed 2929) simulated over the same ±1.28 1/Å field at each detector
size, with spots 1.6 px wide (Gaussian sigma) in every size's pixels -- sharper in 1/Å on a
larger detector, as with a longer camera length -- a diffuse halo, Poisson counts (3e4 at the
direct beam; the halo's counts per pixel fall with the pixel's solid angle, so a spot's counts
and the halo's per 1/Å² stay the same at every size) and the beam clipped at 16,000. Each is
indexed as ``edorient predict`` does with the calibration and the centre given (the default
working frame: 150 px, ``--size`` to change it); ``--find-centre`` leaves the centre to be found,
``--calibration-error 0.1`` gives a calibration 10 % high, ``--beam-stop`` hides the direct beam
behind a stop (a disc of 0.08 1/Å and an arm 0.06 1/Å wide to one side, dark counts 0.05 a pixel). Prints per detector size the error to
the true beam direction of each pattern, its verdict and the median seconds of a call after the
first. ``--grains 2``: eight bicrystals instead (two orientations uniform over SO(3) each, seed 77,
added at 0.5:0.5 in linear intensity before the counts), indexed with ``--grains 2``; the error
of a pattern is the larger of its two grains' in the better of the two pairings, and a verdict
letter is printed per grain.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

FIELD = 2.56  # 1/Å across the detector


def orientations() -> np.ndarray:
    """The eight orientations (3 near zones, 5 uniform over SO(3))."""
    from edorient.physics.orientation import random_rotations, rotation_from_direction
    from edorient.structures import anatase

    x = anatase()
    near = [rotation_from_direction(x.zone_axis_direction(z) + np.array(t), a) for z, t, a in
            (([1, 0, 1], [0.004, 0.002, 0.0], 33.0), ([0, 0, 1], [0.003, -0.002, 0.0], 12.0),
             ([1, 1, 1], [-0.002, 0.004, 0.001], 71.0))]
    return np.concatenate([np.array(near), random_rotations(5, rng=2929)])


def bicrystals() -> np.ndarray:
    """(8, 2, 3, 3) the eight bicrystals' orientations (uniform over SO(3), seed 77)."""
    from edorient.physics.orientation import random_rotations

    return random_rotations(16, rng=77).reshape(8, 2, 3, 3)


def pattern(sim, R: np.ndarray, n: int, rng) -> np.ndarray:
    """One detector frame (counts) of orientation ``R`` from ``sim`` (an ``n`` px simulator);
    ``R`` (2, 3, 3): two grains at 0.5:0.5."""
    cal = FIELD / n
    c = (n - 1) / 2
    rr, cc = np.indices((n, n), dtype=float)
    halo = 0.01 * np.exp(-np.hypot(rr - c, cc - c) * cal / 0.3) + 0.0005
    lin = sim.linear_image(R) if np.ndim(R) == 2 else 0.5 * (sim.linear_image(R[0]) + sim.linear_image(R[1]))
    counts = rng.poisson((lin + halo * (256 / n) ** 2) * 3e4)
    return np.minimum(counts, 16000).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256,512,1024", help="detector sizes (px), comma-separated")
    ap.add_argument("--size", type=int, default=150, help="the working frame (predict's --size)")
    ap.add_argument("--out", type=Path, default=None, help="keep the frames here (default: a temporary folder)")
    ap.add_argument("--find-centre", action="store_true", help="leave the centre to be found (default: given)")
    ap.add_argument("--calibration-error", type=float, default=0.0, metavar="FRACTION",
                    help="give the calibration this fraction high (negative: low); default 0")
    ap.add_argument("--beam-stop", action="store_true", help="a beam stop over the direct beam and one side")
    ap.add_argument("--grains", type=int, choices=(1, 2), default=1, help="2: eight bicrystals, --grains 2")
    args = ap.parse_args()
    from edorient.predict import PredictConfig, predict_file
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import anatase

    x = anatase()
    Rs = orientations() if args.grains == 1 else bicrystals()
    out = args.out or Path(tempfile.mkdtemp(prefix="edorient-detector-"))
    out.mkdir(parents=True, exist_ok=True)
    print("| detector px | working frame | error to the truth ° (each of the 8) | verdicts | "
          f"{'within 1°' if args.grains == 1 else 'both grains < 2°'} | confident > 2° off | s / pattern |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(v) for v in args.sizes.split(",")):
        sim = Simulator(x, SimulationConfig(image_size=n, calibration=FIELD / n, spot_sigma_px=1.6))
        rng = np.random.default_rng(n)
        errs, verdicts, secs, bad = [], [], [], 0
        for i, R in enumerate(Rs):
            path = out / f"anatase_{n}px_{i}.npy"
            frame = pattern(sim, R, n, rng)
            if args.beam_stop:  # (the same stop in 1/Å at every size: a disc and an arm to the right)
                rr, cc = np.indices((n, n))
                c = n / 2
                stop = (np.hypot(rr - c, cc - c) < 8 * n / 256) | ((np.abs(rr - c) < 3 * n / 256) & (cc > c))
                frame[stop] = rng.poisson(0.05, int(stop.sum()))
            np.save(path, frame)
            cfg = PredictConfig(calibration=FIELD / n * (1 + args.calibration_error), voltage_kv=200, size=args.size,
                                centre=None if args.find_centre else (n / 2, n / 2), grains=args.grains)
            t = time.perf_counter()
            gs = predict_file(path, cfg, crystal_name="anatase")["grains"]
            secs.append(time.perf_counter() - t)
            truth = [R] if args.grains == 1 else list(R)
            d = [np.array(g["direction"]) for g in gs]
            # per grain its error in the better pairing of answers with truths (order-free)
            pairings = [(0,)] if args.grains == 1 else [(0, 1), (1, 0)]
            per = [[float(x.laue.angle(T[2][None], d[j][None])[0]) if j < len(d) else 180.0
                    for T, j in zip(truth, p)] for p in pairings]
            best = min(per, key=max)
            errs.append(max(best))
            verdicts.append([g["verdict"] for g in gs])
            bad += sum(g["verdict"] == "confident" and best[k] > 2 for k, g in enumerate(gs[: len(best)]))
        e = np.array(errs)
        short = {"confident": "C", "ambiguous": "A", "no match": "N"}
        lim = 1 if args.grains == 1 else 2
        print(f"| {n} | {args.size} | {' '.join(f'{v:.2f}' for v in e)} | "
              f"{('' if args.grains == 1 else ' ').join(''.join(short[v] for v in vs) for vs in verdicts)} | "
              f"{int(np.sum(e < lim))} of {len(e)} | {bad} | {np.median(secs[1:]):.1f} |", flush=True)


if __name__ == "__main__":
    main()
