"""Zone-axis twins: two orientations whose kinematic patterns share every zero-order Laue zone spot.

Let z be a zone axis of the crystal (a unit vector in the crystal frame) and
``C = 2 z zᵀ - I`` the half turn about it. Every reflection g of the zone's zero-order Laue
zone (ZOLZ, ``g · z = 0``) has ``C g = -g``. An orientation R (crystal to lab) and its *twin*
``R C`` therefore put the reflections g and -g at the same lab vector ``R C g = R (-g)``: the
same spot position, the same excitation error (the Ewald sphere's curvature included), and the
same kinematic intensity (``|F(g)|² = |F(-g)|²``, Friedel's law). Only the reflections off the
zone's plane (its higher-order Laue zones) tell the two apart. The beam directions (third rows)
``b`` and ``C b`` lie the same angle δ from z on opposite sides, 2δ apart.

Where z is a two-fold axis of the crystal's Laue group, ``C`` is a symmetry and the twin is R
itself. Elsewhere (anatase: [1 1 1], [2 1 0], [3 1 1], [5 5 1], ...) it is another orientation,
2δ off in beam direction, that a pattern showing little beyond the ZOLZ cannot tell from R: a
field of 1.5 Å⁻¹ at 200 kV near a zone is such a pattern. Measured on the accuracy benchmark's
noisy images (docs/results.md, "Session 20: zone-axis twins"): every single-crystal miss of
2,000 was the truth's twin, within 0.72°.

Pure numpy; the reflections come from the caller (:class:`edorient.physics.reflections.Reflections`).
"""

from __future__ import annotations

import numpy as np

from edorient.errors import EdorientError
from edorient.physics.symmetry import misorientation_deg, proper_rotations

__all__ = ["crystal_twins", "half_turn_about", "ZONE_TWIN_MAX_TILT_DEG", "zone_axes_near", "zone_axis_twins"]

#: Zones farther than this from the beam are not looked for: the twin's beam lies 2δ away, and
#: at a larger δ the spots near the Ewald plane no longer belong to one zone's ZOLZ.
ZONE_TWIN_MAX_TILT_DEG = 8.0


def half_turn_about(axis) -> np.ndarray:
    """(3, 3) rotation by 180° about ``axis`` (any length): ``2 z zᵀ - I``.

    >>> bool(np.allclose(half_turn_about([0, 0, 2]), np.diag([-1.0, -1.0, 1.0])))
    True
    """
    z = np.asarray(axis, dtype=float)
    if z.shape != (3,) or not np.all(np.isfinite(z)) or not np.any(z != 0):
        raise EdorientError(f"a half turn needs a finite, non-zero axis of 3 components, got {z.tolist()}")
    z = z / np.linalg.norm(z)
    return 2.0 * np.outer(z, z) - np.eye(3)


def _reduced(uvw: np.ndarray) -> np.ndarray:
    """Integer rows divided by their greatest common divisor (sign kept)."""
    g = np.gcd.reduce(np.abs(uvw), axis=1)
    g[g == 0] = 1
    return uvw // g[:, None]


def zone_axes_near(beam, hkl, g_vectors, weight, direct_matrix, max_tilt_deg: float = ZONE_TWIN_MAX_TILT_DEG,
                   plane_tol: float = 0.05, n_strong: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """The zone axes whose ZOLZ holds the strong reflections near the plane perpendicular to ``beam``.

    ``beam`` (3,) the beam direction in the crystal frame; ``hkl`` (m, 3) int, ``g_vectors``
    (m, 3) Å⁻¹ and ``weight`` (m,) (e.g. ``|F|²``) the crystal's reflections. The ``n_strong``
    heaviest reflections within ``plane_tol`` Å⁻¹ of that plane are taken; every two of them
    span a zone ``[u v w] = h1 x h2`` (the zone law); the zones within ``max_tilt_deg`` of the
    beam are returned as (uvw (k, 3) int, unit directions (k, 3), each on the beam's side),
    heaviest ZOLZ (the summed weight of the taken reflections it holds) first.
    """
    b = np.asarray(beam, dtype=float)
    b = b / np.linalg.norm(b)
    hkl = np.asarray(hkl)
    near = np.flatnonzero(np.abs(np.asarray(g_vectors, dtype=float) @ b) <= plane_tol)
    near = near[np.argsort(-np.asarray(weight)[near], kind="stable")[:n_strong]]
    if len(near) < 2:
        return np.zeros((0, 3), dtype=int), np.zeros((0, 3))
    h = hkl[near].astype(np.int64)
    i, j = np.triu_indices(len(near), 1)
    uvw = _reduced(np.cross(h[i], h[j]))
    uvw = uvw[np.any(uvw != 0, axis=1)]
    if not len(uvw):
        return np.zeros((0, 3), dtype=int), np.zeros((0, 3))
    d = uvw @ np.asarray(direct_matrix, dtype=float).T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    s = np.sign(d @ b)
    s[s == 0] = 1
    uvw, d = uvw * s[:, None].astype(np.int64), d * s[:, None]
    uvw, first = np.unique(uvw, axis=0, return_index=True)
    d = d[first]
    keep = np.degrees(np.arccos(np.clip(d @ b, -1.0, 1.0))) <= max_tilt_deg
    uvw, d = uvw[keep], d[keep]
    if not len(uvw):
        return uvw, d
    w = np.asarray(weight, dtype=float)[near]
    score = ((uvw @ h.T) == 0).astype(float) @ w
    order = np.lexsort((-(d @ b), -score))
    return uvw[order], d[order]


def zone_axis_twins(rotation, hkl, g_vectors, weight, direct_matrix, proper, max_twins: int = 2,
                    distinct_deg: float = 1.0, return_zones: bool = False, **near):
    """(k, 3, 3) the twins ``R C`` of orientation ``rotation`` (3, 3) about the zone axes of
    :func:`zone_axes_near` (heaviest first), at most ``max_twins``, each more than
    ``distinct_deg`` from R and from each other modulo the crystal's ``proper`` rotations (m, 3, 3):
    about a two-fold axis of the crystal the twin is R itself and is left out. With
    ``return_zones``, also (k, 3) int the zone axis [u v w] of each. ``near``:
    :func:`zone_axes_near`'s keywords."""
    R = np.asarray(rotation, dtype=float)
    uvw, dirs = zone_axes_near(R[2], hkl, g_vectors, weight, direct_matrix, **near)
    P = np.asarray(proper, dtype=float)
    kept, zones = [R], []
    for u, z in zip(uvw, dirs):
        if len(kept) > max_twins:
            break
        T = R @ half_turn_about(z)
        if np.all(misorientation_deg(T, np.stack(kept), P) > distinct_deg):
            kept.append(T)
            zones.append(u)
    twins = np.stack(kept[1:]) if len(kept) > 1 else np.zeros((0, 3, 3))
    if return_zones:
        return twins, (np.stack(zones) if zones else np.zeros((0, 3), dtype=int))
    return twins


def crystal_twins(crystal, reflections, rotation, max_twins: int = 1, return_zones: bool = False, **kw):
    """:func:`zone_axis_twins` of ``rotation`` for a :class:`~edorient.physics.crystal.Crystal` and
    its :class:`~edorient.physics.reflections.Reflections` (e.g. a simulator's): the crystal's
    direct matrix and the proper rotations of its Laue group filled in."""
    return zone_axis_twins(rotation, reflections.hkl, reflections.g_vectors, reflections.intensity,
                           crystal.direct_matrix, proper_rotations(crystal.laue), max_twins=max_twins,
                           return_zones=return_zones, **kw)
