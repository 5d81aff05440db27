"""Orientations from pairs of diffraction spots.

The classic way to index a spot pattern by hand: two spots, their distances from the direct beam
and the angle between them, matched to two reflections of the crystal with the same lengths
and angle; the two reflections and the two spot vectors then fix the whole orientation
(:class:`SpotPairIndexer`). Every pair of a few bright spots votes, and an orientation that
puts spots on many of the image's peaks (:func:`peak_hits`) is likely the grain's.

This search reads spot *positions* only. The dictionary's polar correlation
(:class:`~edorient.indexing.proposals.DictionaryProposals`) ranks a grain by rings and angles of
intensity, and on a bicrystal with the first grain's spots erased, the second grain's
strongest spots often went with them: its right entry can rank below the 300th
(docs/results.md, "Session 33"). The peaks the first grain leaves unexplained are the
second grain's, wherever they lie, so :func:`pair_partner_hypotheses` indexes them
directly.

Vectors are lab x-y in Å⁻¹ relative to the direct beam (:mod:`edorient.conventions`); a spot on
the Ewald sphere has lab z ``+λ|g|²/2`` (the beam runs along -z). numpy only.
"""

from __future__ import annotations

import numpy as np

from edorient.errors import EdorientError


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of (..., 3) vectors (np.cross's axis handling costs more than the product
    on the many small arrays of :meth:`SpotPairIndexer.rotations`)."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def orbit_representatives(g_vectors: np.ndarray, proper: np.ndarray) -> np.ndarray:
    """(N,) True for one reflection of each orbit of ``g_vectors`` (N, 3) under the proper
    rotations ``proper`` (m, 3, 3), the one whose rotated copies it beats lexicographically
    (rounded to 1e-4 Å⁻¹). An orientation ``R`` that takes ``S g`` to a spot is ``R S`` taking
    ``g`` there: the same orientation modulo the crystal's symmetry, so the first spot of a pair
    needs only these reflections."""
    g = np.asarray(g_vectors, dtype=float)
    key = np.round(np.einsum("sij,nj->sni", np.asarray(proper, dtype=float), g) * 1e4).astype(np.int64)
    m = 2 * int(np.abs(key).max(initial=0)) + 1  # (x, y, z) as one integer, lexicographically ordered
    k = (key[..., 0] * m + key[..., 1]) * m + key[..., 2]
    return k.max(axis=0) == k[0]


