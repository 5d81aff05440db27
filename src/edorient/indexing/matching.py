"""Pattern matching in polar coordinates: scores, in-plane angles, template matching.

A rotation about the beam turns the pattern on the detector, so in polar coordinates (r, φ)
around the direct beam it is a circular shift along φ. The correlation of an image with a
simulated pattern is therefore computed for every in-plane angle at once with one FFT along φ
(the idea behind polar template matching in pyxem; written here from the geometry):

.. math:: C(\\theta) = \\sum_r \\sum_\\varphi a(r, \\varphi)\\, b(r, \\varphi - \\theta)

with ``a`` and ``b`` the zero-mean, ``sqrt(r)``-weighted polar images (so the sum is an area
integral), normalised so that ``C`` is a Pearson correlation in [-1, 1].

Used for: the user's pick of Method 2 stage 1 (which head's pattern fits the image best), the
in-plane angle of the kept grain in stage 2, and a CNN-free single-crystal estimator
(:class:`TemplateMatcher`) that serves as a baseline and a fallback.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edorient import conventions as cv
from edorient.errors import EdorientError
from edorient.physics.orientation import rotation_from_direction
from edorient.render import Simulator


@dataclass(frozen=True)
class PolarGrid:
    """Sampling of the polar transform: radii in pixels, ``n_phi`` angles over 360°."""

    size: int
    n_r: int = 48
    n_phi: int = 360
    r_min: float = 4.0
    smooth_px: float = 1.5

    @property
    def radii(self) -> np.ndarray:
        return np.linspace(self.r_min, self.size // 2 - 2, self.n_r)

    @property
    def phi(self) -> np.ndarray:
        return 2 * np.pi * np.arange(self.n_phi) / self.n_phi

    def transform(self, images: np.ndarray) -> np.ndarray:
        """(…, H, W) images -> (…, n_r, n_phi) polar images (bilinear)."""
        images = np.asarray(images, dtype=np.float32)
        if images.shape[-2:] != (self.size, self.size):
            raise EdorientError(f"images must be {self.size} x {self.size}, got {images.shape[-2:]}")
        flat = images.reshape(-1, self.size, self.size)
        if self.smooth_px > 0:  # wider peaks make the correlation a smoother function of orientation
            from edorient._filter_kernels import gaussian_filter_stack32  # scipy's, bit for bit, compiled

            flat = gaussian_filter_stack32(flat, self.smooth_px)
        out = (_bilinear_matrix(self) @ flat.reshape(len(flat), -1).T).T
        return np.ascontiguousarray(out).reshape(images.shape[:-2] + (self.n_r, self.n_phi))

    def normalise(self, polar: np.ndarray) -> np.ndarray:
        """Zero-mean, sqrt(r)-weighted, unit-norm polar images (…, n_r, n_phi)."""
        w = np.sqrt(self.radii)[:, None]
        x = (polar - polar.mean(axis=(-2, -1), keepdims=True)) * w
        norm = np.sqrt(np.sum(x * x, axis=(-2, -1), keepdims=True))
        return x / np.where(norm > 0, norm, 1.0)


@functools.lru_cache(maxsize=16)
def _bilinear_matrix(grid: PolarGrid):
    """The bilinear interpolation of :meth:`PolarGrid.transform` as a sparse (n_r n_phi, H W)
    float32 matrix: the values of ``scipy.ndimage.map_coordinates(order=1)`` at the grid's
    points (all inside the image), for a batch of images in one product instead of one call
    per image."""
    from scipy import sparse

    r0, c0 = cv.centre_pixel(grid.size)
    rr, pp = np.meshgrid(grid.radii, grid.phi, indexing="ij")
    y, x = (r0 - rr * np.sin(pp)).ravel(), (c0 + rr * np.cos(pp)).ravel()
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    rows, cols, w = [], [], []
    point = np.arange(len(y))
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < grid.size) & (xx >= 0) & (xx < grid.size) & (wt > 0)
        rows.append(point[ok])
        cols.append(yy[ok] * grid.size + xx[ok])
        w.append(wt[ok])
    shape = (len(y), grid.size * grid.size)
    return sparse.csr_matrix((np.concatenate(w).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                             shape=shape)


def correlation_layout(fft: np.ndarray) -> np.ndarray:
    """Template FFTs (m, n_r, n_k) -> the layout :meth:`TemplateMatcher.polar_correlations`
    multiplies: conjugated, (n_k, m, n_r), C-contiguous (the on-disk cache stores this one, so
    that a loaded dictionary needs no transposition: 0.19 s of a 0.8 s call before)."""
    return np.ascontiguousarray(np.conj(fft).transpose(2, 0, 1))


def correlate_inplane(a_norm: np.ndarray, b_norm: np.ndarray) -> np.ndarray:
    """Correlation of polar image ``a`` with ``b`` turned by each of the n_phi angles.

    ``a_norm`` (n_r, n_phi); ``b_norm`` (…, n_r, n_phi) -> (…, n_phi): entry j is the correlation
    of ``a`` with ``b`` rotated anticlockwise by ``360 j / n_phi`` degrees.
    """
    fa = np.fft.rfft(a_norm, axis=-1)
    fb = np.fft.rfft(b_norm, axis=-1)
    n = a_norm.shape[-1]
    # sum_phi a(phi) b(phi - theta) = irfft(FA * conj(FB))(theta), summed over r
    return np.fft.irfft(np.sum(fa * np.conj(fb), axis=-2), n=n, axis=-1)


def _both_families(directions: np.ndarray) -> np.ndarray:
    """(n, 3) directions -> (n, 2, 3): each direction and its antipode.

    ``d`` and ``-d`` carry one label (the Laue group holds the inversion) but belong to the two
    families of orientations that no proper rotation of the crystal relates
    (:meth:`edorient.physics.symmetry.LaueGroup.reduce_proper`): their patterns are mirror images.
    """
    return np.stack([directions, -directions], axis=1)


class PatternScorer:
    """Correlation of an image with simulated patterns, best over in-plane angle (and family).

    Parameters
    ----------
    simulator
        The simulator whose images the scorer compares with (same size and calibration).
    n_r, n_phi
        Polar sampling (n_phi = 360 gives 1° steps).
    """

    def __init__(self, simulator: Simulator, n_r: int = 48, n_phi: int = 360) -> None:
        self.simulator = simulator
        self.grid = PolarGrid(simulator.config.image_size, n_r=n_r, n_phi=n_phi)

    def template(self, directions: np.ndarray) -> np.ndarray:
        """Normalised polar templates (n, n_r, n_phi) of directions (n, 3) at in-plane angle 0."""
        d = np.atleast_2d(np.asarray(directions, dtype=float))
        images = self.simulator.images(rotation_from_direction(d, 0.0))
        return self.grid.normalise(self.grid.transform(images))

    def prepare(self, image01: np.ndarray) -> np.ndarray:
        """Normalised polar image of a display-transformed image (H, W) in [0, 1]."""
        return self.grid.normalise(self.grid.transform(image01))

    def score(self, image01: np.ndarray, directions: np.ndarray,
              both_families: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Best correlation and its orientation for each beam direction (n, 3).

        Every in-plane angle is tried (FFT along φ) and, with ``both_families``, both
        orientation families of the direction (``d`` and ``-d``: mirror-image patterns with one
        label); without it, only beam direction ``d`` as given.

        Returns
        -------
        scores, rotations
            (n,) correlations and (n, 3, 3) the orientations that reach them.
        """
        d = np.atleast_2d(np.asarray(directions, dtype=float))
        trial = _both_families(d) if both_families else d[:, None]
        a = self.prepare(image01)
        c = correlate_inplane(a, self.template(trial.reshape(-1, 3))).reshape(len(d), trial.shape[1], -1)
        flat = c.reshape(len(d), -1).argmax(axis=1)
        fam, j = np.divmod(flat, c.shape[-1])
        best = trial[np.arange(len(d)), fam]
        return c[np.arange(len(d)), fam, j], rotation_from_direction(best, j * 360.0 / self.grid.n_phi)


