"""A simulated polycrystal 4D-STEM scan with its ground truth, for tests and benchmarks.

The specimen is a slab of anatase grains: a Voronoi map of ``n_grains`` seeds over the scan,
each grain with a random orientation (uniform on SO(3)). The grain boundaries are **inclined
through the thickness**: at depth ``z`` (0 at the top surface, 1 at the bottom) the map is the
Voronoi map of the seeds moved by ``z * tilt_k`` (each seed its own shift of up to
``incline_px`` probe steps), so a probe near a boundary passes through two grains, in the ratio
of the depths each one occupies along the beam. The pattern of a probe is the kinematic pattern
of each grain it crosses, weighted by that share, added in linear intensity (where three grains
meet, the two largest shares are kept and renormalised; the truth says so), with the direct beam
moved by a slow descan drift across the scan, then Poisson counts.

It is written as a real 4D-STEM file with rosettasciio (``.hspy``: HDF5), with the detector
calibration in its signal axes (1/nm, as microscopes write it), so ``edorient map`` reads it the
way it reads a user's file. The truth goes to ``NAME_truth.npz``.

Random streams (:func:`edorient._utils.rng.seeded_rng`): spawn key 120 for the seeds and their
incline, 121 for the orientations, 122 for the counts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edorient.errors import EdorientError

__all__ = ["ScanSimConfig", "grain_shares", "simulate_scan", "simulated_defects", "write_hspy"]


#: The thicknesses a wedge's patterns are drawn at (:attr:`ScanSimConfig.wedge`), between its ends.
WEDGE_LEVELS = 9


@dataclass(frozen=True)
class ScanSimConfig:
    """Parameters of :func:`simulate_scan`."""

    probes: tuple[int, int] = (64, 64)
    """Scan size (rows, cols) in probe positions."""
    n_grains: int = 8
    """Voronoi seeds (grains)."""
    detector_px: int = 128
    """Detector side (pixels)."""
    calibration: float = 0.02
    """Detector calibration (1/Å per pixel): deliberately not the models' (0.0234 at 128 px)."""
    incline_px: float = 3.0
    """Largest shift (probe steps) of a boundary between the top and bottom surface."""
    depth_levels: int = 32
    """Depth samples per probe for the grain shares."""
    dose: float = 3000.0
    """Expected counts at the direct beam's peak (Poisson noise)."""
    background: float = 0.001
    """Uniform linear background (relative to the direct beam) before counting."""
    descan_px: float = 1.5
    """Largest direct-beam shift (pixels) across the scan (a linear descan drift)."""
    step_nm: float = 2.0
    """Probe step (nm), written in the scan axes."""
    thickness: float = 50.0
    """Specimen thickness (Å) of the relrod (the patterns), as the shipped models' training."""
    wedge: tuple[float, float] | None = None
    """A wedge: the thickness (Å) at the first and the last scan column, linear in between (the
    patterns drawn at :data:`WEDGE_LEVELS` thicknesses and interpolated); None: ``thickness``
    everywhere. The truth holds each probe's thickness."""
    seed: int = 0
    """Seed of every random stream."""
    hot_pixels: int = 0
    """Detector defects: pixels that count ``hot_counts`` (Poisson) in every pattern ..."""
    hot_counts: float = 5000.0
    dead_pixels: int = 0
    """... pixels that never count ..."""
    gap_px: int = 0
    """... and a cross of dead rows and columns this wide between four detector chips (0: none),
    through the detector 3/4 of the way along each axis (off the direct beam, as on a quad
    detector whose beam is placed on one chip). Where the defects are is in the truth
    (``defects``); they come after the random streams of the patterns, so a scan with defects
    is the same scan as without them on every other pixel."""

    ellipticity: float = 1.0
    """Elliptical distortion of the detector (major / minor axis of a ring; 1: none), about the
    direct beam, its major axis at ``ellipticity_angle_deg`` (from +col, anticlockwise on screen;
    :func:`edorient.indexing.calibration.distortion_matrix`), as ``edorient calibrate`` measures it."""
    ellipticity_angle_deg: float = 0.0
    disc_px: float = 0.0
    """Radius (detector pixels) of the diffraction discs of a convergent probe: every spot and
    the direct beam drawn as a disc of this radius (the pattern convolved with it; 0: the
    simulator's Gaussian spots)."""

    def __post_init__(self) -> None:
        if self.wedge is not None and not (len(self.wedge) == 2 and all(5.0 <= float(t) <= 1000.0 for t in self.wedge)):
            raise EdorientError(f"a wedge is two thicknesses in 5-1000 Å, got {self.wedge}")
        if not 0.0 <= self.disc_px <= 16.0:
            raise EdorientError(f"disc_px must lie in [0, 16] pixels, got {self.disc_px}")
        if not 1.0 <= self.ellipticity <= 1.5:
            raise EdorientError(f"ellipticity must lie in [1, 1.5], got {self.ellipticity}")
        ny, nx = self.probes
        if ny < 1 or nx < 1:
            raise EdorientError(f"scan size must be at least 1 x 1 probes, got {ny} x {nx}")
        if self.n_grains < 1:
            raise EdorientError(f"n_grains must be >= 1, got {self.n_grains}")
        if self.detector_px < 32:
            raise EdorientError(f"detector must be at least 32 px, got {self.detector_px}")
        if min(self.hot_pixels, self.dead_pixels, self.gap_px) < 0 or self.hot_counts <= 0:
            raise EdorientError("hot_pixels, dead_pixels and gap_px must be >= 0 and hot_counts > 0")
        if self.hot_pixels + self.dead_pixels > self.detector_px**2 // 10:
            raise EdorientError(f"at most {self.detector_px ** 2 // 10} defective pixels on a "
                                f"{self.detector_px} px detector")


