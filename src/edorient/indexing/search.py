"""Orientation search on a real pattern: calibration scale, effective thickness, runner-ups.

A microscope's calibration is known to a few per cent at best (camera length, lens hysteresis,
a published scale bar 11 % off), and a kinematic simulator's relrod width (the thickness of the
shape factor) stands in for what a real pattern's spot extent depends on (thickness, beam
convergence, precession, bending). Both are fitted here, not assumed:

1. the working frame is a ``size`` image whose calibration puts the pattern's data radius at
   its edge at the given calibration (scale 1), or ``max_g`` there where the field reaches
   further: the whole field the file holds is matched where the calibration is right. (Before,
   the edge sat at the smallest scale tried, so that no template spot fell where the file has
   no data; at scale 1 that cut the outer 15 % of the field's radius, 28 % of its area, where
   the discriminating high-index spots are: ``edorient predict --grains 2`` on simulated files
   had both grains < 2° in 239-242 of 300 then, 264 now; docs/results.md "Session 23");
2. the calibration scale ``s`` (file calibration = given x ``s``) is searched over
   ``1 ± tolerance`` by resampling the *image* (the cached dictionary stays the same): the
   score of the best template at each scale, refined by a parabola through the best three;
3. at the best scale the best distinct candidates are refined on shrinking rings of directions
   (:meth:`TemplateMatcher.match_all`); the best is refined again with each other effective
   thickness, and the thickness whose refined score is highest is kept (fitted jointly with the
   orientation: scoring fixed directions would favour thin crystals);
4. the candidates, best first and distinct (more than ``distinct_deg`` apart modulo the Laue
   group), are the runner-ups of the verdict (:mod:`edorient.indexing.verdict`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from edorient import conventions as cv
from edorient.errors import EdorientError
from edorient.indexing.matching import PatternScorer, TemplateMatcher, refine_on_rings
from edorient.render import SimulationConfig, Simulator, display_transform


@dataclass(frozen=True)
class SearchConfig:
    """Settings of :class:`PatternSearch`."""

    size: int = 150
    """Working image side (pixels). 150: the sampling of a 128 px frame whose edge sat at the
    smallest scale of the default ±15 % (128 / 0.85), now holding the whole field at scale 1."""
    max_g: float = 1.4
    """The working frame holds the pattern's field up to this |g| (1/Å; d = 0.71 Å) at the given
    calibration, however far the file reaches. Beyond it a real pattern departs from the
    kinematic spot model faster than its spots add information: the excitation error of a spot,
    λg²/2 (0.025 1/Å at 1.4 1/Å and 200 kV), outgrows the relrod's width (1/t = 0.02 1/Å at 50 Å),
    so its intensity hangs on a tilt, a bend or a thickness the model does not know, and lens
    distortion grows with the radius. Measured on the development case cuni_110 (a ±1.64 1/Å
    field; the only one that reaches past 1.3): 0.05 / 0.07 / 0.62 / 0.62-1.16° off its zone
    with the frame holding 1.3 / 1.4 / 1.5 / 1.64 1/Å (calibration given and 10 % off); the
    simulated files (±1.2) are not touched."""
    n_directions: int = 400
    """Dictionary directions over the Laue sector (each in both mirror families)."""
    zone_max_index: int = 3
    """Exact zone axes [u v w] with indices up to this are always in the dictionary."""
    scale_tolerance: float = 0.15
    """Calibration scales searched: 1 ± this."""
    scale_step: float = 0.025
    """Step of the scale grid (refined by a parabola)."""
    thickness: float = 50.0
    """Effective thickness (Å) of the dictionary's shape factor."""
    thicknesses: tuple[float, ...] = (30.0, 50.0, 80.0)
    """Effective thicknesses tried on the best candidate. Measured: a grid reaching down to
    15 Å picked the thinnest on kinematic 50 Å patterns too (broad relrods forgive a wrong
    direction: median 1.0° instead of 0.6° on 8 simulated patterns with a ±1.2 Å⁻¹ field), while
    30-80 Å kept every real development case within 0.55° of its zone."""
    voltage_kv: float = cv.DEFAULT_VOLTAGE_KV
    distinct_deg: float = 5.0
    """Candidates closer than this (modulo the Laue group) are one solution."""
    candidates: int = 4
    """Distinct solutions kept (the best and its runner-ups)."""
    single_directions: int = 1600
    """One grain: directions of the dictionary of the one-grain chain whose answer joins the
    refinement's hypotheses (:data:`edorient.indexing.pipeline.SINGLE_CHAIN`); built once per
    working frame (~8 s) and cached on disk like the others (~75 MB)."""
    pair_directions: int = 6400
    """Two grains (``edorient predict --grains 2``): directions of the bicrystal chain's
    dictionary (:func:`edorient.indexing.pipeline._refine_pair`). The accuracy benchmark's: 300
    noisy bicrystals each of tuning seeds 4040 / 4041, both grains < 2°, 800 directions 84.3 /
    82.3 %, 3,200 91.7 / 90.0 %, 6,400 90.7 / 93.0 % (before the later passes; docs/results.md).
    Built once per working frame (~25 s for 6,400 on one core) and cached on disk (~0.3 GB: only
    the angular frequencies its proposals read, :data:`~edorient.indexing.estimators.DICTIONARY_MAX_FREQUENCY`)."""
    cache: bool = True
    """Load / store the dictionary in the on-disk cache (:mod:`edorient.indexing.dictionary`)."""


