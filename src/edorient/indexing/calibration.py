"""Camera calibration from a pattern of a known crystal: scale and elliptical distortion.

Model (units and frames: :mod:`edorient.conventions`)
----------------------------------------------------
A spot at pixel ``(row, col)`` with the direct beam at ``(r0, c0)`` has the detector vector
``v = (col - c0, -(row - r0))`` (lab x, y; pixels). Its reciprocal vector (Å⁻¹, no 2π) is

.. math::  g = \\kappa\\, D^{-1}(e, \\varphi)\\, v, \\qquad
           D(e, \\varphi) = R_\\varphi\\, \\mathrm{diag}(\\sqrt e, 1/\\sqrt e)\\, R_\\varphi^T

where ``κ`` is the calibration (Å⁻¹ per pixel, the geometric mean over directions), ``e >= 1``
the ellipticity (the ratio of the major to the minor axis of the ellipse that a ring of constant
|g| draws on the detector) and ``φ`` the direction of that major axis (degrees from +col,
anticlockwise as seen on the screen, in [0, 180)). ``det D = 1``, so ``κ`` is the scale alone.

The fit (:func:`fit_calibration`)
---------------------------------
1. Spots (:func:`edorient.indexing.spots.find_spots`) and the direct beam
   (:func:`~edorient.indexing.spots.find_centre`, Friedel symmetry).
2. The 2-D lattice of the spots (:func:`edorient.indexing.lattice.find_lattice`): among short
   spot vectors and spot differences, the basis pair that indexes the most spot intensity while
   leaving the fewest lattice nodes empty (so neither a finer nor a coarser cell wins); spots
   off the lattice (a second phase, as in al_001_T1) are left out. The basis and the centre are
   refined by least squares over every indexed spot (``p_i = c + A n_i``).
3. The zone: each zone axis [u v w] of the crystal (up to ``max_index``, or the given one) has
   a reduced 2-D reciprocal cell (:func:`edorient.indexing.lattice.zone_cell`; Gram matrix
   ``G``), from the reflections its lattice centring allows and, where glide planes thin them
   out, from those with a non-zero structure factor. The observed cell (or one of index 2 above
   or below it: glide-absent nodes empty, higher-order Laue-zone spots between the nodes) maps
   onto it with the pixel metric ``M = A^{-T} G A^{-1}`` (``|g|² = v^T M v``), whose eigenvalues
   give ``κ`` and ``e`` and whose eigenvectors ``φ``. The zone chosen has the least distortion
   (``e`` near 1), puts the spots on reflections the crystal has, and has the lowest index and,
   with a guess, the scale nearest to it.

One zone pattern holds exactly three numbers about the metric (the 2-D cell), so scale and
ellipticity are determined but not over-determined: the crystal is checked by the zone's cell
*shape*, which must match within ``max_ellipticity``. Prefer a high-symmetry zone, or give it.

:func:`check_calibration_units` refuses a calibration typed in 1/nm where 1/Å is meant (or
10x too small). :class:`Calibration` is the calibration file (:func:`save_calibration`,
:func:`load_calibration`); :func:`undistort_image` removes the ellipticity from an image.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edorient.errors import EdorientError, check_finite
from edorient.indexing.lattice import (  # noqa: F401 - re-exported: the fit's building blocks
    LatticeFit,
    ZoneCell,
    candidate_zones,
    find_lattice,
    lattice_centring,
    reduce_basis,
    zone_cell,
)

log = logging.getLogger(__name__)

#: Version tag of the calibration file format.
FILE_FORMAT = "edorient-calibration/1"
#: Largest |g| (Å⁻¹) a diffraction image plausibly reaches (as the simulator's limit).
MAX_FIELD_G = 6.0
#: Smallest radius (pixels) at which a crystal's first strong reflection is still a spot.
MIN_FIRST_RING_PX = 3.0


# -- distortion model ----------------------------------------------------------------------

def distortion_matrix(ellipticity: float, angle_deg: float) -> np.ndarray:
    """``D(e, φ)`` (2 x 2, lab x-y): stretches by ``sqrt(e)`` along ``φ``, ``1/sqrt(e)`` across.

    Examples
    --------
    >>> D = distortion_matrix(1.04, 30.0)
    >>> round(float(np.linalg.det(D)), 12), np.allclose(D, D.T)
    (1.0, True)
    """
    t = math.radians(float(angle_deg))
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    s = math.sqrt(float(ellipticity))
    return R @ np.diag([s, 1.0 / s]) @ R.T


def metric_to_distortion(M: np.ndarray) -> tuple[float, float, float]:
    """``(κ, e, φ)`` of a pixel metric ``M`` (``|g|² = v^T M v``): the inverse of
    ``M = κ² D^{-2}(e, φ)``.

    Examples
    --------
    >>> Di = np.linalg.inv(distortion_matrix(1.03, 20.0))
    >>> np.round(metric_to_distortion(0.02 ** 2 * Di @ Di), 6).tolist()
    [0.02, 1.03, 20.0]
    """
    w, V = np.linalg.eigh(np.asarray(M, dtype=float))
    if w[0] <= 0:
        raise EdorientError("the fitted metric is not positive definite: the lattice fit failed")
    kappa = float((w[0] * w[1]) ** 0.25)
    e = float(math.sqrt(w[1] / w[0]))
    vx, vy = V[:, 0]
    phi = float(math.degrees(math.atan2(vy, vx)) % 180.0)
    if abs(e - 1.0) < 1e-9:
        phi = 0.0
    return kappa, e, phi


# -- the fit -------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CalibrationFit:
    """Result of :func:`fit_calibration`.

    Attributes
    ----------
    calibration
        κ, Å⁻¹ per pixel (geometric mean over directions).
    ellipticity
        Major / minor axis of a constant-|g| ring on the detector (>= 1).
    angle_deg
        Direction of the major axis (degrees from +col, anticlockwise on screen, [0, 180)).
    centre
        (row, col) of the direct beam, refined by the lattice fit.
    zone
        The zone axis [u v w] matched.
    basis_hkl
        (2, 3) the reflections of the two basis spot vectors.
    residual_px
        RMS distance of the indexed spots from the fitted lattice (pixels).
    n_spots
        Spots used (on the lattice).
    n_found
        Spots found.
    runner_up
        The next-best zone and its ellipticity and calibration, or None.
    centre_note
        How the centre was found (:class:`~edorient.indexing.spots.CentreResult`).
    missing_share
        Share of the zone's kinematic intensity, within the spots' extent, that the fit puts
        where the image has no spot (:func:`_missing`; at most :data:`MISSING_MAX`).
    positions
        (n, 2) (row, col) of the spots found; ``inlier`` marks those used.
    inlier
        (n,) boolean.
    """

    calibration: float
    ellipticity: float
    angle_deg: float
    centre: tuple[float, float]
    zone: tuple[int, int, int]
    basis_hkl: np.ndarray
    residual_px: float
    n_spots: int
    n_found: int
    runner_up: dict | None
    centre_note: str
    positions: np.ndarray = field(repr=False)
    inlier: np.ndarray = field(repr=False)
    basis_px: np.ndarray = field(repr=False, default=None)
    missing_share: float = 0.0

    def predicted_pixels(self, n_max: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the zone's lattice nodes under the fit, with their hkl."""
        g = np.arange(-n_max, n_max + 1)
        n = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        xy = n @ self.basis_px.T
        rc = np.stack([self.centre[0] - xy[:, 1], self.centre[1] + xy[:, 0]], axis=1)
        return rc, n @ self.basis_hkl

    def summary(self) -> dict:
        """JSON-friendly numbers."""
        return {
            "calibration": round(self.calibration, 7), "ellipticity": round(self.ellipticity, 5),
            "angle_deg": round(self.angle_deg, 2),
            "centre": [round(self.centre[0], 3), round(self.centre[1], 3)],
            "zone": list(self.zone), "basis_hkl": self.basis_hkl.tolist(),
            "residual_px": round(self.residual_px, 3), "n_spots": self.n_spots, "n_found": self.n_found,
            "runner_up": self.runner_up, "centre_note": self.centre_note,
            "missing_share": round(self.missing_share, 3),
        }


