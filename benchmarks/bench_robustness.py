"""The development patterns in the other forms a microscope's files take: does ``edorient
predict`` still find the known zone? (issue 11; a check for the kept-aside cases' forms)

    python benchmarks/bench_robustness.py --out DIR [--realdata ../shared/realdata]

Each of al_001 and cuni_110 (the development cases with a single crystal) is written as a JPEG
at quality 60, an RGB PNG, 3x larger as a 16-bit TIFF clipped at 1.5x its maximum (spots
saturate), off-centre in a 2.2x larger zero frame, rotated 37°, with a painted scale bar, at
200 counts peak (Poisson), with 16:15 pixels (a PAL video frame), blurred by a 2 px Gaussian
(the discs of a defocused or precessed probe), as an 8-bit export on a gamma-0.3 display scale,
transposed (a detector read out along its columns), behind a beam stop with its arm, on a diffuse
halo half the peak's height, on a detector pedestal of 1,000 counts with read noise, and with
hot pixels and a dead row; every variant is indexed in one process, in that order, with the
case's calibration (scaled with the image) times each of ``--scales`` (default 1: the
calibration given; ``--scales 1,0.9,1.1`` also 10 % off either way), and the table gives the
angle to the known zone, the verdict and the seconds (the first call of a geometry builds or
loads its dictionary).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def variants(case, out: Path) -> list[tuple[Path, float, str]]:
    """(file, calibration, what) of each altered form of ``case``'s pattern, written into ``out``."""
    import tifffile
    from PIL import Image
    from scipy import ndimage

    from edorient.io.images import read_image

    im = read_image(case.image).astype(float)
    name, cal = case.name, case.calibration
    u8 = np.clip(im / im.max() * 255, 0, 255).astype(np.uint8) if im.max() > 255 else im.astype(np.uint8)
    rows = []
    p = out / f"{name}_q60.jpg"
    Image.fromarray(u8).save(p, quality=60)
    rows.append((p, cal, "JPEG, quality 60"))
    p = out / f"{name}_rgb.png"
    Image.fromarray(np.stack([u8, u8, (u8 * 0.8).astype(np.uint8)], -1)).save(p)
    rows.append((p, cal, "RGB PNG"))
    up = ndimage.zoom(im, 3, order=1)
    p = out / f"{name}_x3.tif"
    tifffile.imwrite(p, np.clip(up / up.max() * 65535 * 1.5, 0, 65535).astype(np.uint16))
    rows.append((p, cal / 3, "3x larger, uint16, saturated"))
    big = np.zeros((int(im.shape[0] * 2.2), int(im.shape[1] * 2.2)))
    big[10 : 10 + im.shape[0], 30 : 30 + im.shape[1]] = im
    p = out / f"{name}_offc.npy"
    np.save(p, big)
    rows.append((p, cal, "off-centre in a 2.2x larger zero frame"))
    p = out / f"{name}_rot37.npy"
    np.save(p, ndimage.rotate(im, 37, reshape=False, order=1))
    rows.append((p, cal, "rotated 37°"))
    ann = u8.copy()
    h, w = ann.shape
    ann[h - h // 8 : h - h // 16, w // 20 : w // 3] = 255
    p = out / f"{name}_bar.png"
    Image.fromarray(ann).save(p)
    rows.append((p, cal, "painted scale bar"))
    p = out / f"{name}_lowdose.npy"
    np.save(p, np.random.default_rng(0).poisson(np.clip(im, 0, None) / im.max() * 200).astype(np.float32))
    rows.append((p, cal, "200 counts peak"))
    p = out / f"{name}_pal.npy"  # a 4:3 PAL video frame's 16:15 pixels (the calibration along the rows)
    np.save(p, ndimage.zoom(im, (1.0, 16 / 15), order=1).astype(np.float32))
    rows.append((p, cal, "non-square pixels (16:15, a video frame)"))
    p = out / f"{name}_blur2.npy"
    np.save(p, ndimage.gaussian_filter(im, 2.0).astype(np.float32))
    rows.append((p, cal, "blurred 2 px (defocused discs)"))
    p = out / f"{name}_gamma.png"
    Image.fromarray((np.clip(im / im.max(), 0, 1) ** 0.3 * 255).astype(np.uint8)).save(p)
    rows.append((p, cal, "8-bit, gamma 0.3 display scale"))
    p = out / f"{name}_T.npy"
    np.save(p, im.T.astype(np.float32))
    rows.append((p, cal, "transposed"))
    cen = np.array(case.centre if case.centre is not None else ((h - 1) / 2, (w - 1) / 2))
    yy, xx = np.mgrid[:h, :w]
    stop = im.copy()
    stop[np.hypot(yy - cen[0], xx - cen[1]) < 0.06 * min(h, w)] = im.min()
    stop[(np.abs(yy - cen[0]) < 0.02 * h) & (xx > cen[1])] = im.min()
    p = out / f"{name}_stop.npy"
    np.save(p, stop.astype(np.float32))
    rows.append((p, cal, "beam stop with its arm"))
    halo = im + 0.5 * im.max() * np.exp(-np.hypot(yy - cen[0], xx - cen[1]) ** 2 / (2 * (0.2 * min(h, w)) ** 2))
    p = out / f"{name}_halo.npy"
    np.save(p, halo.astype(np.float32))
    rows.append((p, cal, "diffuse halo, half the peak"))
    rng = np.random.default_rng(1)
    p = out / f"{name}_pedestal.npy"
    np.save(p, (im / im.max() * 3000 + 1000 + rng.normal(0, 30, im.shape)).astype(np.float32))
    rows.append((p, cal, "pedestal 1,000 counts, read noise 30"))
    hot = im.copy()
    hot.flat[rng.integers(0, h * w, 20)] = 3 * im.max()
    hot[h // 3, :] = 0
    p = out / f"{name}_hot.npy"
    np.save(p, hot.astype(np.float32))
    rows.append((p, cal, "20 hot pixels, a dead row"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the altered files")
    ap.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realdata")
    ap.add_argument("--scales", default="1", help="calibration given as the case's times each of these (default 1)")
    args = ap.parse_args()
    scales = [float(v) for v in args.scales.split(",")]
    from edorient.evaluation.realdata import read_cases
    from edorient.predict import PredictConfig, predict_file
    from edorient.structures import get_crystal

    args.out.mkdir(parents=True, exist_ok=True)
    cases = {c.name: c for c in read_cases(args.realdata / "cases.tsv")}
    print("| case | variant | calibration | error to zone ° | verdict | s |\n|---|---|---|---|---|---|", flush=True)
    for name in ("al_001", "cuni_110"):
        case = cases[name]
        crystal = get_crystal(case.cif)
        zone = crystal.zone_axis_direction(case.zone)
        for path, cal, what in variants(case, args.out):
            for sc in scales:
                t0 = time.perf_counter()
                res = predict_file(path, PredictConfig(calibration=cal * sc, voltage_kv=case.kv),
                                   crystal_name=str(case.cif))
                g = res["grains"][0]
                err = float(crystal.laue.angle(zone[None], np.array(g["direction"])[None])[0])
                print(f"| {name} | {what} | x{sc:g} | {err:.2f} | {g['verdict']} | {time.perf_counter() - t0:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