@dataclass
class Candidate:
    """One solution: an orientation and the score of its pattern against the image."""

    rotation: np.ndarray
    label: np.ndarray
    score: float


@dataclass
class SearchResult:
    """What :meth:`PatternSearch.search` found."""

    candidates: list[Candidate]
    """Distinct solutions, best first."""
    image01: np.ndarray
    """The working display image at the best scale (size x size, [0, 1])."""
    simulator: Simulator
    """The simulator of the working frame at the best thickness (calibration included)."""
    scale: float
    """Fitted calibration scale: true file calibration / given."""
    thickness: float
    scale_grid: np.ndarray = field(repr=False, default=None)
    scale_scores: np.ndarray = field(repr=False, default=None)
    zone_scale_scores: np.ndarray | None = field(repr=False, default=None)
    """The best score of the exact zone axes alone at each scale (:meth:`PatternSearch._scale_scores`)."""
    timings: dict = field(default_factory=dict)
    dictionary: dict = field(default_factory=dict)


def spot_sigma(pre) -> float | None:
    """The Gaussian sigma (file pixels) of the preprocessed pattern's spots
    (:func:`~edorient.indexing.spots.spot_fwhm` of its brightest, measured once and kept in its
    steps as ``spot_fwhm_px``, so reported); None where too few spots to measure."""
    if "spot_fwhm_px" not in pre.steps:
        from edorient.indexing.spots import spot_fwhm

        fwhm = spot_fwhm(pre.image)
        pre.steps["spot_fwhm_px"] = None if fwhm is None else round(float(fwhm), 3)
    fwhm = pre.steps["spot_fwhm_px"]
    return None if fwhm is None else fwhm / (2 * np.sqrt(2 * np.log(2)))


#: From this shrink (file pixels per working pixel) on, the working frame's linear image loses
#: the median of each of its rings (:func:`without_ground`). The file's noise floor is set by the
#: whole frame's noise; under a halo of counts the noise near the beam is higher, some of it
#: passes, and where a working pixel averages tens of file pixels what passed adds up into a
#: smooth bright ground that the spots, diluted as much, sink into. Measured
#: (docs/results.md, session 31; ``benchmarks/bench_detector_size.py`` and its bicrystals): at 1024
#: and 2048 px (7.2x) two grains both < 2° 4 -> 8 of 8 each, one grain 8 of 8 within 1° as before
#: with the largest error 0.63 -> 0.07° (1024 px) and 0.66 -> 0.36° (4096 px); at 512 px (3.6x)
#: the bicrystals went 8 -> 7 of 8, so frames shrunk less keep their image as it was. The scale
#: scan's view (:meth:`PatternSearch._scan_grid`) keeps its ground: removed there too, 8 other
#: bicrystals went 8 -> 7 of 8 at 1024 px and 7 -> 6 at 2048.
GROUND_SHRINK = 5.0


