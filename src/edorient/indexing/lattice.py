"""2-D lattices of spot patterns and the reduced reciprocal cells of a crystal's zone axes.

:func:`find_lattice` fits a 2-D lattice to spot vectors (relative to the direct beam, lab x-y
pixels, :mod:`edorient.conventions`); :func:`zone_cell` gives a zone axis' reduced 2-D
reciprocal cell (Å⁻¹, no 2π) from the reflections its lattice centring allows (or those with a
non-zero kinematic structure factor); :func:`candidate_zones` lists zone axes up to an index, one
per Laue class. Used by :mod:`edorient.indexing.calibration`. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edorient.errors import EdorientError


def reduce_basis(a1: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduced basis of the 2-D lattice spanned by ``a1, a2``, with
    ``|a1| <= |a2|`` and ``a1 · a2 <= 0`` (an obtuse or right angle).

    Examples
    --------
    >>> b1, b2 = reduce_basis(np.array([1.0, 0.0]), np.array([3.0, 1.0]))
    >>> b1.tolist(), b2.tolist()
    ([1.0, 0.0], [0.0, 1.0])
    """
    a1, a2 = np.asarray(a1, dtype=float), np.asarray(a2, dtype=float)
    for _ in range(100):
        if a1 @ a1 > a2 @ a2:
            a1, a2 = a2, a1
        mu = round(float(a1 @ a2) / float(a1 @ a1))
        if mu == 0:
            break
        a2 = a2 - mu * a1
    if a1 @ a1 > a2 @ a2:
        a1, a2 = a2, a1
    if a1 @ a2 > 0:
        a2 = -a2
    return a1, a2


@dataclass(frozen=True, eq=False)
class LatticeFit:
    """A 2-D lattice fitted to spots: ``p = centre + basis @ n``.

    Attributes
    ----------
    basis
        (2, 2) reduced basis, columns a1, a2 (lab x-y pixels).
    centre
        (2,) lattice origin (the direct beam) in lab x-y pixels relative to the centre used to
        compute the spot vectors (a refinement of it).
    indices
        (n, 2) integer indices of every spot (meaningful where ``inlier``).
    inlier
        (n,) the spots on the lattice.
    residual_px
        RMS distance (pixels) of the inliers from their lattice nodes.
    occupancy
        Fraction of the lattice nodes (inside the spots' radius and the valid image) with a spot.
    indexed
        Fraction of the spot intensity on the lattice.
    """

    basis: np.ndarray
    centre: np.ndarray
    indices: np.ndarray
    inlier: np.ndarray
    residual_px: float
    occupancy: float
    indexed: float


def _tol(radius: np.ndarray, tol_px: float) -> np.ndarray:
    return tol_px + 0.015 * radius


def find_lattice(
    vectors: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    node_ok=None,
    tol_px: float = 1.5,
    min_length_px: float = 3.0,
    n_bright: int = 16,
) -> LatticeFit:
    """The 2-D lattice of spot vectors (relative to the direct beam, lab x-y pixels).

    Candidates are the vectors of the ``n_bright`` brightest spots and their differences; each
    non-collinear pair is scored by (fraction of spot intensity indexed) x (fraction of
    lattice nodes within the spots' radius that hold a spot). ``node_ok(xy) -> bool array``
    says which node positions could show a spot (inside the valid image); all by default.

    Examples
    --------
    >>> n = np.array([[i, j] for i in range(-3, 4) for j in range(-3, 4) if (i, j) != (0, 0)])
    >>> A = np.array([[10.0, 3.0], [1.0, 12.0]])
    >>> fit = find_lattice(n @ A.T)
    >>> abs(round(float(np.linalg.det(fit.basis)), 3)), bool(fit.inlier.all())
    (117.0, True)
    """
    V = np.asarray(vectors, dtype=float).reshape(-1, 2)
    w = np.ones(len(V)) if weights is None else np.asarray(weights, dtype=float)
    if len(V) < 3:
        raise EdorientError(f"only {len(V)} spots: a lattice needs at least 3 (is the pattern a zone axis?)")
    r = np.linalg.norm(V, axis=1)
    order = np.argsort(-w, kind="stable")[:n_bright]
    B = V[order]
    i, j = np.triu_indices(len(B), k=1)
    cand = np.concatenate([B, B[i] - B[j]])
    cand = cand[np.linalg.norm(cand, axis=1) >= min_length_px]
    # one of +-v, shortest first, distinct
    cand = np.where((cand[:, 0] < 0) | ((cand[:, 0] == 0) & (cand[:, 1] < 0)), -1, 1)[:, None] * cand
    cand = cand[np.argsort(np.linalg.norm(cand, axis=1), kind="stable")]
    uniq: list[np.ndarray] = []
    for v in cand:
        if all(np.linalg.norm(v - u) > tol_px for u in uniq):
            uniq.append(v)
        if len(uniq) >= 30:
            break
    U = np.array(uniq)
    rmax = float(np.quantile(r, 0.6)) if len(r) > 3 else float(r.max())  # inner spots: ZOLZ, not HOLZ
    best = None
    for a, b in zip(*np.triu_indices(len(U), k=1)):
        A = np.stack([U[a], U[b]], axis=1)
        det = float(np.linalg.det(A))
        if abs(det) < 0.3 * np.linalg.norm(U[a]) * np.linalg.norm(U[b]) or abs(det) < min_length_px**2:
            continue  # near-collinear
        score, parts = _score_cell(A, V, w, r, rmax, node_ok, tol_px)
        if best is None or score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and abs(det) > abs(best[1])):
            best = (score, det, A, parts)
    if best is None:
        raise EdorientError("the spots do not form a 2-D lattice (all collinear?): is the pattern a zone axis?")
    A = np.stack(reduce_basis(best[2][:, 0], best[2][:, 1]), axis=1)
    return _refine_lattice(A, V, w, r, rmax, node_ok, tol_px)


