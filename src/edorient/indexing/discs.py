"""Diffraction discs of a convergent probe: measure them on the direct beam, deconvolve them away
(numpy, no I/O).

A nano-beam (NBED) 4D-STEM scan with a convergence semi-angle comparable to the Bragg angles
draws every reflection, and the direct beam, as a disc of the probe's aperture. The models draw
compact Gaussian spots (what precession and small-convergence patterns show), and a flat disc
several pixels wide is a poor match for them: its flank and its centre weigh the same, a weak
grain's discs spread their counts over many pixels and sink into the noise.

The direct beam is the probe's disc itself, so its mean over a sample of patterns
(:func:`mean_beam`) is fitted by a uniform disc of radius R blurred by a Gaussian of width s
(:func:`fit_disc`): R is the probe's disc, s what a spot of the pattern would be without it.
Where R is at least :data:`MIN_DISC_PX` and at least s (:func:`is_disc`: a disc narrower than its
blur is hard to tell from a Gaussian, and the fit trades one for the other: Gaussian spots of
1-3 px fit R of 0.5-2.25 px, below their width), each pattern is deconvolved by the disc of
radius R (:func:`deconvolve_discs`: Richardson-Lucy, which keeps the counts positive
and suits Poisson noise); the discs become spots of width ~s, which the models draw.
:func:`measure_disc` is that decision, for the map (a sample of the scan) and for ``edorient
predict`` (one pattern).

Measured on simulated 32 x 32 scans (docs/mapping.md, "The probe's diffraction discs").
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

#: A fitted disc radius (detector pixels) below this is not deconvolved (see :func:`is_disc`).
MIN_DISC_PX = 1.5
#: Richardson-Lucy iterations (20 on the 4 px tuning scan: 72.6 % of the pairs found against 69.7 %,
#: 90.0 % of them within 1° against 92.7 %: no better, twice the time).
ITERATIONS = 10
#: Half width (pixels) of the window around the direct beam that :func:`mean_beam` averages.
BEAM_HALF_PX = 10
#: The radii (pixels) and Gaussian widths :func:`fit_disc` tries.
DISC_RADII = np.arange(0.0, 8.01, 0.25)
DISC_SIGMAS = np.arange(0.5, 3.01, 0.1)


def disc_kernel(radius_px: float, sigma_px: float = 0.0, half: int | None = None) -> np.ndarray:
    """(2 half + 1, 2 half + 1) a uniform disc of ``radius_px`` (its edge pixels weighted by the
    share of them inside, from 4 x 4 samples each), blurred by a Gaussian of ``sigma_px``, summing
    to 1; radius 0 is a point.

    >>> k = disc_kernel(2.0); k.shape, round(float(k.sum()), 6), bool(k[3, 3] == k.max())
    ((7, 7), 1.0, True)
    """
    half = int(np.ceil(radius_px + 3 * sigma_px + 1)) if half is None else int(half)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    if radius_px <= 0:
        k = (np.hypot(yy, xx) == 0).astype(float)
    else:
        o = (np.arange(4) + 0.5) / 4 - 0.5
        k = sum((np.hypot(yy + a, xx + b) <= radius_px).astype(float) for a in o for b in o)
    if sigma_px > 0:
        k = ndimage.gaussian_filter(k, sigma_px, mode="constant")
    return k / k.sum()


#: A fit whose residual (share of the beam's power) is above this is no disc (nor a blob): a
#: structured or clipped beam, e.g. a figure's (the real SAD figure cuni_110: 0.29; simulated
#: beams and the real SPED pattern al_001_T1: 0.0001-0.007).
MAX_RESIDUAL = 0.05
#: A direct beam with at least this many pixels at exactly its window's maximum is clipped
#: (saturated): its flat top is the detector's, not the probe's, and it is left out.
SATURATED_PX = 4


def mean_beam(patterns, centres, half: int = BEAM_HALF_PX) -> tuple[np.ndarray | None, int]:
    """(the mean direct beam (2 half + 1, 2 half + 1) of ``patterns`` (n, H, W) about their
    ``centres`` ((n, 2) row, col; sub-pixel, each window shifted onto it), each window's border
    median subtracted and its sum scaled to 1; the number of patterns in it). Left out: windows
    that do not fit inside their pattern, and saturated beams (:data:`SATURATED_PX`). None where
    none is left."""
    acc = []
    for x, (r, c) in zip(patterns, centres):
        ri, ci = int(round(r)), int(round(c))
        lo_r, lo_c = ri - half - 2, ci - half - 2
        if lo_r < 0 or lo_c < 0 or ri + half + 3 > x.shape[0] or ci + half + 3 > x.shape[1]:
            continue
        win = np.asarray(x[lo_r : ri + half + 3, lo_c : ci + half + 3], dtype=np.float64)
        if int((win == win.max()).sum()) >= SATURATED_PX:
            continue
        win = ndimage.shift(win, (ri - r, ci - c), order=1)[2:-2, 2:-2]
        win = win - np.median(np.r_[win[0], win[-1], win[:, 0], win[:, -1]])
        total = win.sum()
        if total > 0:
            acc.append(win / total)
    return (np.mean(acc, axis=0) if acc else None), len(acc)


def fit_disc(beam: np.ndarray) -> dict:
    """The disc (radius R) blurred by a Gaussian (width s) that fits the mean direct beam
    ``beam`` (:func:`mean_beam`'s) best in least squares, on the grid of :data:`DISC_RADII` x
    :data:`DISC_SIGMAS`: ``{"radius_px", "sigma_px", "residual"}`` (the residual's share of the
    beam's power).

    >>> b = disc_kernel(3.0, 1.2, half=10)
    >>> f = fit_disc(b); f["radius_px"], round(f["sigma_px"], 1)
    (3.0, 1.2)
    """
    half = beam.shape[0] // 2
    power = float((beam * beam).sum())
    best = (np.inf, 0.0, 0.0)
    for s in DISC_SIGMAS:
        for R in DISC_RADII:
            k = disc_kernel(float(R), float(s), half)
            a = float((k * beam).sum() / (k * k).sum())
            e = float(((beam - a * k) ** 2).sum())
            if e < best[0]:
                best = (e, float(R), float(s))
    return {"radius_px": best[1], "sigma_px": round(best[2], 3), "residual": round(best[0] / max(power, 1e-30), 5)}


def is_disc(fit: dict) -> bool:
    """Whether :func:`fit_disc`'s ``fit`` is a disc worth deconvolving: a radius of at least
    :data:`MIN_DISC_PX` and at least the blur's width (a flat top; a Gaussian is not), fitted
    to within :data:`MAX_RESIDUAL`.

    >>> is_disc({"radius_px": 4.0, "sigma_px": 1.3, "residual": 0.001})
    True
    >>> is_disc({"radius_px": 2.25, "sigma_px": 3.0, "residual": 0.001}), is_disc({"radius_px": 3.25, "sigma_px": 0.5, "residual": 0.29})
    (False, False)
    """
    return bool(fit["radius_px"] >= MIN_DISC_PX and fit["radius_px"] >= fit["sigma_px"]
                and fit["residual"] <= MAX_RESIDUAL)


def measure_disc(patterns, centres, what: str = "patterns") -> tuple[float, dict]:
    """(the disc radius to deconvolve, pixels: 0 where there is none; a report) of the direct
    beams of ``patterns`` about their ``centres``: :func:`mean_beam`, :func:`fit_disc`,
    :func:`is_disc`. ``what`` names the patterns in the report's reason when none could be used."""
    beam, used = mean_beam(patterns, centres) if len(patterns) else (None, 0)
    if beam is None:
        why = ("no direct beam in the " + what if not len(patterns) else
               f"the direct beam is saturated (or at the edge) in all {len(patterns)} {what}; give --disc PX "
               "for nano-beam data")
        return 0.0, {"measured": False, "deconvolved": False, "why": why, "radius_px": 0.0}
    fit = fit_disc(beam)
    use = fit["radius_px"] if is_disc(fit) else 0.0
    return use, {"measured": True, "patterns": used, **fit, "deconvolved": bool(use > 0)}


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The real FFT of ``kernel`` placed at the origin of an array of ``shape`` (wrapped)."""
    h = kernel.shape[0] // 2
    p = np.zeros(shape)
    p[: kernel.shape[0], : kernel.shape[1]] = kernel
    return sfft.rfft2(np.roll(p, (-h, -h), (0, 1)))


def deconvolve_discs(images: np.ndarray, radius_px: float, valid: np.ndarray | None = None,
                     iterations: int = ITERATIONS) -> np.ndarray:
    """``images`` (n, H, W) or (H, W), counts, deconvolved by a disc of ``radius_px``
    (:func:`disc_kernel`) with ``iterations`` of Richardson-Lucy: each disc becomes the compact
    spot it was drawn from. ``valid`` ((H, W) or like ``images``, bool; None: every pixel): the
    pixels that hold data; the others (bad pixels, gaps) neither count as dark data nor take a
    value from the fit (they are 0 in the output, as the map's preprocessing expects). Works in
    float32, one image at a time, padded by the kernel's half width so nothing wraps around;
    negative counts are clipped to 0.

    >>> x = np.zeros((32, 32)); x[10, 12] = x[20, 18] = 100.0
    >>> y = ndimage.convolve(x, disc_kernel(3.0), mode="constant")
    >>> z = deconvolve_discs(y, 3.0, iterations=30)
    >>> bool(z[10, 12] > 5 * y[10, 12]), round(float(z.sum() / y.sum()), 2)
    (True, 1.0)
    """
    x = np.clip(np.asarray(images, dtype=np.float32), 0.0, None)
    single = x.ndim == 2
    x = x[None] if single else x
    k = disc_kernel(float(radius_px))
    pad = k.shape[0] // 2 + 1
    shape = (sfft.next_fast_len(x.shape[1] + 2 * pad, real=True), sfft.next_fast_len(x.shape[2] + 2 * pad, real=True))
    F = _otf(k, shape).astype(np.complex64)
    Fc = np.conj(F)

    def conv(a, f):
        return sfft.irfft2(sfft.rfft2(a) * f, s=shape)

    vs = None if valid is None else np.broadcast_to(np.asarray(valid, dtype=bool), x.shape)
    out = np.zeros(x.shape, dtype=np.float32)
    H, W = x.shape[1:]
    norm_all = None
    for i in range(len(x)):
        vp = np.zeros(shape, dtype=np.float32)
        vp[pad : pad + H, pad : pad + W] = 1.0 if vs is None else vs[i]
        xp = np.zeros(shape, dtype=np.float32)
        xp[pad : pad + H, pad : pad + W] = x[i] if vs is None else np.where(vs[i], x[i], 0.0)  # (NaN in a gap: fine)
        # the adjoint's normalisation: how much of each estimate pixel's light lands on valid pixels
        if vs is not None or norm_all is None:
            norm = np.maximum(conv(vp, Fc), 1e-6)
            if vs is None:
                norm_all = norm
        else:
            norm = norm_all
        est = np.full(shape, xp.sum() / max(float(vp.sum()), 1.0), dtype=np.float32)
        on = vp > 0
        for _ in range(int(iterations)):
            ratio = np.zeros(shape, dtype=np.float32)
            np.divide(xp, np.maximum(conv(est, F), 1e-9), out=ratio, where=on)
            est *= conv(ratio, Fc) / norm
            np.clip(est, 0.0, None, out=est)
        out[i] = est[pad : pad + H, pad : pad + W] * on[pad : pad + H, pad : pad + W]
    return out[0] if single else out