class TemplateMatcher:
    """Single-crystal orientation by polar template matching over the whole orientation space.

    A CNN-free estimator: the dictionary holds the simulated patterns of ``n_directions``
    directions spread evenly over the Laue sector (a Fibonacci lattice on the sphere, kept where
    it falls in the sector) *and of their antipodes*, the mirror-image family of orientations
    that share their labels; each is compared with the image at every in-plane angle by FFT, so
    the dictionary covers all of SO(3) modulo the crystal's proper rotations.
    """

    def __init__(self, simulator: Simulator, n_directions: int = 400, n_r: int = 48, n_phi: int = 360,
                 chunk: int = 64, top_k: int = 4, mirror_family: bool = True, zone_max_index: int = 0,
                 cache: bool = False, max_frequency: int | None = None) -> None:
        from edorient._utils.resources import check_matcher_directions

        check_matcher_directions(n_directions, "n_directions")  # before the dictionary is allocated
        self.scorer = PatternScorer(simulator, n_r=n_r, n_phi=n_phi)
        # with max_frequency only the angular frequencies up to it are kept (stored, cached, and
        # multiplied): every correlation is then low-passed to them, as
        # :class:`~edorient.indexing.proposals.DictionaryProposals` reads it with its own
        # ``max_frequency``; a third of the memory and the disk at 60 of 180 frequencies
        self.n_frequencies = n_phi // 2 + 1 if max_frequency is None else min(int(max_frequency) + 1, n_phi // 2 + 1)
        self.max_frequency = None if max_frequency is None else int(max_frequency)
        sector = sector_grid(simulator.crystal.laue, n_directions)
        n_zones = 0
        if zone_max_index > 0:
            # exact low-index zone axes: the patterns people record; a grid alone misses them
            zones = zone_axes(simulator.crystal, zone_max_index)
            sector, n_zones = np.concatenate([zones, sector]), len(zones)
        # beam directions of the dictionary; without the mirror family (before the coverage fix:
        # kept to measure what it cost) only the sector, half of the orientations
        self.families = 2 if mirror_family else 1
        self.directions = (_both_families(sector) if mirror_family else sector[:, None]).reshape(-1, 3)
        self.top_k = int(top_k)
        # mean spacing of the grid over the sector (a sector is 4π / |G| sr)
        self.spacing_deg = float(np.degrees(np.sqrt(4 * np.pi / len(simulator.crystal.laue.ops) / max(len(sector), 1))))
        self.cache_hit = False
        self.cache_file = None
        if cache:
            from edorient.indexing.dictionary import load_or_build

            self._fft_t, self.cache_file, self.cache_hit = load_or_build(self, chunk)
        else:
            self._fft_t = correlation_layout(self.build(chunk))
        groups = np.arange(len(self.directions)).reshape(-1, self.families)
        self.coarse_index = groups[::3].ravel()
        #: the rows of the exact zone axes (:meth:`polar_correlations`' ``subset="zones"``)
        self.zone_index = groups[:n_zones].ravel()
        self._fft_t_subset: dict = {}

    @property
    def _fft(self) -> np.ndarray:
        """The templates' FFTs along φ, (m, n_r, n_frequencies) (a view of the stored layout)."""
        return np.conj(self._fft_t).transpose(1, 2, 0)

    def build(self, chunk: int = 64) -> np.ndarray:
        """FFTs along φ of the dictionary's normalised polar templates (m, n_r, n_frequencies)."""
        parts = [self.scorer.template(self.directions[i : i + chunk]) for i in range(0, len(self.directions), chunk)]
        return np.fft.rfft(np.concatenate(parts), axis=-1)[..., : self.n_frequencies].astype(np.complex64)

    def correlations(self, image01: np.ndarray) -> np.ndarray:
        """(m, n_phi) correlation of the image with every dictionary entry at every in-plane angle."""
        return self.polar_correlations(self.scorer.prepare(image01))

    def polar_correlations(self, a: np.ndarray, subset: str | None = None) -> np.ndarray:
        """:meth:`correlations` of a normalised polar image (n_r, n_phi); with ``subset``
        ``"coarse"``, of every third dictionary direction only (rows of :attr:`coarse_index`),
        for cheap scans (e.g. over calibration scales) that need the shape of the best score,
        not its argmax; ``"zones"``, of the exact zone axes only (:attr:`zone_index`)."""
        fa = np.fft.rfft(a, axis=-1)[..., : self.n_frequencies].astype(np.complex64)
        table = self._fft_t
        if subset is not None:
            if subset not in self._fft_t_subset:
                rows = {"coarse": self.coarse_index, "zones": self.zone_index}[subset]
                self._fft_t_subset[subset] = np.ascontiguousarray(self._fft_t[:, rows])
            table = self._fft_t_subset[subset]
        # (k, m, r) conjugated: one batched matrix-vector product per frequency k
        prod = np.matmul(table, fa.T[:, :, None])[..., 0]  # (k, m)
        return np.fft.irfft(prod.T, n=a.shape[-1], axis=-1)

    def match(self, image01: np.ndarray, refine: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
        """(label direction (3,), orientation (3, 3), correlation) of the best template.

        The label is the sector-reduced beam direction of the orientation. The best ``top_k``
        dictionary entries are refined by scoring directions on shrinking rings around them
        (zone-axis patterns are sharp: a coarse grid alone can miss them), each ring kept in
        its own family.
        """
        laue = self.scorer.simulator.crystal.laue
        c = self.correlations(image01)
        n = c.shape[-1]
        best = c.max(axis=1)
        if not refine:
            i = int(np.argmax(best))
            j = int(np.argmax(c[i]))
            R = rotation_from_direction(self.directions[i], j * 360.0 / n)
            return laue.reduce(self.directions[i]), R, float(c[i, j])
        return max(self._refined(c, image01), key=lambda f: f[2])

    def match_all(self, image01: np.ndarray, separation_deg: float = 0.0) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """The refined candidates of :meth:`match`, best first: the best two dictionary entries
        and, with ``separation_deg`` > 0, the best entries at least that far (modulo the Laue
        group) from every better one (the runner-ups of other zones), ``top_k`` in all."""
        return sorted(self._refined(self.correlations(image01), image01, separation_deg), key=lambda f: -f[2])

    def _refined(self, c: np.ndarray, image01: np.ndarray, separation_deg: float = 0.0):
        # top_k distinct labels, each in its better family (near a mirror plane the two families
        # are near-identical patterns and would otherwise fill the candidate list twice)
        best = c.max(axis=1)
        pairs = best.reshape(-1, self.families)
        fam = np.argmax(pairs, axis=1)
        order = np.argsort(pairs.max(axis=1))[::-1]
        top = order[: self.top_k]
        if separation_deg > 0:
            laue = self.scorer.simulator.crystal.laue
            labels = self.directions.reshape(-1, self.families, 3)[:, 0]
            kept = list(order[:2])
            for i in order[2:]:
                if len(kept) >= self.top_k:
                    break
                if float(laue.angle(labels[kept], labels[i][None]).min()) > separation_deg:
                    kept.append(i)
            top = np.array(kept)
            cands = self.directions.reshape(-1, self.families, 3)[top, fam[top]]
            # the best two to the finest ring; the runner-ups of other zones one ring step (their
            # scores set the margin, a fraction of a grid step does not change it)
            return (refine_on_rings(self.scorer, image01, cands[:2], self.spacing_deg, self.families)
                    + refine_on_rings(self.scorer, image01, cands[2:], self.spacing_deg, self.families,
                                      stop_step=self.spacing_deg * 0.75) if len(cands) > 2 else
                    refine_on_rings(self.scorer, image01, cands, self.spacing_deg, self.families))
        cands = self.directions.reshape(-1, self.families, 3)[top, fam[top]]
        return refine_on_rings(self.scorer, image01, cands,
                               self.spacing_deg, self.families)

    def __call__(self, image01: np.ndarray) -> np.ndarray:
        return self.match(image01)[0]


def refine_on_rings(scorer: PatternScorer, image01: np.ndarray, cands: np.ndarray, start_step: float,
                    families: int = 2, stop_step: float = 0.3) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Move each candidate direction (k, 3) to the best of eight neighbours on a ring while that
    scores better, halving the ring from ``start_step`` degrees down to ``stop_step``; each ring
    stays in its candidate's mirror family (``families`` = 2) or sector (1).

    Returns (label, orientation, score) per candidate: zone-axis patterns are sharp, a coarse
    grid alone can miss them.
    """
    laue = scorer.simulator.crystal.laue
    cands = np.asarray(cands, dtype=float).reshape(-1, 3)
    step = float(start_step)
    while step > stop_step:
        trial = np.concatenate([_ring(d, step) for d in cands] + [cands])
        trial = laue.reduce_proper(trial) if families == 2 else laue.reduce(trial)
        sc, _ = scorer.score(image01, trial, both_families=False)
        groups = sc[: len(cands) * 8].reshape(len(cands), 8)
        own = sc[len(cands) * 8 :]
        k = np.argmax(np.concatenate([groups, own[:, None]], axis=1), axis=1)
        moved = k < 8
        ring = trial[: len(cands) * 8].reshape(len(cands), 8, 3)
        cands = np.where(moved[:, None], ring[np.arange(len(cands)), np.minimum(k, 7)], cands)
        step /= 2
    score, R = scorer.score(image01, cands, both_families=False)
    return [(laue.reduce(d), Ri, float(si)) for d, Ri, si in zip(cands, R, score)]


def _ring(d: np.ndarray, step_deg: float) -> np.ndarray:
    """Eight unit vectors ``step_deg`` away from ``d`` (3,), evenly around it."""
    d = d / np.linalg.norm(d)
    u = np.cross(d, [1.0, 0.0, 0.0] if abs(d[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    t = np.radians(step_deg)
    ang = np.arange(8) * np.pi / 4
    ring = np.cos(t) * d + np.sin(t) * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v)
    return ring


def coprime_indices(max_index: int) -> np.ndarray:
    """Every index triple [u v w] with |u|, |v|, |w| <= ``max_index``, not all 0, coprime: (k, 3).

    >>> len(coprime_indices(1))  # the 26 neighbours of the origin
    26
    """
    rng = np.arange(-max_index, max_index + 1)
    uvw = np.array(np.meshgrid(rng, rng, rng, indexing="ij")).reshape(3, -1).T
    uvw = uvw[np.any(uvw != 0, axis=1)]
    return uvw[np.gcd.reduce(np.abs(uvw), axis=1) == 1]


def zone_axes(crystal, max_index: int) -> np.ndarray:
    """Unit vectors of the zone axes [u v w] (coprime, |u|, |v|, |w| <= ``max_index``) in the
    Laue group's fundamental sector, one per symmetry-equivalent set.

    >>> from edorient.structures import anatase
    >>> len(zone_axes(anatase(), 1))  # [001] [100] [110] [101] [111]
    5
    """
    d = coprime_indices(max_index) @ crystal.direct_matrix.T
    d = crystal.laue.reduce(d / np.linalg.norm(d, axis=1, keepdims=True))
    keep: list[np.ndarray] = []
    for v in d:
        if all(float(v @ k) < 1 - 1e-9 for k in keep):
            keep.append(v)
    return np.array(keep)


def sector_grid(laue, n_target: int) -> np.ndarray:
    """About ``n_target`` directions evenly spread over the Laue group's fundamental sector."""
    if n_target < 1:
        raise EdorientError(f"number of directions must be >= 1, got {n_target}")
    n_sphere = int(n_target) * len(laue.ops)
    k = np.arange(n_sphere) + 0.5
    z = 1 - 2 * k / n_sphere
    phi = np.pi * (1 + 5**0.5) * k
    pts = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], axis=1)
    inside = laue.in_sector(pts)
    return pts[inside]


