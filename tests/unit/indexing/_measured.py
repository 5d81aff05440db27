"""Simulated 'measured' patterns for the spot, centre and calibration tests: the kinematic
spots of :class:`edorient.render.Simulator`, drawn around an off-centre direct beam, with an
elliptical distortion, a diffuse halo, Poisson noise and an optional beam stop."""

from __future__ import annotations

import numpy as np

from edorient.render import add_noise, render_spots


def distortion(ellipticity: float, angle_deg: float) -> np.ndarray:
    """2 x 2 matrix (lab x, y) stretching by sqrt(e) along angle_deg and 1/sqrt(e) across."""
    t = np.radians(angle_deg)
    Rt = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return Rt @ np.diag([np.sqrt(ellipticity), 1 / np.sqrt(ellipticity)]) @ Rt.T


def measured(sim, R, *, size=160, calibration=0.02, centre=(77.3, 84.6), ellipticity=1.0, angle_deg=0.0,
             dose=3000.0, halo=0.05, beam_stop=False, rng=0, sigma_px=1.5, gamma=0.4):
    """(image, mask, centre): the pattern of ``sim``'s crystal at ``R`` as a detector with
    ``calibration`` (1/Å per px), direct beam at ``centre`` (row, col), distortion, noise.

    Spot intensities are raised to ``gamma`` (kinematic intensities span four decades; real
    patterns, dynamical or precessed, are much flatter)."""
    rng = np.random.default_rng(rng)
    spots = sim.spots(R)
    xy = spots.position @ distortion(ellipticity, angle_deg).T
    c0 = size // 2
    off = np.array([(centre[1] - c0) * calibration, -(centre[0] - c0) * calibration])
    pos = np.concatenate([xy + off, off[None]])
    inten = np.concatenate([spots.intensity ** gamma * 0.5 ** (1 - gamma), [1.0]])
    img = render_spots(pos, inten, size=size, calibration=calibration, sigma_px=sigma_px, direct_beam=0.0)
    rr, cc = np.mgrid[:size, :size]
    r = np.hypot(rr - centre[0], cc - centre[1])
    img = img + halo * np.exp(-r / (0.15 * size)) + 0.002
    img = add_noise(img, dose, 0.0, rng)
    mask = np.ones((size, size), dtype=bool)
    if beam_stop:
        ang = rng.uniform(0, 2 * np.pi)
        along = (rr - centre[0]) * np.sin(ang) + (cc - centre[1]) * np.cos(ang)
        across = -(rr - centre[0]) * np.cos(ang) + (cc - centre[1]) * np.sin(ang)
        mask = ~((r < 7) | ((along > 0) & (np.abs(across) < 3)))
        img = np.where(mask, img, 0.001).astype(np.float32)
    return img, mask, centre