def _explained(crystal, Ab, cell, V, I, F2max) -> float:
    """Intensity fraction of spots (vectors ``V``) on a node of ``Ab`` whose reflection (via
    ``cell.hkl``) has a non-negligible kinematic structure factor."""
    from edorient.physics.reflections import structure_factors

    f = np.linalg.solve(Ab, V.T).T
    n = np.round(f).astype(int)
    on = np.linalg.norm((f - n) @ Ab.T, axis=1) < 1.5 + 0.015 * np.linalg.norm(V, axis=1)
    on &= np.any(n != 0, axis=1)
    if not on.any():
        return 0.0
    hkl = n[on] @ cell.hkl
    ok = np.zeros(len(V), dtype=bool)
    ok[on] = np.abs(structure_factors(crystal, hkl)) ** 2 > 1e-4 * F2max
    return float((I * ok).sum() / I.sum())


#: Largest share of a labelling's kinematic intensity that may fall where the image has no spot
#: (:func:`_missing`). Right labellings: the development patterns 0.00 (al_001, al_001_T1,
#: cuni_110), simulated ZrO2 zones 0.00; wrong ones: anatase [0 0 1] labelled at sqrt(2) its scale
#: (200 read as 110, a guess 30 % off) 0.66.
MISSING_MAX = 0.5