def erase_spots(image01: np.ndarray, pixels: np.ndarray, radius_px: float, keep_centre: bool = True,
                fill: float | None = None) -> np.ndarray:
    """Set discs of ``radius_px`` around spot ``pixels`` (k, 2) (row, col) to the background.

    The direct beam (centre pixel) is kept when ``keep_centre`` (both grains share it, and the
    single-crystal model expects it). ``fill`` defaults to the image's median.
    """
    out = np.array(image01, dtype=np.float32, copy=True)
    h, w = out.shape
    fill = float(np.median(out)) if fill is None else float(fill)
    r0, c0 = cv.centre_pixel(h, w)
    mask = np.zeros_like(out, dtype=bool)
    for r, c in np.asarray(pixels, dtype=float).reshape(-1, 2):
        if keep_centre and (r - r0) ** 2 + (c - c0) ** 2 < (2 * radius_px) ** 2:
            continue
        # the disc's pixels lie in its bounding box: tested there only (the whole image per spot
        # was 6 % of the dictionary chain's time)
        r_lo, r_hi = max(math.floor(r - radius_px), 0), min(math.ceil(r + radius_px) + 1, h)
        c_lo, c_hi = max(math.floor(c - radius_px), 0), min(math.ceil(c + radius_px) + 1, w)
        if r_lo < r_hi and c_lo < c_hi:
            rows = np.arange(r_lo, r_hi)[:, None]
            cols = np.arange(c_lo, c_hi)[None, :]
            mask[r_lo:r_hi, c_lo:c_hi] |= (rows - r) ** 2 + (cols - c) ** 2 <= radius_px**2
    out[mask] = fill
    return out


