"""Benchmark worker: py4DSTEM's ACOM (Bragg-disk detection + orientation plan + matching) on
edorient's images; run by bench_accuracy.py inside benchmarks/.venvs/py4dstem (py4DSTEM needs
numpy < 2). Never imported by edorient.

Usage: python _bench_py4dstem_acom.py WORKDIR
WORKDIR holds images.npy ((n, H, W) float32 linear intensity, the direct beam at ``centre``)
and params.json (crystal, calibration, voltage, the ACOM settings); writes result.npz:
``matrices`` (n, k, 3, 3) py4DSTEM orientation matrices of the k best matches, ``corr`` (n, k),
``n_peaks`` (n,), ``plan_s`` and ``match_s`` (seconds: plan once, detection + matching of all).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    work = Path(sys.argv[1])
    p = json.loads((work / "params.json").read_text())
    images = np.load(work / "images.npy")
    warnings.filterwarnings("ignore")
    import py4DSTEM
    from emdfile import PointList
    from py4DSTEM.braggvectors.diskdetection import _find_Bragg_disks_single
    from py4DSTEM.process.diffraction import Crystal

    xtal = Crystal(np.array(p["frac"]), np.array(p["numbers"]), np.array(p["cell"]))
    t0 = time.perf_counter()
    xtal.calculate_structure_factors(k_max=p["g_max"])
    s = p["acom"]
    xtal.orientation_plan(
        zone_axis_range=np.array(s["zone_axis_range"]),
        angle_step_zone_axis=s["angle_step_zone_axis"],
        angle_step_in_plane=s["angle_step_in_plane"],
        accel_voltage=p["voltage_kv"] * 1e3,
        corr_kernel_size=s["corr_kernel_size"],
        sigma_excitation_error=s["sigma_excitation_error"],
        progress_bar=False,
    )
    plan_s = time.perf_counter() - t0
    n, H, W = images.shape
    r0, c0 = p["centre"]
    cal = p["calibration"]
    # the probe: a Gaussian of the spot width centred at the origin (wrapped), as py4DSTEM wants
    rr, cc = np.meshgrid(np.arange(H) - H // 2, np.arange(W) - W // 2, indexing="ij")
    probe = np.fft.ifftshift(np.exp(-(rr**2 + cc**2) / (2 * p["spot_sigma_px"] ** 2)))
    k = int(s["num_matches"])
    mats = np.zeros((n, k, 3, 3))
    corr = np.zeros((n, k))
    n_peaks = np.zeros(n, dtype=int)
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        pk = _find_Bragg_disks_single(im, probe, corrPower=1, sigma_cc=s["sigma_cc"], subpixel="poly",
                                      minRelativeIntensity=s["min_relative_intensity"],
                                      relativeToPeak=0, minPeakSpacing=s["min_peak_spacing_px"],
                                      edgeBoundary=2, maxNumPeaks=s["max_peaks"]).data
        qx = (pk["qx"] - r0) * cal
        qy = (pk["qy"] - c0) * cal
        far = np.hypot(qx, qy) > 3 * p["spot_sigma_px"] * cal  # the direct beam left out
        arr = np.zeros(int(far.sum()), dtype=[("qx", float), ("qy", float), ("intensity", float)])
        arr["qx"], arr["qy"], arr["intensity"] = qx[far], qy[far], pk["intensity"][far]
        n_peaks[i] = len(arr)
        if len(arr) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            o = xtal.match_single_pattern(PointList(arr), num_matches_return=k, multiple_corr_reset=True,
                                          min_angle_between_matches_deg=s["min_angle_between_matches_deg"],
                                          verbose=False)
        mats[i] = o.matrix
        corr[i] = o.corr
    match_s = time.perf_counter() - t0
    np.savez(work / "result.npz", matrices=mats, corr=corr, n_peaks=n_peaks, plan_s=plan_s, match_s=match_s,
             version=py4DSTEM.__version__)


if __name__ == "__main__":
    main()