class SpotPairIndexer:
    """Orientations that put two reflections of a crystal on two spots.

    Parameters
    ----------
    g_vectors
        (N, 3) reflections' reciprocal vectors, crystal frame, Å⁻¹ (those a pattern can show).
    proper
        (m, 3, 3) the crystal's proper rotations (the first spot of a pair is matched only to
        :func:`orbit_representatives`).
    wavelength
        Electron wavelength, Å (a spot's lab z on the Ewald sphere).
    length_tol
        Absolute tolerance of a spot's length, Å⁻¹ (e.g. 1.5 px of calibration); ``length_rel``
        is added as a share of the length (calibration error).
    angle_tol_deg
        Tolerance of the angle between the two spot vectors.
    max_spots
        The pairs are formed among this many spots (the first ones given: pass them brightest first).
    """

    def __init__(self, g_vectors: np.ndarray, proper: np.ndarray, wavelength: float, length_tol: float,
                 length_rel: float = 0.01, angle_tol_deg: float = 3.0, max_spots: int = 8) -> None:
        self.g = np.asarray(g_vectors, dtype=float)
        if self.g.ndim != 2 or self.g.shape[1] != 3 or not len(self.g):
            raise EdorientError(f"g_vectors must be (N, 3) with N > 0, got shape {self.g.shape}")
        self.length = np.linalg.norm(self.g, axis=1)
        self.unit = self.g / np.where(self.length > 0, self.length, 1.0)[:, None]
        self.rep = orbit_representatives(self.g, proper)
        self.wavelength = float(wavelength)
        self.length_tol = float(length_tol)
        self.length_rel = float(length_rel)
        self.angle_tol = np.radians(float(angle_tol_deg))
        self.max_spots = int(max_spots)

    def lab_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(P, 3): spot vectors (P, 2) lab x-y, Å⁻¹, lifted onto the Ewald sphere."""
        v = np.asarray(vectors, dtype=float).reshape(-1, 2)
        return np.concatenate([v, 0.5 * self.wavelength * (v**2).sum(1, keepdims=True)], axis=1)

    def rotations(self, vectors: np.ndarray) -> np.ndarray:
        """(K, 3, 3) orientations (``v_lab = R g``) that take some reflection pair onto each
        pair of the first :attr:`max_spots` spot vectors (P, 2), lengths and angle within the
        tolerances, by the least-squares rotation of the two vectors and their cross product
        (Kabsch). Empty (0, 3, 3) with fewer than two spots. Nearly collinear pairs (within 5.7°,
        e.g. a spot and its Friedel mate) fix no rotation and are skipped.

        Each pair is taken in one order only: the first spot matched to the orbit
        representatives already gives every orientation modulo the crystal's symmetry, and the
        fit is symmetric in the two spots, so the other order gave the same orientations again
        (half the candidates, which every caller then draws and scores: the spot-pair partners
        of the bicrystal chain 32 -> 16 ms a bicrystal)."""
        v3 = self.lab_vectors(vectors)[: self.max_spots]
        p = len(v3)
        if p < 2:
            return np.zeros((0, 3, 3))
        plen = np.linalg.norm(v3, axis=1)
        pu = v3 / np.where(plen > 0, plen, 1.0)[:, None]
        match = np.abs(self.length[:, None] - plen[None]) <= self.length_tol + self.length_rel * plen[None]  # (N, P)
        A, B = [], []
        for a in range(p):
            ca = np.flatnonzero(match[:, a] & self.rep)
            if not len(ca):
                continue
            for b in range(a + 1, p):
                cb = np.flatnonzero(match[:, b])
                cp = float(pu[a] @ pu[b])
                if not len(cb) or abs(cp) > 0.995:
                    continue
                gap = np.abs(np.arccos(np.clip(self.unit[ca] @ self.unit[cb].T, -1, 1)) - np.arccos(np.clip(cp, -1, 1)))
                ia, ib = np.nonzero(gap <= self.angle_tol)
                if not len(ia):
                    continue
                ga, gb = self.g[ca[ia]], self.g[cb[ib]]
                A.append(np.stack([ga, gb, _cross(ga, gb)], axis=2))  # columns: crystal triads
                B.append(np.broadcast_to(np.stack([v3[a], v3[b], _cross(v3[a], v3[b])], axis=1), (len(ia), 3, 3)))
        if not A:
            return np.zeros((0, 3, 3))
        U, _, Vt = np.linalg.svd(np.concatenate(B) @ np.concatenate(A).transpose(0, 2, 1))
        U[:, :, 2] *= np.sign(np.linalg.det(U @ Vt))[:, None]  # a proper rotation
        return U @ Vt


def _peak_labels(peaks: np.ndarray, size: int, radius_px: float) -> np.ndarray:
    """(size, size) label image: j + 1 within ``radius_px`` of peak j (P, 2) (rows, cols), 0 elsewhere."""
    lab = np.zeros((size, size), dtype=np.int64)
    h = int(np.ceil(radius_px)) + 1
    for j, (r, c) in enumerate(np.asarray(peaks, dtype=float).reshape(-1, 2)):  # each disc in its own window
        r_lo, r_hi = min(max(int(np.floor(r)) - h, 0), size), min(max(int(np.floor(r)) + h + 2, 0), size)
        c_lo, c_hi = min(max(int(np.floor(c)) - h, 0), size), min(max(int(np.floor(c)) + h + 2, 0), size)
        rr, cc = np.ogrid[r_lo:r_hi, c_lo:c_hi]
        lab[r_lo:r_hi, c_lo:c_hi][(rr - r) ** 2 + (cc - c) ** 2 <= radius_px**2] = j + 1
    return lab


def _read(labels: np.ndarray, pixels: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(K, N) ``labels`` at the rounded ``pixels`` (K, N, 2) of the ``visible`` spots inside the
    frame; -1 elsewhere."""
    size = labels.shape[0]
    ri, ci = np.rint(pixels[..., 0]).astype(np.int64), np.rint(pixels[..., 1]).astype(np.int64)
    inside = np.asarray(visible, dtype=bool) & (ri >= 0) & (ri < size) & (ci >= 0) & (ci < size)
    return np.where(inside, labels[ri.clip(0, size - 1), ci.clip(0, size - 1)], -1)


def peak_hits(pixels: np.ndarray, visible: np.ndarray, peaks: np.ndarray, size: int, radius_px: float) -> np.ndarray:
    """(K,) how many of ``peaks`` (P, 2) (rows, cols) lie within ~``radius_px`` of a ``visible``
    (K, N) spot among ``pixels`` (K, N, 2) of K candidate orientations, each peak counted once:
    a label image of the peaks' discs read at the rounded spot pixels (half a pixel of slack)."""
    pk = np.asarray(peaks, dtype=float).reshape(-1, 2)
    px = np.asarray(pixels, dtype=float)
    K = px.shape[0]
    if not len(pk) or not K:
        return np.zeros(K, dtype=np.int64)
    hit = np.zeros((K, len(pk) + 1), dtype=bool)
    hit[np.arange(K)[:, None], _read(_peak_labels(pk, size, radius_px), px, visible).clip(0)] = True
    return hit[:, 1:].sum(axis=1)


def lone_spots(pixels: np.ndarray, visible: np.ndarray, peaks: np.ndarray, size: int, radius_px: float) -> np.ndarray:
    """(K,) how many ``visible`` (K, N) spots among ``pixels`` (K, N, 2) of K candidate
    orientations lie inside the frame but farther than ~``radius_px`` from every one of ``peaks``
    (P, 2): spots a candidate predicts that the image does not show."""
    return (_read(_peak_labels(peaks, size, radius_px), np.asarray(pixels, dtype=float), visible) == 0).sum(axis=1)
