"""Orientation(s) from a user's diffraction image file: read, centre, calibrate, resample, infer.

:func:`predict_file` is what ``edorient predict`` calls. It finds the direct beam (or takes
it), resamples the pattern to the model's pixel calibration around it, applies the display
transform the models were trained with, and estimates one or two beam directions either with a
trained run (``run``) or by template matching over the fundamental sector (no training needed).
Each grain is reported as a unit vector in the crystal frame, reduced to the fundamental sector
(its label), with its full orientation (the matrix R, its unreduced beam direction and in-plane
angle: of the two mirror-image families of a label, the one whose pattern fits best), the
correlation of its simulated pattern with the image, and the nearest low-index zone axis [u v w].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edorient import conventions as cv
from edorient.errors import EdorientError, check_finite


@dataclass(frozen=True)
class PredictConfig:
    """How to read and interpret the image."""

    calibration: float
    """Å⁻¹ per pixel of the input file (from the microscope's camera-length calibration)."""
    grains: int = 1
    """Grains to find: 1 or 2."""
    centre: tuple[float, float] | None = None
    """(row, col) of the direct beam in the file; found automatically when None."""
    frame: int | None = None
    """Frame of a stack."""
    intensity: str = "linear"
    """``linear`` (detector counts: normalised to the direct beam, then the display transform)
    or ``display`` (already a display image: scaled to [0, 1])."""
    size: int = cv.DEFAULT_IMAGE_SIZE
    """Working image size for template matching (a run uses its own)."""
    matcher_directions: int = 400
    """Template dictionary size (template matching)."""
    refine: bool = True
    """Fit the kinematic spot model to the image from the coarse estimate (template matching or
    the CNN): sub-degree orientations, with an uncertainty, a margin and an ambiguity flag per
    grain (:class:`edorient.indexing.Refiner`)."""
    device: str = "cpu"
    """Torch device of the refinement."""


def nearest_zone_axis(direction: np.ndarray, crystal, max_index: int = 6) -> tuple[list[int], float]:
    """The zone axis [u v w] (|u|, |v|, |w| <= max_index, coprime) closest to ``direction``
    modulo the Laue group, and the angle (degrees) to it."""
    rng = np.arange(-max_index, max_index + 1)
    uvw = np.array(np.meshgrid(rng, rng, rng, indexing="ij")).reshape(3, -1).T
    uvw = uvw[np.any(uvw != 0, axis=1)]
    uvw = uvw[np.gcd.reduce(np.abs(uvw), axis=1) == 1]
    dirs = uvw @ crystal.direct_matrix.T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ang = crystal.laue.angle(dirs, np.asarray(direction, float)[None])
    best = np.flatnonzero(ang <= ang.min() + 1e-9)
    # among symmetry-equivalent ones, prefer the smallest indices, then the one closest to the
    # sector-reduced direction itself (so [1 0 1] rather than [0 1 1] for x >= y)
    plain = np.degrees(np.arccos(np.clip(dirs @ np.asarray(direction, float), -1, 1)))
    k = min(best, key=lambda i: (np.abs(uvw[i]).sum(), plain[i]))
    return uvw[k].tolist(), float(ang[k])


def _prepare(image: np.ndarray, cfg: PredictConfig, size: int, calibration_out: float) -> np.ndarray:
    from edorient.io.images import find_direct_beam, resample_to_model
    from edorient.render import display_transform

    centre = cfg.centre if cfg.centre is not None else find_direct_beam(image)
    x = resample_to_model(image, centre, cfg.calibration, size, calibration_out)
    if cfg.intensity == "linear":
        r0, c0 = cv.centre_pixel(size)
        beam = float(x[r0 - 1 : r0 + 2, c0 - 1 : c0 + 2].max())
        if beam <= 0:
            raise EdorientError("the direct beam is not brighter than the background; give --centre ROW COL")
        return display_transform(np.clip(x - np.median(x), 0, None) / beam)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def predict_file(path: str | Path, config: PredictConfig, run: str | Path | None = None,
                 crystal_name: str = "anatase", overlay: str | Path | None = None) -> dict[str, Any]:
    """Estimate the grain orientation(s) in the image file ``path``; see the module docstring."""
    from edorient.indexing.estimators import Refined, build_estimator
    from edorient.io.images import read_image
    from edorient.physics.orientation import beam_direction, inplane_angle
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import get_crystal

    check_finite("calibration", config.calibration)
    if config.calibration <= 0:
        raise EdorientError(f"--calibration must be > 0 1/Å per pixel, got {config.calibration}")
    if config.grains not in (1, 2):
        raise EdorientError(f"--grains must be 1 or 2, got {config.grains}")
    if config.intensity not in ("linear", "display"):
        raise EdorientError(f"--intensity must be linear or display, got {config.intensity!r}")
    image = read_image(path, config.frame)
    crystal = get_crystal(crystal_name)
    method = "template matching"
    model = None
    size = config.size
    if run is not None:
        from edorient.evaluation.pipeline import load_run_model

        model, size = load_run_model(run)
        n_heads = int(model.config.n_grains)
        if n_heads != config.grains:
            raise EdorientError(f"the model of {run} finds {n_heads} grain(s) but --grains is {config.grains}")
        method = f"CNN ({Path(run).name})"
    sim = Simulator(crystal, SimulationConfig(image_size=size))
    x = _prepare(image, config, size, sim.config.resolved_calibration)
    estimator = build_estimator(sim, config.grains, model=model, refine=False,
                                matcher_directions=config.matcher_directions)
    proposal = estimator.estimate(x[None])
    coarse = proposal.rotations[0]
    scores = proposal.scores[0]
    est = proposal
    refined = None
    if config.refine:
        from edorient.indexing import Refiner

        est = Refined(estimator, Refiner(crystal, sim.config, device=config.device)).estimate(x[None], proposal)
        refined = est.refinement
    rotations, directions = est.rotations[0], est.directions[0]
    grains = []
    for g, (d, s, R) in enumerate(zip(directions, scores, rotations)):
        uvw, ang = nearest_zone_axis(d, crystal)
        grain = {"direction": [round(float(v), 6) for v in d],
                 "beam_direction_crystal": [round(float(v), 6) for v in beam_direction(R)],
                 "inplane_deg": round(float(inplane_angle(R)), 3),
                 "orientation_matrix": np.round(R, 6).tolist(),
                 "score": round(float(s), 4), "nearest_zone_axis": uvw, "angle_to_zone_axis_deg": round(ang, 3)}
        if refined is not None:
            grain.update({
                "uncertainty_deg": round(float(refined.uncertainty_deg[0, g]), 4),
                "inplane_uncertainty_deg": round(float(refined.inplane_uncertainty_deg[0, g]), 4),
                "margin": round(float(min(refined.margin[0, g], 1e9)), 5),
                # the zone (label) in doubt; and whether a distinct orientation of the same zone
                # (mirror family, in-plane turn) fits as well, e.g. on an exact zone axis
                "ambiguous": bool(refined.direction_ambiguous[0, g]),
                "orientation_ambiguous": bool(refined.ambiguous[0, g]),
                "refined_score": round(float(refined.scores[0]), 4),
                "coarse_direction": [round(float(v), 6) for v in crystal.laue.reduce(coarse[g, 2])],
                "refinement_shift_deg": round(float(crystal.laue.angle(coarse[g, 2], R[2])), 4),
            })
        grains.append(grain)
    result = {"file": str(path), "crystal": crystal.name, "method": method + (" + refinement" if refined else ""),
              "grains": grains, "calibration_in": config.calibration, "working_size": size,
              "working_calibration": sim.config.resolved_calibration}
    if refined is not None:
        result["refinement"] = {
            "centre_offset_px": [round(float(v), 3) for v in refined.centre_px[0]],
            "calibration_scale": round(float(refined.calibration_scale[0]), 5),
            "grain_ratio": round(float(refined.ratio[0]), 4) if config.grains == 2 else None,
        }
    if overlay is not None:
        _overlay(Path(overlay), x, [sim.spot_pixels(sim.spots(R)) for R in rotations], grains)
        result["overlay"] = str(overlay)
    return result


def _overlay(path: Path, image01: np.ndarray, spots: list[np.ndarray], grains: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(image01, cmap="gray", vmin=0, vmax=1)
    for k, (pix, g) in enumerate(zip(spots, grains)):
        ax.scatter(pix[:, 1], pix[:, 0], s=40, facecolors="none", edgecolors=("tab:red", "tab:cyan")[k],
                   label=f"grain {k + 1}: [{' '.join(map(str, g['nearest_zone_axis']))}] ~{g['angle_to_zone_axis_deg']:.1f}°")
    ax.set_xlim(0, image01.shape[1] - 1)
    ax.set_ylim(image01.shape[0] - 1, 0)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_axis_off()
    from edorient._utils.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)


def result_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