#: Gain applied to a model's linear intensity before the display transform in
#: :func:`model_image01`. The working image of a real or noisy pattern has its weak spots cut by
#: the noise floor and its strong ones normalised to a percentile (:mod:`~edorient.indexing.preprocess`),
#: so where the spots are matters more than how bright the kinematic model makes them; a gain of
#: 10 lifts the model's weak spots to the displayed level of the image's. Measured on 20 simulated
#: halo + noise patterns of the calibration seed (benchmarks/bench_verdict.py's): the best of the
#: refined hypotheses by this correlation had a median error of 0.21° with gain 10, 0.89° with 1.
MODEL_GAIN = 10.0


def model_image01(simulator: Simulator, rotation: np.ndarray, centre_px=(0.0, 0.0), scale: float = 1.0,
                  gain: float = MODEL_GAIN) -> np.ndarray:
    """The display image of ``simulator``'s pattern of ``rotation`` without the direct beam, with
    its centre moved by ``centre_px`` (rows, cols) and the calibration multiplied by ``scale``
    (the frame of :class:`~edorient.indexing.refine.Refiner`'s nuisance parameters): one
    orientation of :func:`model_images01`."""
    return model_images01(simulator, np.asarray(rotation, dtype=float)[None], centre_px, scale, gain)[0]