def without_ground(x: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """``x`` (a working frame's linear intensity) less the median of each one-pixel ring around
    ``centre`` (smoothed over three rings, :func:`~edorient.indexing.preprocess.radial_background`),
    clipped at 0. Where most of a ring is dark, as on any pattern whose noise the floor removed,
    that median is 0 and nothing changes.

    >>> x = np.zeros((41, 41), np.float32); x += 0.02; x[20, 30] = 1.0  # a ground and one spot
    >>> y = without_ground(x, (20.0, 20.0))
    >>> float(y[5, 5]), round(float(y[20, 30]), 2)
    (0.0, 0.98)
    """
    from edorient.indexing.preprocess import radial_background

    x = np.asarray(x)
    ground = radial_background(x.astype(np.float64), centre, np.ones(x.shape, dtype=bool))
    return np.clip(x - ground.astype(x.dtype), 0, None)


def working_image(pre, calibration_in: float, size: int, calibration_out: float) -> np.ndarray:
    """The preprocessed pattern resampled onto a ``size`` frame around its centre, display-transformed.
    Shrunk, its spots are low-passed to the templates' width (:func:`~edorient.io.images.shrink_sigma`);
    shrunk :data:`GROUND_SHRINK` times or more, the ground left under them is removed (:func:`without_ground`)."""
    from edorient.io.images import LOWPASS_SHRINK, resample_to_model

    shrinking = calibration_out / calibration_in > LOWPASS_SHRINK  # (the spots' width is measured only then)
    x = resample_to_model(pre.image, pre.centre, calibration_in, size, calibration_out,
                          spot_sigma_px=spot_sigma(pre) if shrinking else None)
    if calibration_out / calibration_in >= GROUND_SHRINK:
        x = without_ground(x, tuple(float(v) for v in cv.centre_pixel(size)))
    return display_transform(np.clip(x, 0, None).astype(np.float32))


def to_file_pixels(pix: np.ndarray, size: int, centre: tuple[float, float], file_per_working: float) -> np.ndarray:
    """(k, 2) (row, col) positions in a ``size`` working frame -> the file's pixels, whose direct
    beam is at ``centre`` and which has ``file_per_working`` file pixels per working pixel."""
    r0, c0 = cv.centre_pixel(size)
    pix = np.asarray(pix, dtype=float).reshape(-1, 2)
    return np.stack([centre[0] + (pix[:, 0] - r0) * file_per_working, centre[1] + (pix[:, 1] - c0) * file_per_working], 1)


class PatternSearch:
    """Template search of a preprocessed pattern with a fitted scale and thickness.

    Parameters
    ----------
    crystal
        The crystal.
    calibration
        Å⁻¹ per pixel of the file (the starting value of the fitted scale).
    data_radius_px
        Radius (file pixels) the working frame must hold (:attr:`Preprocessed.data_radius_px`).
    config
        :class:`SearchConfig`.
    """

    def __init__(self, crystal, calibration: float, data_radius_px: float, config: SearchConfig = SearchConfig()) -> None:
        if not calibration > 0:
            raise EdorientError(f"calibration must be > 0 1/Å per pixel, got {calibration}")
        if not config.max_g > 0:
            raise EdorientError(f"the working frame's max_g must be > 0 1/Å, got {config.max_g}")
        self.crystal = crystal
        self.config = config
        self.calibration = float(calibration)
        lo = 1 - config.scale_tolerance
        n = int(round(2 * config.scale_tolerance / config.scale_step)) if config.scale_tolerance > 0 else 0
        self.scales = np.linspace(lo, 1 + config.scale_tolerance, n + 1) if n else np.array([1.0])
        calw = min(data_radius_px * self.calibration, config.max_g) / (config.size // 2 - 2)
        # on a 1 % grid, so that nearby calibrations and data radii share one cached dictionary
        self.working_calibration = float(np.exp(np.round(np.log(calw) / 0.01) * 0.01))
        self.sim_config = SimulationConfig(image_size=config.size, calibration=self.working_calibration,
                                           thickness=config.thickness, voltage_kv=config.voltage_kv,
                                           direct_beam=0.0)
        t = time.perf_counter()
        self.matcher = TemplateMatcher(Simulator(crystal, self.sim_config), n_directions=config.n_directions,
                                       zone_max_index=config.zone_max_index, cache=config.cache,
                                       top_k=config.candidates + 2)
        self.build_s = time.perf_counter() - t
        self._scorers = {config.thickness: self.matcher.scorer}

    def _scale_scores(self, pre) -> tuple[np.ndarray, np.ndarray | None]:
        """Best dictionary score at each scale of the grid: (over every third dictionary
        direction, over the exact zone axes alone; None without them).

        The polar image at scale ``s`` is sampled straight from the file's pixels (radii
        ``r_work * working calibration / (calibration * s)``), once smoothed, instead of
        resampling a working image per scale, and compared with every third dictionary
        direction only: the ranking of scales is what matters here. Two thirds of the exact
        zone axes are not among them (anatase [0 0 1] and [1 1 0]), and a pattern on one matches
        it far better than the grid's directions a few degrees off: scanned alone, the zones
        give a scale of their own to try (:meth:`alternative_scales`).
        """
        from scipy import ndimage

        from edorient._filter_kernels import gaussian_filter
        from edorient.io.images import LOWPASS_SHRINK, shrink_sigma

        grid = self.matcher.scorer.grid
        ratio = self.working_calibration / self.calibration  # file pixels per working pixel at s = 1
        lowpass = shrink_sigma(ratio, spot_sigma(pre) if ratio > LOWPASS_SHRINK else None)  # (working_image's)
        if lowpass > 0:
            # shrunk, the working image is the file low-passed in linear intensity, sampled, then
            # display-transformed: so here, on a grid of half a working pixel wide enough for the
            # smallest scale, which every scale's polar image is read from. Transformed first
            # and blurred at the file's pixels, the noise that passes the floor of a large frame's
            # brighter halo (1.4 % of a 1024 px frame's pixels, each amplified by the logarithm to
            # half a spot's level) outweighed the sharp spots and the scores came out flat (0.31-0.33
            # at every scale: 3 of 4 noise draws of one orientation at 1024 px 23-37° off), and
            # the two whole-frame blurs took 7 s of a 4096 px call (docs/results.md, session 30)
            sm, centre, per_px = self._scan_grid(pre, ratio, lowpass)
        else:  # (the file's pixels, as a working image samples them)
            disp = display_transform(np.clip(pre.image, 0, None).astype(np.float32))
            sm = gaussian_filter(disp.astype(np.float64), grid.smooth_px * ratio)  # (scipy.ndimage's bits, compiled)
            centre, per_px = pre.centre, ratio
        phi = grid.phi
        out = np.empty(len(self.scales))
        zones = np.empty(len(self.scales)) if len(self.matcher.zone_index) else None
        for i, s in enumerate(self.scales):
            rr = grid.radii[:, None] * (per_px / s)
            coords = np.stack([centre[0] - rr * np.sin(phi), centre[1] + rr * np.cos(phi)])
            polar = grid.normalise(ndimage.map_coordinates(sm, coords, order=1, cval=0.0))
            out[i] = self.matcher.polar_correlations(polar, subset="coarse").max()
            if zones is not None:
                zones[i] = self.matcher.polar_correlations(polar, subset="zones").max()
        return out, zones

    #: :meth:`_scan_grid`: its pixels per working pixel.
    SCAN_GRID_FINE = 2

    def _scan_grid(self, pre, ratio: float, lowpass: float) -> tuple[np.ndarray, tuple[float, float], float]:
        """(the shrunk file as working images see it, smoothed as the dictionary's polar images
        are, on a grid of 1 / :data:`SCAN_GRID_FINE` working pixels around the direct beam; the
        beam's position on it; its pixels per working pixel at scale 1): low-passed by ``lowpass``
        file pixels where the grid reads it (:func:`~edorient._prep_kernels.blurred_bilinear_grid`),
        display-transformed, smoothed by the polar grid's ``smooth_px``."""
        from edorient import conventions as cv
        from edorient._filter_kernels import gaussian_filter
        from edorient.io.images import resample_lowpassed

        grid = self.matcher.scorer.grid
        f = self.SCAN_GRID_FINE
        reach = float(grid.radii.max()) * f / float(self.scales.min()) + 4 * grid.smooth_px * f + 2
        m = 2 * int(np.ceil(reach)) + 1
        lin = resample_lowpassed(np.clip(pre.image, 0, None), pre.centre, self.calibration, m,
                                 self.working_calibration / f, lowpass)
        sm = gaussian_filter(display_transform(lin).astype(np.float64), grid.smooth_px * f)
        return sm, tuple(float(v) for v in cv.centre_pixel(m)), float(f)

    def _peak_scale(self, best: np.ndarray, k: int) -> float:
        """The scale of grid point ``k`` of the scale scores ``best``, moved to the vertex of the
        parabola through it and its neighbours where it is a maximum between them."""
        scale = float(self.scales[k])
        if 0 < k < len(best) - 1:  # parabola through the best three
            y0, y1, y2 = best[k - 1 : k + 2]
            den = y0 - 2 * y1 + y2
            if den < 0:
                scale += 0.5 * (y0 - y2) / den * float(self.scales[1] - self.scales[0])
        return scale

    def alternative_scales(self, res: SearchResult, n: int = 1, apart: int = 2) -> list[float]:
        """Up to ``n`` other calibration scales worth a search of their own: the highest local
        maxima of ``res``'s scale scores at least ``apart`` grid steps from the chosen scale's
        grid point (each moved to its parabola's vertex), best first.

        A sparse pattern matches the dictionary at several scales (a zone's spots can sit on
        another zone's rings at another scale), and the best by the dictionary's score is not
        always the right one: the whole-image fit of each scale's refined answer decides
        (:func:`edorient.indexing.pipeline.index_pattern`).
        """
        b = np.asarray(res.scale_scores, dtype=float)
        if n <= 0 or len(b) < 2:
            return []
        k0 = int(np.argmin(np.abs(self.scales - res.scale)))
        # (a plateau counts once, at its first point; an end of the grid when above its neighbour)
        peaks = [j for j in range(len(b)) if abs(j - k0) >= apart
                 and (b[j] > b[j - 1] if j > 0 else b[0] > b[1])
                 and (j == len(b) - 1 or b[j] >= b[j + 1])]
        out = [self._peak_scale(b, j) for j in sorted(peaks, key=lambda j: -b[j])[:n]]
        z = None if res.zone_scale_scores is None else np.asarray(res.zone_scale_scores, dtype=float)
        kz = None if z is None or len(z) != len(b) else int(np.argmax(z))
        if kz is not None and z[kz] > b[kz]:
            # at the zones' best scale an exact zone axis fits better than any direction of the
            # scan: that scale is tried too, where no other try lies within ``apart`` steps of it.
            # (Until session 32 only where the zone beat the scan's best at any scale: a pattern of
            # anatase [0 0 1] whose intensities dynamical scattering had moved scanned 0.84 at 1.13,
            # [5 3 1] there, and its zone 0.79 at 1.00, never tried; bench_dynamical.py.)
            taken = [k0] + [int(np.argmin(np.abs(self.scales - s))) for s in out]
            if all(abs(kz - k) >= apart for k in taken):
                out.append(self._peak_scale(z, kz))
        return out

    def _scorer(self, thickness: float) -> PatternScorer:
        """The working frame's scorer at an effective ``thickness`` (built once per searcher)."""
        if thickness not in self._scorers:
            self._scorers[thickness] = PatternScorer(Simulator(self.crystal, replace(self.sim_config, thickness=thickness)))
        return self._scorers[thickness]

    def search(self, pre, scale: float | None = None, scale_scores: np.ndarray | None = None,
               thickness: float | None = None, zone_scale_scores: np.ndarray | None = None) -> SearchResult:
        """Search the preprocessed pattern ``pre`` (:class:`~edorient.indexing.preprocess.Preprocessed`)
        at the best calibration scale of the grid, or at ``scale``; ``scale_scores``: those of an
        earlier search of the same pattern (reported, not computed again); ``thickness``: the
        effective thickness of the candidates' ring refinement (None: fitted, the best of
        ``config.thicknesses`` on the best candidate)."""
        cfg = self.config
        t0 = time.perf_counter()
        if scale_scores is None:
            best, zone_best = self._scale_scores(pre)
        else:
            best, zone_best = np.asarray(scale_scores, dtype=float), zone_scale_scores
        if scale is None:
            scale = self._peak_scale(best, int(np.argmax(best)))
        elif not np.isfinite(scale) or scale <= 0:
            raise EdorientError(f"a calibration scale must be a positive number, got {scale}")
        scale = float(scale)
        t1 = time.perf_counter()
        img = working_image(pre, self.calibration * scale, cfg.size, self.working_calibration)
        found = self.matcher.match_all(img, separation_deg=cfg.distinct_deg)
        t2 = time.perf_counter()
        # the effective thickness, fitted jointly with the orientation: the best candidate is
        # refined on rings with each thickness and the best refined score wins (scoring fixed
        # directions instead favours thin crystals, whose broad relrods forgive a wrong direction)
        best_t, best_score = cfg.thickness, found[0][2]
        start = np.array([found[0][1][2]])
        for th in cfg.thicknesses if thickness is None else ():
            if th == cfg.thickness:
                continue
            score = refine_on_rings(self._scorer(th), img, start, start_step=1.0, families=2)[0][2]
            if score > best_score:
                best_t, best_score = th, score
        best_t = best_t if thickness is None else float(thickness)
        if best_t != cfg.thickness:
            found = refine_on_rings(self._scorer(best_t), img, np.array([f[1][2] for f in found]),
                                    start_step=1.0, families=2)
        t3 = time.perf_counter()
        laue = self.crystal.laue
        cands: list[Candidate] = []
        for label, R, sc in sorted(found, key=lambda f: -f[2]):
            if all(float(laue.angle(label[None], c.label[None])[0]) > cfg.distinct_deg for c in cands):
                cands.append(Candidate(np.asarray(R), np.asarray(label), float(sc)))
            if len(cands) == cfg.candidates:
                break
        return SearchResult(cands, img, self._scorer(best_t).simulator, scale, float(best_t), self.scales, best,
                            zone_scale_scores=zone_best,
                            timings={"dictionary_s": round(self.build_s, 3), "scale_search_s": round(t1 - t0, 3),
                                     "match_s": round(t2 - t1, 3), "thickness_s": round(t3 - t2, 3)},
                            dictionary={"cached": bool(self.matcher.cache_hit),
                                        "file": None if self.matcher.cache_file is None else str(self.matcher.cache_file),
                                        "entries": int(len(self.matcher.directions))})