def _index(A, V, c, r, tol_px):
    n = np.linalg.solve(A, (V - c).T).T
    ni = np.round(n).astype(int)
    err = np.linalg.norm((V - c) - ni @ A.T, axis=1)
    return ni, err <= _tol(r, tol_px), err


def _score_cell(A, V, w, r, rmax, node_ok, tol_px):
    ni, hit, _ = _index(A, V, np.zeros(2), r, tol_px)
    indexed = float((w * hit).sum() / w.sum())
    # lattice nodes within rmax (not the origin) that could be seen
    Ainv = np.linalg.inv(A)
    m = int(np.ceil(rmax * np.abs(Ainv).sum(axis=1).max())) + 1
    m = min(m, 60)
    g = np.arange(-m, m + 1)
    nodes = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    xy = nodes @ A.T
    rr = np.linalg.norm(xy, axis=1)
    sel = (rr <= rmax) & (rr > 0.5)
    if node_ok is not None:
        sel &= node_ok(xy)
    n_nodes = int(sel.sum())
    if n_nodes == 0:
        return 0.0, (indexed, 0.0)
    occupied = {tuple(x) for x in ni[hit & (r > 0.5)]}
    held = sum(1 for x in nodes[sel] if tuple(x) in occupied)
    occupancy = held / n_nodes
    return indexed * occupancy, (indexed, occupancy)


def _refine_lattice(A, V, w, r, rmax, node_ok, tol_px, iterations=3) -> LatticeFit:
    c = np.zeros(2)
    for _ in range(iterations):
        ni, hit, _ = _index(A, V, c, r, tol_px)
        if hit.sum() < 3:
            break
        X = np.column_stack([np.ones(hit.sum()), ni[hit]])
        sol, *_ = np.linalg.lstsq(X, V[hit], rcond=None)  # rows: c, a1, a2
        c, A = sol[0], sol[1:].T
    ni, hit, err = _index(A, V, c, r, tol_px)
    _, (indexed, occupancy) = _score_cell(A, V - c, w, np.linalg.norm(V - c, axis=1), rmax, node_ok, tol_px)
    res = float(np.sqrt(np.mean(err[hit] ** 2))) if hit.any() else float("nan")
    return LatticeFit(A, c, ni, hit, res, occupancy, indexed)


# -- zone cells of a crystal ---------------------------------------------------------------

#: Lattice-centring conditions on hkl and the density of the reflections they keep.
_CENTRINGS = {
    "P": (lambda h, k, l: np.ones_like(h, dtype=bool), 1.0),
    "I": (lambda h, k, l: (h + k + l) % 2 == 0, 0.5),
    "C": (lambda h, k, l: (h + k) % 2 == 0, 0.5),
    "A": (lambda h, k, l: (k + l) % 2 == 0, 0.5),
    "B": (lambda h, k, l: (h + l) % 2 == 0, 0.5),
    "R": (lambda h, k, l: (-h + k + l) % 3 == 0, 1 / 3),
    "Rrev": (lambda h, k, l: (h - k + l) % 3 == 0, 1 / 3),
    "F": (lambda h, k, l: ((h % 2) == (k % 2)) & ((k % 2) == (l % 2)), 0.25),
}


def lattice_centring(crystal) -> str:
    """The lattice centring (P, I, C, A, B, R, F) that the crystal's allowed reflections
    obey: the sparsest condition that all of them satisfy (from the structure factors)."""
    from edorient.physics.reflections import compute_reflections

    refl = compute_reflections(crystal, 1.0)
    h, k, l = refl.hkl.T
    best, dens = "P", 1.0
    for name, (cond, d) in _CENTRINGS.items():
        if d < dens and np.all(cond(h, k, l)):
            best, dens = name, d
    return best