def model_images01(simulator: Simulator, rotations: np.ndarray, centre_px=(0.0, 0.0), scale=1.0,
                   gain: float = MODEL_GAIN) -> np.ndarray:
    """:func:`model_image01` of many (n, 3, 3) ``rotations`` in one pass: (n, H, W) float32
    (:func:`model_linear_images` times ``gain``, display-transformed in place)."""
    from edorient.render import display_transform

    out = model_linear_images(simulator, rotations, centre_px, scale)
    out *= np.float32(gain)
    return display_transform(out, out=out)


def model_linear_images(simulator: Simulator, rotations: np.ndarray, centre_px=(0.0, 0.0), scale=1.0) -> np.ndarray:
    """Linear-intensity patterns (n, H, W) float32 of (n, 3, 3) ``rotations`` without the direct
    beam, centre moved by ``centre_px`` ((2,) or (n, 2)) and calibration times ``scale`` (a number
    or (n,)). The spots of all orientations come from one
    :meth:`~edorient.render.Simulator.spots_batch` and are drawn by one compiled kernel call; the
    scale is folded into the spot positions (the same pixels as drawing at the scaled calibration)."""
    from edorient.render import _render_batch

    R = np.asarray(rotations, dtype=float).reshape(-1, 3, 3)
    n = len(R)
    cfg = simulator.config
    cal = cfg.resolved_calibration
    orient, _, pos, _, intensity = (np.array(a) for a in simulator.spots_batch(R))
    cen = np.broadcast_to(np.asarray(centre_px, dtype=float), (n, 2))
    k = np.broadcast_to(np.asarray(scale, dtype=float), (n,))
    pos = pos / k[orient, None] + np.stack([cen[orient, 1] * cal, -cen[orient, 0] * cal], axis=1)
    return _render_batch(orient, pos, intensity, n, cfg.image_size, cal, cfg.spot_sigma_px, 0.0)


