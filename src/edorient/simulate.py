"""One simulated diffraction image of one or two grains, as ``edorient simulate`` makes it.

:func:`simulate_grains` turns grain specifications (a zone axis [u v w] or a beam direction,
each with an in-plane angle) into orientations, the composed linear image (optional Poisson
noise), the spot table of every grain and a summary whose ``beam_direction`` of a grain is
``R.T @ e_z`` (the third *row* of R; see :mod:`edorient.conventions`) and whose ``label`` is
that direction reduced to the Laue sector. :func:`write_png` and :func:`write_spot_table`
write the results atomically.

Examples
--------
>>> from edorient.render import SimulationConfig
>>> from edorient.structures import anatase
>>> out = simulate_grains(anatase(), SimulationConfig(image_size=64),
...                       [GrainSpec("zone-axis", (1, 0, 1), inplane_deg=30.0)])
>>> out.summary["grains"][0]["label"]
[0.369603, 0.0, 0.92919]
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edorient.errors import EdorientError

SPOT_COLUMNS = ("grain", "h", "k", "l", "gx", "gy", "g", "d", "s", "intensity")


@dataclass(frozen=True)
class GrainSpec:
    """One grain: ``kind`` ``"zone-axis"`` ([u v w] indices) or ``"direction"`` (crystal
    Cartesian beam direction), ``vector`` its three numbers, ``inplane_deg`` its in-plane angle."""

    kind: Literal["zone-axis", "direction"]
    vector: tuple[float, float, float]
    inplane_deg: float = 0.0


@dataclass
class SimulatedImage:
    """What :func:`simulate_grains` returns."""

    image: np.ndarray  #: (H, W) float32 linear intensity (noise included)
    rotations: list[np.ndarray]  #: one (3, 3) orientation per grain
    spots: list[list] = field(default_factory=list)  #: rows of :data:`SPOT_COLUMNS`
    summary: dict = field(default_factory=dict)  #: JSON-ready description


def grain_specs(zone_axes, directions, inplane) -> list[GrainSpec]:
    """Grains from lists of zone axes, then directions, and in-plane angles in that order."""
    grains = [("zone-axis", v) for v in (zone_axes or [])] + [("direction", v) for v in (directions or [])]
    if not grains:
        raise EdorientError("give a grain with --zone-axis U V W or --direction X Y Z")
    if len(grains) > 2:
        raise EdorientError(f"at most two grains, got {len(grains)}")
    inplane = list(inplane or [])
    if len(inplane) > len(grains):
        raise EdorientError(f"{len(inplane)} --inplane angles for {len(grains)} grain(s)")
    inplane += [0.0] * (len(grains) - len(inplane))
    return [GrainSpec(k, tuple(float(x) for x in v), float(t)) for (k, v), t in zip(grains, inplane)]


def grain_rotation(spec: GrainSpec, crystal) -> np.ndarray:
    """Orientation (3, 3) of one grain specification."""
    from edorient.physics.orientation import rotation_from_direction, rotation_from_zone_axis

    if spec.kind == "zone-axis":
        return rotation_from_zone_axis(spec.vector, crystal.direct_matrix, spec.inplane_deg)
    if spec.kind == "direction":
        return rotation_from_direction(np.asarray(spec.vector, dtype=float), spec.inplane_deg)
    raise EdorientError(f"unknown grain kind {spec.kind!r}: choose zone-axis or direction")


def simulate_grains(crystal, config, grains: list[GrainSpec], ratio: float = 0.5,
                    dose: float | None = None, background: float = 0.0, seed: int = 0) -> SimulatedImage:
    """Simulate one or two grains; see the module docstring.

    ``ratio`` is the intensity share of the first grain (two grains only); ``dose`` adds Poisson
    noise (counts at the direct beam's peak) over a uniform ``background``, drawn with ``seed``.
    """
    from edorient.physics.orientation import beam_direction, inplane_angle
    from edorient.render import Simulator, add_noise, compose

    if not 1 <= len(grains) <= 2:
        raise EdorientError(f"give one or two grains, got {len(grains)}")
    sim = Simulator(crystal, config)
    rotations = [grain_rotation(g, crystal) for g in grains]
    images = [sim.linear_image(R) for R in rotations]
    image = images[0] if len(images) == 1 else compose(images[0], images[1], ratio)
    if dose is not None:
        image = add_noise(image, dose, background, np.random.default_rng(seed))
    rows = []
    for k, R in enumerate(rotations):
        spots = sim.spots(R)
        scale = 1.0 if len(rotations) == 1 else (ratio if k == 0 else 1 - ratio)
        for hkl, pos, g, d, s, inten in zip(spots.hkl, spots.position, spots.g, spots.d, spots.s, spots.intensity):
            rows.append([k + 1, *map(int, hkl), pos[0], pos[1], g, d, s, inten * scale])
    summary = {
        "crystal": crystal.summary(),
        "grains": [
            {
                "beam_direction": [round(float(x), 6) for x in beam_direction(R)],
                "label": [round(float(x), 6) for x in crystal.laue.reduce(beam_direction(R))],
                "inplane_deg": round(float(inplane_angle(R)), 6),
            }
            for R in rotations
        ],
        "n_spots": len(rows),
    }
    return SimulatedImage(image, rotations, rows, summary)


def write_png(path: str | Path, array_uint8: np.ndarray) -> None:
    """Write a uint8 image as PNG, atomically."""
    from PIL import Image

    from edorient._utils.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        Image.fromarray(np.asarray(array_uint8)).save(tmp, format="PNG")


def write_spot_table(path: str | Path, rows: list) -> None:
    """Write spot rows (:data:`SPOT_COLUMNS`) as CSV, atomically."""
    from edorient._utils.atomic import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SPOT_COLUMNS)
        for r in rows:
            w.writerow([r[0], r[1], r[2], r[3]] + [f"{x:.6g}" for x in r[4:]])