def simulated_defects(cfg: ScanSimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(hot, dead) (H, W) bool: where :class:`ScanSimConfig`'s defects are (dead includes the gap)."""
    from edorient._utils.rng import seeded_rng

    H = cfg.detector_px
    rng = seeded_rng(cfg.seed, 123)
    pick = rng.choice(H * H, cfg.hot_pixels + cfg.dead_pixels, replace=False)
    hot = np.zeros(H * H, dtype=bool)
    dead = np.zeros(H * H, dtype=bool)
    hot[pick[: cfg.hot_pixels]] = True
    dead[pick[cfg.hot_pixels :]] = True
    hot, dead = hot.reshape(H, H), dead.reshape(H, H)
    if cfg.gap_px:
        g = (3 * H) // 4
        dead[g : g + cfg.gap_px] = True
        dead[:, g : g + cfg.gap_px] = True
        hot &= ~dead
    return hot, dead


def grain_shares(cfg: ScanSimConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe the two largest grains along the beam: ids (ny, nx, 2), shares (ny, nx, 2)
    summing to 1 (second 0 where one grain), and the number of grains crossed (ny, nx)."""
    from edorient._utils.rng import seeded_rng

    ny, nx = cfg.probes
    rng = seeded_rng(cfg.seed, 120)
    seeds = rng.uniform([0, 0], [ny, nx], size=(cfg.n_grains, 2))
    ang = rng.uniform(0, 2 * np.pi, cfg.n_grains)
    mag = rng.uniform(0.3, 1.0, cfg.n_grains) * cfg.incline_px
    tilt = np.stack([np.sin(ang), np.cos(ang)], 1) * mag[:, None]
    rr, cc = np.mgrid[0:ny, 0:nx].astype(float)
    pts = np.stack([rr, cc], -1)[:, :, None, :]  # (ny, nx, 1, 2)
    counts = np.zeros((ny, nx, cfg.n_grains))
    for z in (np.arange(cfg.depth_levels) + 0.5) / cfg.depth_levels:
        d = ((pts - (seeds + z * tilt)) ** 2).sum(-1)
        owner = d.argmin(-1)
        counts[np.arange(ny)[:, None], np.arange(nx)[None, :], owner] += 1
    if cfg.n_grains == 1:  # a single crystal: no partner
        counts = np.concatenate([counts, np.zeros_like(counts)], -1)
    order = np.argsort(-counts, axis=-1, kind="stable")[..., :2]
    top = np.take_along_axis(counts, order, -1)
    n_crossed = (counts > 0).sum(-1)
    shares = top / top.sum(-1, keepdims=True)
    ids = np.where(shares > 0, order, -1)
    ids[..., 0] = order[..., 0]
    return ids.astype(np.int32), shares, n_crossed.astype(np.int32)


def simulate_scan(cfg: ScanSimConfig, crystal_name: str = "anatase") -> tuple[np.ndarray, dict]:
    """The scan's counts (ny, nx, H, W) uint16 and its truth (a dict of arrays, see
    :func:`write_scan`'s ``_truth.npz``)."""
    from scipy import ndimage

    from edorient._utils.rng import seeded_rng
    from edorient.physics.orientation import random_rotations
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import get_crystal

    crystal = get_crystal(crystal_name)
    ny, nx = cfg.probes
    H = cfg.detector_px
    grain_R = random_rotations(cfg.n_grains, rng=seeded_rng(cfg.seed, 121))
    ids, shares, crossed = grain_shares(cfg)
    # the thickness of each probe, and the thicknesses the patterns are drawn at
    levels = np.array([cfg.thickness]) if cfg.wedge is None else np.linspace(*sorted(map(float, cfg.wedge)), WEDGE_LEVELS)
    col = np.arange(nx) / max(nx - 1, 1)
    t_col = np.full(nx, cfg.thickness) if cfg.wedge is None else cfg.wedge[0] + (cfg.wedge[1] - cfg.wedge[0]) * col
    singles = np.stack([Simulator(crystal, SimulationConfig(image_size=H, calibration=cfg.calibration, thickness=float(t)))
                        .linear_images(grain_R) for t in levels])  # (levels, k, H, W) each grain's pattern, direct beam 1
    if cfg.disc_px > 0:  # a convergent probe's discs: each spot spread over a disc, its integral kept
        k = int(np.ceil(cfg.disc_px))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        disc = (np.hypot(yy, xx) <= cfg.disc_px).astype(float)
        disc /= disc.sum()
        singles = np.stack([[ndimage.convolve(x, disc, mode="constant") for x in lv] for lv in singles])
    if cfg.ellipticity != 1.0:  # the detector's distortion, about the beam (before the descan moves it)
        from edorient.indexing.calibration import distort_image

        singles = np.stack([[distort_image(x, cfg.ellipticity, cfg.ellipticity_angle_deg, (H // 2, H // 2)) for x in lv]
                            for lv in singles])
    noise = seeded_rng(cfg.seed, 122)
    counts = np.empty((ny, nx, H, H), dtype=np.uint16)
    rr, cc = np.mgrid[0:ny, 0:nx]
    drift = np.stack([(rr / max(ny - 1, 1) - 0.5), (cc / max(nx - 1, 1) - 0.5)], -1) * 2 * cfg.descan_px
    # each column's patterns: linear between the two nearest thicknesses drawn
    pos = np.interp(t_col, levels, np.arange(len(levels)))
    lo = np.minimum(pos.astype(int), len(levels) - 1)
    frac = pos - lo

    def pattern(g: int, j: int) -> np.ndarray:
        return singles[lo[j], g] if frac[j] == 0 else (1 - frac[j]) * singles[lo[j], g] + frac[j] * singles[lo[j] + 1, g]

    for i in range(ny):
        for j in range(nx):
            a, b = ids[i, j]
            lin = shares[i, j, 0] * pattern(a, j)
            if b >= 0 and shares[i, j, 1] > 0:
                lin = lin + shares[i, j, 1] * pattern(b, j)
            lin = ndimage.shift(lin, drift[i, j], order=1, mode="constant")
            lam = cfg.dose * (np.clip(lin, 0, None) + cfg.background)
            counts[i, j] = np.minimum(noise.poisson(lam), np.iinfo(np.uint16).max)
    hot, dead = simulated_defects(cfg)
    if hot.any() or dead.any():  # after the patterns' noise: the other pixels are those of the scan without defects
        defect_noise = seeded_rng(cfg.seed, 124)
        counts[:, :, hot] = np.minimum(defect_noise.poisson(cfg.hot_counts, (ny, nx, int(hot.sum()))),
                                       np.iinfo(np.uint16).max)
        counts[:, :, dead] = 0
    rot = np.full((ny, nx, 2, 3, 3), np.nan)
    rot[..., 0, :, :] = grain_R[ids[..., 0]]
    two = ids[..., 1] >= 0
    rot[two, 1] = grain_R[ids[two, 1]]
    truth = {
        "grain_ids": ids, "shares": shares.astype(np.float32), "n_crossed": crossed,
        "rotations": rot, "grain_rotations": grain_R,
        "directions": _reduce(crystal, rot[..., 2, :]),
        "centre_px": np.stack([H // 2 + drift[..., 0], H // 2 + drift[..., 1]], -1),
        "calibration": np.float64(cfg.calibration),
        "config": np.array(json.dumps(asdict(cfg))),
        "defects": hot | dead,
        "thickness": np.broadcast_to(t_col, (ny, nx)).astype(np.float32),
    }
    return counts, truth


def _reduce(crystal, v: np.ndarray) -> np.ndarray:
    """Sector-reduced directions; NaN rows (no second grain) stay NaN."""
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v).all(-1)
    out[ok] = crystal.laue.reduce(v[ok])
    return out


def write_hspy(path: str | Path, counts: np.ndarray, calibration: float, step_nm: float = 2.0,
               title: str = "edorient simulated scan", voltage_kv: float | None = None) -> Path:
    """Write a 4D-STEM array (ny, nx, H, W) as a HyperSpy ``.hspy`` file with rosettasciio,
    the detector calibration ``calibration`` (1/Å per pixel) in its signal axes as 1/nm, and
    ``voltage_kv`` (where given) as the beam energy in its metadata."""
    from rsciio import hspy

    from edorient import __version__
    from edorient._utils.atomic import atomic_path

    ny, nx, H, W = counts.shape
    k = calibration * 10.0  # 1/nm per pixel
    axes = [{"name": "y", "size": ny, "scale": step_nm, "offset": 0.0, "units": "nm", "navigate": True},
            {"name": "x", "size": nx, "scale": step_nm, "offset": 0.0, "units": "nm", "navigate": True},
            {"name": "ky", "size": H, "scale": k, "offset": -k * (H // 2), "units": "1/nm", "navigate": False},
            {"name": "kx", "size": W, "scale": k, "offset": -k * (W // 2), "units": "1/nm", "navigate": False}]
    metadata = {"General": {"title": title}, "Signal": {"signal_type": "electron_diffraction"}}
    if voltage_kv is not None:
        metadata["Acquisition_instrument"] = {"TEM": {"beam_energy": float(voltage_kv)}}
    signal = {"data": counts, "axes": axes, "metadata": metadata,
              "original_metadata": {}, "attributes": {"_lazy": False}, "tmp_parameters": {},
              "package_info": {"name": "edorient", "version": __version__}, "learning_results": {}, "models": {}}
    path = Path(path)
    with atomic_path(path) as tmp:
        hspy.file_writer(str(tmp), signal, chunks=(1, min(nx, 16), H, W), show_progressbar=False)
    return path


def write_scan(path: str | Path, cfg: ScanSimConfig, crystal_name: str = "anatase") -> tuple[Path, Path]:
    """Simulate (:func:`simulate_scan`) and write ``path`` (.hspy) and ``<stem>_truth.npz``."""
    from edorient._utils.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".hspy":
        raise EdorientError(f"the simulated scan is written as .hspy, got {path.name}")
    counts, truth = simulate_scan(cfg, crystal_name)
    from edorient import conventions as cv

    write_hspy(path, counts, cfg.calibration, cfg.step_nm, voltage_kv=cv.DEFAULT_VOLTAGE_KV)  # simulated at it
    tpath = path.with_name(path.stem + "_truth.npz")
    with atomic_path(tpath) as tmp:
        np.savez_compressed(tmp, **truth)
    return path, tpath