def image_correlations(image01: np.ndarray, models01: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of ``image01`` with each of (n, H, W) ``models01`` over the ``valid``
    pixels (all when None): (n,) (:func:`masked_correlations`: float64 sums in one compiled pass
    a model; before, centred float64 copies of every model: 7.6 against 0.54 ms for 40 sparse
    128 x 128 models on one thread, the same correlations to float32 rounding, ~1e-7).

    Unlike the refinement's objective, which samples the image only where the model puts spots,
    this sees every pixel: a spot of the image that the model does not predict costs as much as
    a predicted spot that the image lacks.
    """
    y = np.asarray(image01).reshape(1, -1)
    models01 = np.asarray(models01)
    v = np.ones(y.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(1, -1)
    return masked_correlations(y, models01.reshape(1, len(models01), -1), v)[0]


def masked_correlations(y: np.ndarray, models: np.ndarray, valid: np.ndarray,
                         owner: np.ndarray | None = None) -> np.ndarray:
    """(n, w) Pearson correlation of each image (n, p) with its models (n, w, p) over that image's
    ``valid`` pixels (n, p) (:func:`image_correlations` of many images
    at once; 0 where either side is flat). With ``owner`` (n,), images and valid hold each
    distinct image once (u, p) and ``owner[r]`` is the image of models ``r``.

    From sums over the valid pixels (the image's and its square's; each model's, its square's,
    its product with the image), in float64 in one compiled pass a model
    (:func:`edorient.indexing._kernels.masked_sums`), not from centred float64 copies of every
    model (session 16: 3.5x faster, the same correlations to 2e-7) nor from masked float32 copies
    and a float32 matrix product (session 17: 3-5x faster again; every pattern of a map and every
    hypothesis of its chain is fitted so)."""
    from edorient._utils.jit import kernel_array
    from edorient.indexing._kernels import masked_sums

    models = kernel_array(models, np.float32)
    owner = np.arange(len(models)) if owner is None else owner
    sm, smm, smy, sy, syy, nv = masked_sums(kernel_array(y, np.float32), kernel_array(valid, bool),
                                            kernel_array(owner, np.int64), models)
    sy, syy, nv = sy[owner], syy[owner], np.maximum(nv[owner], 1.0)
    vy = np.maximum(syy - sy * sy / nv, 0.0)
    vm = np.maximum(smm - sm * sm / nv, 0.0)
    cov = smy - sm * sy / nv
    den = np.sqrt(vm * vy)
    return np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0)


def image_correlation(image01: np.ndarray, model01: np.ndarray, valid: np.ndarray | None = None) -> float:
    """:func:`image_correlations` of one model (0 where either image is flat)."""
    return float(image_correlations(image01, np.asarray(model01)[None], valid)[0])


def _unit_models(simulator: Simulator, R0: np.ndarray, centre_px, scale: float, valid: np.ndarray | None):
    """``X -> m̂(X)``: for (m, 6) fit parameters (lab rotation vector of ``R0`` in degrees, centre
    offset in pixels, log scale) the model images over the valid pixels, each centred and of unit
    norm, (m, pixels), so that the correlation with a likewise normalised image ``ŷ`` is
    ``m̂ @ ŷ``; all m drawn in one batch (:func:`model_images01`)."""
    from scipy.spatial.transform import Rotation

    def models(X):
        X = np.atleast_2d(X)
        R = Rotation.from_rotvec(np.radians(X[:, :3])).as_matrix() @ R0
        cen = np.asarray(centre_px, dtype=float)[None] + X[:, 3:5]
        M = model_images01(simulator, R, cen, scale * np.exp(X[:, 5])).reshape(len(X), -1)
        return _unit_rows(M[:, valid.ravel()] if valid is not None else M)

    return models


def _unit_rows(M: np.ndarray) -> np.ndarray:
    """Each row of (m, p) ``M`` centred and of unit norm (float64; a flat row stays 0)."""
    M = np.array(M, dtype=np.float64)
    M -= M.mean(axis=1, keepdims=True)
    n = np.sqrt(np.einsum("ij,ij->i", M, M))[:, None]
    return M / np.where(n > 0, n, 1.0)


def _unit_image(image01: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The valid pixels of ``image01`` (all when None), centred and of unit norm."""
    y = np.asarray(image01)
    return _unit_rows((y[valid] if valid is not None else y.ravel())[None])[0]


#: Finite-difference steps of the six fit parameters (degrees, degrees, degrees, pixels, pixels,
#: log scale): a tenth of a spot width in the outer pattern, well above float32 rounding.
_FIT_STEPS = np.array([0.05, 0.05, 0.05, 0.1, 0.1, 0.002])


def tilt_grid(rotation: np.ndarray, radius_deg: float, step_deg: float, inner_deg: float | None = None) -> list:
    """``rotation`` tilted about the lab x and y axes on a square grid of ``step_deg`` within
    ``radius_deg`` and beyond ``inner_deg`` (the untilted rotation included when None)."""
    from scipy.spatial.transform import Rotation

    n = int(np.floor(radius_deg / step_deg))
    t = np.arange(-n, n + 1) * step_deg
    tx, ty = np.meshgrid(t, t, indexing="ij")
    r2 = tx**2 + ty**2
    ok = r2 <= radius_deg**2 + 1e-9
    if inner_deg is not None:
        ok &= r2 > inner_deg**2
    rv = np.radians(np.stack([tx[ok], ty[ok], np.zeros(int(ok.sum()))], axis=1))
    return list(Rotation.from_rotvec(rv).as_matrix() @ np.asarray(rotation, dtype=float))


def polish_fit(simulator: Simulator, image01: np.ndarray, rotation: np.ndarray, centre_px=(0.0, 0.0),
               scale: float = 1.0, valid: np.ndarray | None = None, max_iterations: int = 12,
               search_deg: float = 0.0, search_step_deg: float = 0.5):
    """Maximise :func:`image_correlation` of :func:`model_image01` with ``image01`` over a small
    lab rotation of ``rotation`` (tilts and in-plane angle), the centre offset and the scale.

    Levenberg-Marquardt on the unit-norm residual ``ŷ - m̂(x)`` (``|ŷ - m̂|² = 2 - 2 corr``), its
    Jacobian by forward differences (7 model images an iteration); with ``search_deg`` > 0 from the
    best beam tilt on a grid of that radius first. It replaced a Nelder-Mead simplex (about 220
    model images a polish, one at a time, against 30-60 in batches of 6 here): on the first 40
    patterns of the verdict benchmark's calibration seed the median error was 0.042° against
    0.041°, the answers a median 0.007° apart, and a pattern took 0.65 s instead of 0.92 s.
    Returns (correlation, rotation, centre_px, scale).
    """
    from scipy.spatial.transform import Rotation

    R0 = np.asarray(rotation, dtype=float)
    if search_deg > 0:
        trial = np.stack(tilt_grid(R0, search_deg, search_step_deg))
        f = image_correlations(image01, model_images01(simulator, trial, centre_px, scale), valid)
        R0 = trial[int(np.argmax(f))]
    y = _unit_image(image01, valid)
    models = _unit_models(simulator, R0, centre_px, scale, valid)
    x = np.zeros(6)
    m = models(x)[0]
    f = float(y @ m)
    lam = 1e-3
    for _ in range(max_iterations):
        J = ((models(x + _FIT_STEPS[:, None] * np.eye(6)) - m) / _FIT_STEPS[:, None]).T
        A, g = J.T @ J, J.T @ (y - m)
        d = np.sqrt(np.maximum(np.diag(A), 1e-18))  # scale-free damping on the normalised system
        improved = False
        for _ in range(4):
            try:
                dx = np.linalg.solve(A + lam * np.diag(d * d), g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            m_new = models(x + dx)[0]
            f_new = float(y @ m_new)
            if f_new > f:
                x, m, gain, f = x + dx, m_new, f_new - f, f_new
                lam = max(lam / 10.0, 1e-6)
                improved = True
                break
            lam *= 10.0
        if not improved or (gain < 1e-6 and np.all(np.abs(dx) < _FIT_STEPS)):
            break
    R = Rotation.from_rotvec(np.radians(x[:3])).as_matrix() @ R0
    return f, R, np.array([centre_px[0] + x[3], centre_px[1] + x[4]], dtype=float), float(scale * np.exp(x[5]))


def fit_uncertainty(simulator: Simulator, image01: np.ndarray, rotation: np.ndarray, centre_px=(0.0, 0.0),
                    scale: float = 1.0, valid: np.ndarray | None = None) -> tuple[float, float]:
    """One-sigma uncertainty (degrees) of the beam direction and of the in-plane angle at an
    optimum of :func:`polish_fit`, before any calibration factor.

    Gauss-Newton on the whole-image residual ``ŷ - c m̂`` (both centred and normalised over the
    valid pixels): ``C = σ² (JᵀJ)⁻¹`` with ``J = c ∂m̂/∂θ`` by central differences over the six
    parameters (lab tilts, in-plane angle, centre, log scale) and ``σ²`` the residual variance,
    marginalised over the nuisance parameters. Neighbouring pixels share a spot, so the pixels
    are not independent: the caller scales the result by a factor measured on simulated patterns
    (:data:`edorient.indexing.pipeline.FIT_UNCERTAINTY_SCALE`).
    """
    y = _unit_image(image01, valid)
    models = _unit_models(simulator, np.asarray(rotation, dtype=float), centre_px, scale, valid)
    m0 = models(np.zeros(6))[0]
    c = float(y @ m0)
    E = _FIT_STEPS[:, None] * np.eye(6)
    J = (c * (models(E) - models(-E)) / (2 * _FIT_STEPS[:, None])).T
    res = y - c * m0
    sigma2 = float(res @ res) / max(len(y) - 6, 1)
    try:
        cov = sigma2 * np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return float("inf"), float("inf")
    return float(np.sqrt(max(cov[0, 0] + cov[1, 1], 0.0))), float(np.sqrt(max(cov[2, 2], 0.0)))