def _missing(crystal, Ab, cell, V, centre, node_ok, rmax) -> float:
    """Share of the kinematic intensity (|F|^2) of the zone's reflections on nodes of ``Ab`` within
    ``rmax`` px of the centre, on valid pixels, that falls where the image has no spot (``V``: all
    spots found, origin at the direct beam; ``centre``: the lattice's origin there). A labelling at
    a fraction of the true scale puts reflections of the crystal between the spots, where nothing
    is: the one thing that tells it from the right one when no calibration is guessed."""
    from edorient.physics.reflections import structure_factors

    k = int(np.ceil(rmax * np.abs(np.linalg.inv(Ab)).sum(axis=1).max())) + 1
    g = np.arange(-k, k + 1)
    n = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    n = n[np.any(n != 0, axis=1)]
    xy = n @ Ab.T + centre
    keep = (np.linalg.norm(xy - centre, axis=1) <= rmax) & node_ok(xy)
    if not keep.any():
        return 0.0
    n, xy = n[keep], xy[keep]
    F2 = np.abs(structure_factors(crystal, n @ cell.hkl)) ** 2
    if F2.sum() <= 0:
        return 0.0
    # a node counts as seen with a spot within a third of the nodes' spacing: a labelling at a
    # fraction of the scale leaves its empty nodes a whole spacing from any spot, while spots near
    # a saturated direct beam may be found several pixels off (cuni_110's 111: 3-8 px)
    spacing = float(np.linalg.norm(Ab, axis=0).min())
    tol = np.maximum(1.5 + 0.015 * np.linalg.norm(xy - centre, axis=1), spacing / 3)
    dist = np.sqrt(((xy[:, None, :] - V[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return float(F2[dist > tol].sum() / F2.sum())


#: The three sublattices of index 2 of a 2-D lattice (Hermite normal forms): ``A @ M`` spans
#: {2a1, a2}, {a1, 2a2} and {2a1, a1 + a2}. Its three superlattices, L + a1/2, L + a2/2 and
#: L + (a1 + a2)/2, are ``A @ inv(M.T)`` (``inv(M)`` gives L + a1/2 twice and never the centred
#: one: a monoclinic ZrO2 [0 0 1] pattern, whose strong spots lie on the 110-type lattice, was
#: then calibrated at half the true value).
_INDEX2 = (np.array([[2, 0], [0, 1]]), np.array([[1, 0], [0, 2]]), np.array([[2, 1], [0, 1]]))


def _alternative_bases(A: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Near-reduced bases of the lattice of ``A``'s columns, as (basis, T) with ``basis = A T``:
    ordered pairs from the three shortest vectors a1, a2, a1 + a2, made obtuse."""
    vecs = {"a1": np.array([1, 0]), "a2": np.array([0, 1]), "s": np.array([1, 1])}
    out = []
    for x in vecs.values():
        for y in vecs.values():
            if np.array_equal(x, y):
                continue
            T = np.stack([x, y], axis=1)
            if abs(round(np.linalg.det(T))) != 1:
                continue
            Bx = A @ T
            if Bx[:, 0] @ Bx[:, 1] > 0:
                T = T * np.array([1, -1])
                Bx = A @ T
            out.append((Bx, T))
    return out


def fit_calibration(
    image: np.ndarray,
    crystal,
    *,
    zone=None,
    guess: float | None = None,
    tolerance: float = 0.3,
    mask: np.ndarray | None = None,
    centre: tuple[float, float] | None = None,
    max_index: int = 3,
    max_ellipticity: float = 1.1,
) -> CalibrationFit:
    """Fit the calibration and the elliptical distortion to a zone-axis pattern of ``crystal``.

    Parameters
    ----------
    image
        2-D intensities.
    crystal
        :class:`edorient.physics.crystal.Crystal` (e.g. ``get_crystal("Al.cif")``).
    zone
        The zone axis [u v w] if known; else every zone up to ``max_index`` is tried.
    guess
        A calibration (Å⁻¹ per pixel) to start from: only zones giving a scale within
        ``tolerance`` (relative) of it are kept. Checked by :func:`check_calibration_units`.
    tolerance
        Relative range around ``guess`` (0.3: +-30 %).
    mask
        Boolean, True where the image is valid.
    centre
        (row, col) of the direct beam if known (a guess for :func:`find_centre`).
    max_index
        Largest zone-axis index tried when ``zone`` is None.
    max_ellipticity
        Largest ellipticity accepted.

    Raises
    ------
    EdorientError
        Too few spots, no lattice, or no zone whose cell matches within the limits.
    """
    from edorient.indexing.spots import find_centre, find_spots

    img = np.asarray(image, dtype=np.float64)
    if guess is not None:
        check_finite("calibration guess", guess)
        if guess <= 0:
            raise EdorientError(f"--calibration must be > 0 1/Å per pixel, got {guess}")
        check_calibration_units(guess, crystal, img.shape)
    if not 0 < tolerance < 1:
        raise EdorientError(f"tolerance must lie in (0, 1) (a fraction of the calibration), got {tolerance}")
    if not max_ellipticity >= 1:
        raise EdorientError(f"max_ellipticity must be >= 1, got {max_ellipticity}")
    spots = find_spots(img, mask)
    if len(spots) < 4:
        raise EdorientError(f"only {len(spots)} spots found: a calibration needs a zone-axis pattern with many spots")
    cres = find_centre(img, mask, guess=centre, spots=spots)
    r0, c0 = cres.row, cres.col
    P, I = spots.positions, spots.intensity
    V = np.stack([P[:, 1] - c0, -(P[:, 0] - r0)], axis=1)
    valid = np.ones(img.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    h, w = img.shape

    def node_ok(xy):
        rr = np.round(r0 - xy[:, 1]).astype(int)
        cc = np.round(c0 + xy[:, 0]).astype(int)
        ok = (rr >= 2) & (rr < h - 2) & (cc >= 2) & (cc < w - 2)
        ok[ok] = valid[rr[ok], cc[ok]]
        return ok

    lat = find_lattice(V, I, node_ok=node_ok)
    if lat.inlier.sum() < 4:
        raise EdorientError(f"only {int(lat.inlier.sum())} spots lie on one lattice: is the pattern a zone axis?")
    A = lat.basis
    zones = [tuple(int(x) for x in zone)] if zone is not None else candidate_zones(crystal, max_index)
    centring = lattice_centring(crystal)
    results = []
    # the spots' lattice may be a sublattice of the zone's (glide-absent nodes empty) or a
    # superlattice (higher-order Laue-zone spots projected between the nodes): index 2 either way
    variants = [(A, 0)]
    for Mi in _INDEX2:
        for Av in (A @ Mi, A @ np.linalg.inv(Mi.T)):
            variants.append((np.stack(reduce_basis(Av[:, 0], Av[:, 1]), axis=1), 1))
    from edorient.physics.reflections import compute_reflections

    F2max = float(compute_reflections(crystal, 1.5).intensity.max())
    Vin, Iin = V[lat.inlier] - lat.centre, I[lat.inlier]
    rmax = float(np.percentile(np.linalg.norm(Vin, axis=1), 90))  # (the spots' extent: far nodes fade)
    cells = []
    for z in zones:
        try:
            cell = zone_cell(crystal, z, centring)
        except EdorientError:
            if zone is not None:
                raise
            continue
        cells.append(cell)
        sub = zone_cell(crystal, z, centring, allowed_only=True)
        if abs(np.linalg.det(sub.gram) - np.linalg.det(cell.gram)) > 1e-9 * np.linalg.det(cell.gram):
            cells.append(sub)
    others = []  # every (cell, basis) judged: the runner-up may be the same zone at another scale
    for cell in cells:
        z = cell.uvw
        best = None
        for Av, index_step in variants:
            for Ab, T in _alternative_bases(Av):
                Ai = np.linalg.inv(Ab)
                M = Ai.T @ cell.gram @ Ai
                try:
                    kappa, e, phi = metric_to_distortion(M)
                except EdorientError:
                    continue
                if guess is not None and abs(math.log(kappa / guess)) > math.log(1 + tolerance):
                    continue
                if e > max_ellipticity:
                    continue
                # the spots should be reflections the crystal has: a cell that puts the strong spots on
                # absent (or no) reflections explains them worse (e.g. anatase [001]: 200, not 110), and
                # one at a fraction of the scale puts reflections where there are no spots (ZrO2 [001]
                # labelled at half its scale); both are judged for every basis, not only the least distorted
                explained = _explained(crystal, Ab, cell, Vin, Iin, F2max)
                missing = _missing(crystal, Ab, cell, V, lat.centre, node_ok, rmax)
                if missing > MISSING_MAX:
                    continue
                penalty = ((e - 1.0) / 0.01 + 2.0 * index_step + 10.0 * (1.0 - explained) + 10.0 * missing
                           + 0.5 * sum(abs(x) for x in z))
                if guess is not None:
                    penalty += abs(math.log(kappa / guess)) / 0.02
                others.append((penalty, z, cell, kappa, e, phi, Ab, missing))
                if best is None or penalty < best[0]:
                    best = others[-1]
        if best is not None:
            results.append(best)
    if not results:
        what = f"zone [{' '.join(map(str, zone))}]" if zone is not None else f"any zone up to index {max_index}"
        lim = f" and within {tolerance:.0%} of --calibration {guess:g}" if guess is not None else ""
        raise EdorientError(f"the spot lattice of the image matches no cell of {crystal.name} {what} with "
                            f"ellipticity <= {max_ellipticity:g}{lim}; check the crystal, --zone and --calibration "
                            "(or widen --max-ellipticity for a camera, or pixels, more distorted)")
    results.sort(key=lambda t: t[0])
    _, z, cell, kappa, e, phi, Ab, missing = results[0]
    runner = None
    rivals = sorted((t for t in others if tuple(t[1]) != tuple(z) or abs(math.log(t[3] / kappa)) > 0.03),
                    key=lambda t: t[0])
    if rivals:  # the next zone, or this zone at another scale (a sub- or superlattice labelling)
        p2, z2, _, k2, e2, _, _, _ = rivals[0]
        runner = {"zone": list(z2), "calibration": round(k2, 7), "ellipticity": round(e2, 5),
                  "penalty_margin": round(p2 - results[0][0], 3)}
    centre_rc = (r0 - lat.centre[1], c0 + lat.centre[0])
    return CalibrationFit(
        calibration=kappa, ellipticity=e, angle_deg=phi, centre=(float(centre_rc[0]), float(centre_rc[1])),
        zone=z, basis_hkl=cell.hkl, residual_px=lat.residual_px, n_spots=int(lat.inlier.sum()),
        n_found=len(spots), runner_up=runner, centre_note=cres.note, positions=P, inlier=lat.inlier,
        basis_px=Ab, missing_share=missing,
    )


# -- units plausibility --------------------------------------------------------------------

def first_strong_reflection(crystal, fraction: float = 0.1) -> tuple[np.ndarray, float]:
    """(hkl, |g| in Å⁻¹) of the lowest-order reflection with |F|² >= ``fraction`` of the
    largest |F|² below 1.5 Å⁻¹."""
    from edorient.physics.reflections import compute_reflections

    refl = compute_reflections(crystal, 1.5)
    if len(refl) == 0:
        raise EdorientError(f"{crystal.name} has no reflection below 1.5 1/Å; check its cell")
    I = refl.intensity
    k = int(np.flatnonzero(I >= fraction * I.max())[0])
    return refl.hkl[k], float(refl.g[k])


def check_calibration_units(
    calibration: float,
    crystal,
    image_shape: tuple[int, int],
    centre: tuple[float, float] | None = None,
) -> None:
    """Refuse a calibration that is 10x off (1/nm typed for 1/Å, or the reverse).

    A calibration is implausible when the crystal's first strong reflection would lie within
    :data:`MIN_FIRST_RING_PX` pixels of the direct beam, or the image would reach beyond
    :data:`MAX_FIELD_G` Å⁻¹ (both: 10x too large, e.g. 1/nm), or when that reflection would lie
    beyond the image's farthest corner (10x too small where 10x larger puts it at least
    :data:`MIN_FIRST_RING_PX` out; else a crop too tight to hold any reflection, said so rather
    than a wrong 10x hint: a 28 x 28 crop of al_001 at its right calibration was told "use 0.1901").

    Raises
    ------
    EdorientError
        With a one-line hint (the value divided or multiplied by 10).

    Examples
    --------
    >>> from edorient.structures import anatase
    >>> check_calibration_units(0.0134, anatase(), (224, 224))  # fine: returns None
    >>> check_calibration_units(0.134, anatase(), (224, 224))
    Traceback (most recent call last):
    ...
    edorient.errors.EdorientError: calibration 0.134 1/Å per px puts anatase's first strong reflection 101 (d = 3.52 Å) 2.1 px from the direct beam and the image edge at 15 1/Å: is it in 1/nm? 1/nm is 10x 1/Å: use 0.0134
    """
    check_finite("calibration", calibration)
    cal = float(calibration)
    if cal <= 0:
        raise EdorientError(f"calibration must be > 0 1/Å per pixel, got {cal:g}")
    h, w = int(image_shape[0]), int(image_shape[1])
    r0, c0 = (h / 2.0, w / 2.0) if centre is None else (float(centre[0]), float(centre[1]))
    far = max(math.hypot(r - r0, c - c0) for r in (0, h - 1) for c in (0, w - 1))
    near_edge = max(min(r0, h - 1 - r0, c0, w - 1 - c0), min(h, w) / 4.0)
    hkl, g1 = first_strong_reflection(crystal)
    r1 = g1 / cal
    name = "".join(str(int(x)) if abs(x) < 10 else f" {int(x)} " for x in hkl).strip()
    what = f"{crystal.name}'s first strong reflection {name} (d = {1 / g1:.3g} Å)"
    edge_g = near_edge * cal
    if r1 < MIN_FIRST_RING_PX or edge_g > MAX_FIELD_G:
        raise EdorientError(f"calibration {cal:g} 1/Å per px puts {what} {r1:.1f} px from the direct beam and the "
                            f"image edge at {edge_g:.2g} 1/Å: is it in 1/nm? 1/nm is 10x 1/Å: use {cal / 10:.4g}")
    if r1 > far:
        if r1 / 10.0 >= MIN_FIRST_RING_PX:  # (10x larger would make a pattern; else the image is a tight crop)
            raise EdorientError(f"calibration {cal:g} 1/Å per px puts {what} {r1:.0f} px from the direct beam, beyond "
                                f"the image ({far:.0f} px to its farthest corner): 10x too small? use {cal * 10:.4g}")
        raise EdorientError(f"calibration {cal:g} 1/Å per px puts {what} {r1:.0f} px from the direct beam, beyond the "
                            f"image ({far:.0f} px to its farthest corner): the image holds none of the crystal's "
                            f"reflections; give a larger crop (at least {2 * math.ceil(1.5 * r1)} px around the beam), "
                            "or check the calibration")


# -- calibration file ----------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """A camera calibration, as written by ``edorient calibrate`` and read by ``predict``.

    Attributes
    ----------
    calibration
        Å⁻¹ per pixel (geometric mean over directions).
    ellipticity
        Major / minor axis of a constant-|g| ring (1: none).
    angle_deg
        Direction of the major axis (degrees from +col, anticlockwise on screen).
    centre
        (row, col) of the direct beam in the calibration pattern, or None (not to be reused
        blindly on another pattern: the beam moves).
    voltage_kv
        Accelerating voltage (kV), or None.
    crystal, zone, source, date, residual_px, n_spots
        Provenance (crystal name, zone [u v w], image file, ISO date, fit residual, spots).
    """

    calibration: float
    ellipticity: float = 1.0
    angle_deg: float = 0.0
    centre: tuple[float, float] | None = None
    voltage_kv: float | None = None
    crystal: str | None = None
    zone: tuple[int, int, int] | None = None
    source: str | None = None
    date: str | None = None
    residual_px: float | None = None
    n_spots: int | None = None

    def matrix(self) -> np.ndarray:
        """2 x 2 map from a detector vector (lab x, y pixels) to g (Å⁻¹): ``κ D^{-1}``."""
        return self.calibration * np.linalg.inv(distortion_matrix(self.ellipticity, self.angle_deg))

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {"format": FILE_FORMAT, **d}
        d["centre"] = None if self.centre is None else [float(x) for x in self.centre]
        d["zone"] = None if self.zone is None else [int(x) for x in self.zone]
        return d


def calibration_from_fit(fit: CalibrationFit, *, voltage_kv: float | None = None, crystal: str | None = None,
                         source: str | None = None) -> Calibration:
    """The :class:`Calibration` of a fit, dated now (UTC)."""
    return Calibration(
        calibration=round(fit.calibration, 8), ellipticity=round(fit.ellipticity, 6), angle_deg=round(fit.angle_deg, 3),
        centre=(round(fit.centre[0], 3), round(fit.centre[1], 3)), voltage_kv=voltage_kv, crystal=crystal,
        zone=fit.zone, source=source, date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        residual_px=round(fit.residual_px, 4), n_spots=fit.n_spots,
    )


def save_calibration(path: str | Path, cal: Calibration) -> Path:
    """Write ``cal`` as JSON, atomically."""
    from edorient._utils.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(cal.to_dict(), indent=2) + "\n")


def load_calibration(value: str | Path | float) -> Calibration:
    """A calibration from a number (Å⁻¹ per pixel, e.g. ``"0.0134"``) or a calibration file.

    This is what ``--calibration`` accepts: a plain number gives an isotropic
    :class:`Calibration`; a path to a JSON file written by ``edorient calibrate`` gives its
    scale, ellipticity, axis angle (and provenance). The number is checked only for being a
    positive finite number here; call :func:`check_calibration_units` with the crystal and
    image for the 1/nm check.

    Examples
    --------
    >>> load_calibration("0.0134").calibration
    0.0134
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        cal = float(value)
        text = repr(value)
    else:
        text = str(value).strip()
        try:
            cal = float(text)
        except ValueError:
            return _load_file(Path(text))
    if not math.isfinite(cal) or cal <= 0:
        raise EdorientError(f"--calibration must be a positive number of 1/Å per pixel or a calibration file, got {text}")
    return Calibration(calibration=cal)


def _load_file(p: Path) -> Calibration:
    if not p.is_file():
        raise EdorientError(f"--calibration {p}: neither a number nor an existing calibration file "
                            "(give 1/Å per pixel, or a JSON file written by edorient calibrate)")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdorientError(f"cannot read calibration file {p}: {str(exc).splitlines()[0]} "
                            "(write it with edorient calibrate)") from None
    if not isinstance(d, dict) or "calibration" not in d:
        raise EdorientError(f"calibration file {p} has no 'calibration' entry (write it with edorient calibrate)")
    try:
        cal = float(d["calibration"])
        e = float(d.get("ellipticity", 1.0) or 1.0)
        phi = float(d.get("angle_deg", 0.0) or 0.0)
        centre = d.get("centre")
        centre = None if centre is None else (float(centre[0]), float(centre[1]))
        kv = d.get("voltage_kv")
        kv = None if kv is None else float(kv)
        zone = d.get("zone")
        zone = None if zone is None else tuple(int(x) for x in zone)
    except (TypeError, ValueError, IndexError) as exc:
        raise EdorientError(f"calibration file {p} has a malformed entry ({exc}); rewrite it with edorient calibrate") from None
    if not (math.isfinite(cal) and cal > 0):
        raise EdorientError(f"calibration file {p}: calibration must be a positive number, got {d['calibration']!r}")
    if not (math.isfinite(e) and 1.0 <= e < 2.0):
        raise EdorientError(f"calibration file {p}: ellipticity must lie in [1, 2), got {e!r}")
    return Calibration(calibration=cal, ellipticity=e, angle_deg=phi % 180.0 if math.isfinite(phi) else 0.0,
                       centre=centre, voltage_kv=kv, crystal=d.get("crystal"), zone=zone, source=d.get("source"),
                       date=d.get("date"), residual_px=d.get("residual_px"), n_spots=d.get("n_spots"))


def distort_image(image: np.ndarray, ellipticity: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """The inverse of :func:`undistort_image`: an isotropic pattern (beam at ``centre``) as a
    detector with this elliptical distortion records it (a spot at detector vector ``u`` from the
    centre moves to ``D u``, :func:`distortion_matrix`); outside the input, 0. For simulations."""
    from scipy import ndimage

    img = np.asarray(image)
    if ellipticity == 1.0:
        return img
    Dinv = np.linalg.inv(distortion_matrix(ellipticity, angle_deg))
    h, w = img.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    v = np.stack([cc - centre[1], -(rr - centre[0])])  # (2, h, w) lab x, y on the detector
    u = np.tensordot(Dinv, v, axes=1)
    coords = np.stack([centre[0] - u[1], centre[1] + u[0]])
    return ndimage.map_coordinates(img.astype(np.float64), coords, order=1, mode="constant").astype(img.dtype)


def undistort_image(image: np.ndarray, cal: Calibration, centre: tuple[float, float]) -> np.ndarray:
    """Resample ``image`` so that its calibration is isotropic (``cal.calibration`` Å⁻¹ per
    pixel in every direction), keeping its shape and the direct beam at ``centre`` (row, col).

    An output pixel at detector vector ``u`` (lab x, y from the centre) shows g = κ u; the
    distorted input had it at ``v = D u``. With ellipticity 1 the image is returned unchanged.
    """
    from scipy import ndimage

    img = np.asarray(image)
    if cal.ellipticity == 1.0:
        return img
    D = distortion_matrix(cal.ellipticity, cal.angle_deg)
    h, w = img.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    u = np.stack([cc - centre[1], -(rr - centre[0])])  # (2, h, w) lab x, y
    v = np.tensordot(D, u, axes=1)
    coords = np.stack([centre[0] - v[1], centre[1] + v[0]])
    return ndimage.map_coordinates(img.astype(np.float64), coords, order=1, mode="nearest").astype(img.dtype)