@dataclass(frozen=True, eq=False)
class ZoneCell:
    """The reduced 2-D reciprocal cell of a zone axis.

    Attributes
    ----------
    uvw
        The zone axis [u v w].
    hkl
        (2, 3) the reflections b1, b2 of the reduced basis.
    gram
        (2, 2) Gram matrix of b1, b2 (Å⁻²).
    """

    uvw: tuple[int, int, int]
    hkl: np.ndarray
    gram: np.ndarray


def zone_cell(crystal, uvw, centring: str | None = None, allowed_only: bool = False) -> ZoneCell:
    """The reduced cell of the reflections of zone ``uvw`` (``h u + k v + l w = 0``) that obey
    the crystal's lattice centring (:func:`lattice_centring`), or, with ``allowed_only``, of
    those with a non-zero kinematic structure factor (a glide plane can make the spots a
    sublattice, e.g. anatase [001] shows 200 and 020 but not 110, which double diffraction
    does not fill in within the zone).

    Examples
    --------
    >>> from edorient.structures import anatase
    >>> c = zone_cell(anatase(), [0, 0, 1])
    >>> np.round(np.sqrt(np.diag(c.gram)), 4).tolist(), abs(c.hkl).sum(axis=1).tolist()
    ([0.3737, 0.3737], [2, 2])
    """
    uvw = np.asarray(uvw, dtype=int)
    if uvw.shape != (3,) or not np.any(uvw):
        raise EdorientError(f"zone axis must be three integers [u v w], not all zero; got {uvw.tolist()}")
    cond = _CENTRINGS[centring or lattice_centring(crystal)][0]
    Bm = crystal.reciprocal_matrix
    m = 6
    g = np.arange(-m, m + 1)
    hkl = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ uvw == 0) & np.any(hkl != 0, axis=1)]
    hkl = hkl[cond(*hkl.T)]
    if allowed_only:
        from edorient.physics.reflections import ABSENCE_TOLERANCE, structure_factors

        F2 = np.abs(structure_factors(crystal, hkl)) ** 2
        hkl = hkl[F2 > ABSENCE_TOLERANCE * F2.max()]
    gv = hkl @ Bm.T
    gl = np.linalg.norm(gv, axis=1)
    order = np.argsort(gl, kind="stable")
    hkl, gv, gl = hkl[order], gv[order], gl[order]
    short = hkl[:24]
    a, b = np.triu_indices(len(short), k=1)
    area = np.linalg.norm(np.cross(short[a] @ Bm.T, short[b] @ Bm.T), axis=1)
    best = None
    test = hkl[:60].astype(float)
    for k in np.argsort(area, kind="stable"):
        if area[k] < 1e-9:
            continue
        M = np.stack([short[a[k]], short[b[k]]])  # (2, 3) integer
        # every zone reflection an integer combination of the pair? (smallest area first)
        coef = np.linalg.solve((M @ M.T).astype(float), M @ test.T).T
        if np.allclose(coef, np.round(coef), atol=1e-6):
            best = (area[k], M)
            break
    if best is None:
        raise EdorientError(f"zone [{' '.join(map(str, uvw))}] has no 2-D reciprocal lattice within |hkl| <= {m}")
    M = best[1]
    # reduce in Cartesian space, carrying the integer indices along
    h1, h2 = M[0].astype(float), M[1].astype(float)
    for _ in range(100):
        g1, g2 = h1 @ Bm.T, h2 @ Bm.T
        if g1 @ g1 > g2 @ g2:
            h1, h2 = h2, h1
            continue
        mu = round(float(g1 @ g2) / float(g1 @ g1))
        if mu == 0:
            break
        h2 = h2 - mu * h1
    g1, g2 = h1 @ Bm.T, h2 @ Bm.T
    if g1 @ g2 > 1e-12:
        h2 = -h2
        g2 = -g2
    G = np.array([[g1 @ g1, g1 @ g2], [g1 @ g2, g2 @ g2]])
    return ZoneCell(tuple(int(x) for x in uvw), np.stack([h1, h2]).astype(int), G)


def candidate_zones(crystal, max_index: int = 3) -> list[tuple[int, int, int]]:
    """Zone axes [u v w] (coprime, |u|,|v|,|w| <= ``max_index``), one per class of
    directions equivalent under the crystal's Laue group, lowest indices first."""
    g = np.arange(-max_index, max_index + 1)
    uvw = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    uvw = uvw[np.any(uvw != 0, axis=1)]
    uvw = uvw[np.gcd.reduce(np.abs(uvw), axis=1) == 1]
    uvw = uvw[np.lexsort((-uvw[:, 2], -uvw[:, 1], -uvw[:, 0], np.abs(uvw).sum(axis=1)))]
    dirs = uvw @ crystal.direct_matrix.T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    red = crystal.laue.reduce(dirs)
    out, seen = [], []
    for z, d in zip(uvw, red):
        if any(float(d @ s) > 1 - 1e-9 for s in seen):
            continue
        seen.append(d)
        out.append(tuple(int(x) for x in z))
    return out
