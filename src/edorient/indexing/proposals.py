"""Orientation hypotheses for :class:`~edorient.indexing.refine.Refiner` from the coarse estimators.

A coarse estimate leaves two near-symmetries of a kinematic pattern open, and the refinement
cannot cross either by itself (they are not small rotations):

- the **half turn about the beam** ``Rz(180°) R``: the zero-order Laue zone is centrosymmetric
  (Friedel's law), so near a zone axis ``R`` and ``Rz(180°) R`` give almost the same pattern; the
  refinement from the wrong one ends at the zone axis tilted the other way (same label, but a
  beam direction off by twice the tilt from the zone axis);
- the **mirror family**: the orientations with beam direction ``d`` and ``-d`` (one label, mirror
  image patterns, see :meth:`~edorient.physics.symmetry.LaueGroup.reduce_proper`); near a mirror
  plane of the crystal the two are alike.

So every grain gets up to four starts: the estimate, its half turn, and the best orientation of
the other family (by :class:`~edorient.indexing.matching.PatternScorer`) with its half turn.
For bicrystals the hypotheses are the combinations of both grains' starts.
"""

from __future__ import annotations

import itertools

import numpy as np

import torch

from edorient.errors import EdorientError
from edorient.indexing._kernels import entry_products, greedy_groups, product_rows, squared_norms, weighted_moduli
from edorient.indexing.matching import PatternScorer, TemplateMatcher, masked_correlations
from edorient.physics.orientation import rz

__all__ = ["DictionaryProposals", "bicrystal_hypotheses", "dictionary_partner_hypotheses", "distinct_best",
           "erase_grain", "explained_peaks", "grain_starts", "half_turn", "image_peaks", "pair_partner_hypotheses", "pairs_with",
           "partner_candidates", "partner_hypotheses", "ranked_by_image_fit", "refine_bicrystals", "refine_partners", "refine_sequential", "single_hypotheses", "spot_pair_indexer", "subtract_grain",
           "with_half_turns"]

_RZ180 = rz(180.0)


def half_turn(R: np.ndarray) -> np.ndarray:
    """``Rz(180°) R``: the same beam direction, the pattern turned by a half turn."""
    return _RZ180 @ np.asarray(R, dtype=float)


def grain_starts(scorer: PatternScorer, image01: np.ndarray, R: np.ndarray, flips: bool = True,
                 families: bool = True) -> np.ndarray:
    """Starts for one grain of estimate ``R`` (3, 3): ``R``, then (``families``) the best
    orientation of the other family, then (``flips``) the half turns of those: (h, 3, 3)."""
    R = np.asarray(R, dtype=float)
    out = [R]
    if families:
        d = R[2]
        _, rot = scorer.score(image01, -d[None], both_families=False)
        out.append(rot[0])
    if flips:
        out += [half_turn(r) for r in out]
    return np.stack(out)


def single_hypotheses(matcher: TemplateMatcher, images01: np.ndarray, flips: bool = True,
                      families: bool = True) -> np.ndarray:
    """Hypotheses (n, h, 1, 3, 3) for single-crystal images (n, H, W) from template matching."""
    images01 = np.asarray(images01, dtype=np.float32)
    out = []
    for im in images01:
        _, R, _ = matcher.match(im)
        out.append(grain_starts(matcher.scorer, im, R, flips, families))
    return np.stack(out)[:, :, None]


def bicrystal_hypotheses(matcher: TemplateMatcher, images01: np.ndarray, flips: bool = True,
                         families: bool = False, erase_radius_px: float | None = None) -> np.ndarray:
    """Hypotheses (n, h, 2, 3, 3) for bicrystal images (n, H, W).

    Grain A: template matching on the image. Grain B: Method 2's stage 2
    (:func:`edorient.indexing.method2.stage2`) -- A's spots erased, template matching on what is
    left, whose orientation (not only its direction) is kept. Each grain gets
    :func:`grain_starts`; the hypotheses are all their combinations (A's estimate first).
    """
    from edorient.indexing.method2 import stage2

    images01 = np.asarray(images01, dtype=np.float32)
    sim = matcher.scorer.simulator
    kept: dict[str, np.ndarray] = {}

    def estimator(erased: np.ndarray) -> np.ndarray:  # template matching that keeps its orientation
        d, R, _ = matcher.match(erased)
        kept["R"] = R
        return d

    out = []
    for im in images01:
        dA, RA, _ = matcher.match(im)
        st = stage2(im, dA, sim, estimator, scorer=matcher.scorer, erase_radius_px=erase_radius_px)
        RB = kept["R"]
        a = grain_starts(matcher.scorer, im, RA, flips, families)
        b = grain_starts(matcher.scorer, st.erased, RB, flips, families)
        out.append(np.stack([np.stack([ra, rb]) for ra, rb in itertools.product(a, b)]))
    return np.stack(out)


def _spot_pixels(refiner, rotations: np.ndarray, centre_px: np.ndarray, scale: float,
                 dtype=torch.float64) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (K, N, 2) rows, cols; peak intensities (K, N)) of every possible spot of the
    refiner's model for orientations (K, 3, 3) in its working image, at the centre offset
    ``centre_px`` (2,) and calibration ``scale``."""
    from edorient import conventions as cv

    pos, _, inten = (t.to(dtype).cpu().numpy() for t in refiner.model.spots(rotations))
    cal = refiner.config.resolved_calibration * scale
    r0, c0 = cv.centre_pixel(refiner.config.image_size)
    return np.stack([r0 + centre_px[0] - pos[..., 1] / cal, c0 + centre_px[1] + pos[..., 0] / cal], axis=-1), inten


def _grain_pixels(refiner, result, i: int, g: int, min_intensity: float) -> np.ndarray:
    """(k, 2) pixels (rows, cols) of grain g's refined spots in image i, with the refined centre
    offset and calibration, for the spots at least ``min_intensity`` bright (weighted)."""
    pix, inten = _spot_pixels(refiner, result.rotations[i, g][None], result.centre_px[i], result.calibration_scale[i])
    w = result.ratio[i] if g == 0 else 1.0 - result.ratio[i]
    keep = inten[0] * (w if result.rotations.shape[1] == 2 else 1.0) >= min_intensity
    return pix[0, keep]


def partner_hypotheses(refiner, matcher: TemplateMatcher, images01: np.ndarray, res, min_intensity: float = 5e-4,
                       erase_radius_px: float | None = None) -> np.ndarray:
    """(n, 6, 2, 3, 3) hypotheses of :func:`refine_bicrystals`' further passes from a refined
    bicrystal ``res`` of ``images01``: the best pair, the best distinct competitor, and each
    refined grain paired with the template match (and its half turn) of the image with that
    grain's refined spots erased."""
    from edorient.indexing.matching import erase_spots

    radius = 2.5 * refiner.config.spot_sigma_px if erase_radius_px is None else erase_radius_px
    new = []
    for i, im in enumerate(np.asarray(images01, dtype=np.float32)):
        best = res.rotations[i]
        order = np.argsort(-res.hypothesis_scores[i])
        second = res.hypothesis_rotations[i, order[1]] if len(order) > 1 else best
        hyp = [best, second]
        for g in (0, 1):
            erased = erase_spots(im, _grain_pixels(refiner, res, i, g, min_intensity), radius)
            _, R_other, _ = matcher.match(erased)
            for r in (R_other, half_turn(R_other)):
                pair = [best[g], r] if g == 0 else [r, best[g]]
                hyp.append(np.stack(pair))
        new.append(np.stack(hyp))
    return np.stack(new)


def refine_bicrystals(refiner, matcher: TemplateMatcher, images01: np.ndarray, hypotheses: np.ndarray | None = None,
                      passes: int = 2, min_intensity: float = 5e-4, erase_radius_px: float | None = None):
    """Refine bicrystals, then look again for each grain's partner.

    Pass 1 refines ``hypotheses`` (default :func:`bicrystal_hypotheses`). Each further pass
    erases one refined grain's spots from the image (positions from the refined orientation,
    centre and calibration, so the erasure fits far better than stage 2's first guess), runs
    template matching on what is left for the other grain, and refines again from: the previous
    best pair, the previous best distinct competitor, and each refined grain paired with the new
    partner and its half turn. Stage 2's partner is the usual failure of the first pass (its
    erasure leaves enough of grain A for template matching to lock onto).

    Returns the :class:`~edorient.indexing.refine.RefineResult` of the last pass.
    """
    images01 = np.asarray(images01, dtype=np.float32)
    if hypotheses is None:
        hypotheses = bicrystal_hypotheses(matcher, images01)
    res = refiner.refine(images01, hypotheses)
    radius = 2.5 * refiner.config.spot_sigma_px if erase_radius_px is None else erase_radius_px
    for _ in range(passes - 1):
        res = refiner.refine(images01, partner_hypotheses(refiner, matcher, images01, res, min_intensity, radius),
                             ratio=0.5)
    return res


def image_peaks(image01: np.ndarray, n_peaks: int = 20, min_value: float = 0.12, blur_px: float = 1.0,
                min_radius_px: float = 4.0) -> np.ndarray:
    """(k, 2) pixels (rows, cols) of the ``n_peaks`` brightest local maxima (5 x 5) of a display
    image blurred by ``blur_px``, at least ``min_value`` above its median and ``min_radius_px``
    from the direct beam: the spots a fit has to explain."""
    from scipy import ndimage

    from edorient import conventions as cv

    im = ndimage.gaussian_filter(np.asarray(image01, dtype=np.float32), blur_px)
    im = im - np.median(im)
    peak = (im == ndimage.maximum_filter(im, size=5)) & (im >= min_value)
    r0, c0 = cv.centre_pixel(im.shape[0])
    rows, cols = np.nonzero(peak)
    far = (rows - r0) ** 2 + (cols - c0) ** 2 >= min_radius_px**2
    rows, cols = rows[far], cols[far]
    order = np.argsort(-im[rows, cols])[:n_peaks]
    return np.stack([rows[order], cols[order]], 1).astype(float)


def explained_peaks(refiner, result, images01: np.ndarray, radius_px: float = 2.5, min_intensity: float = 5e-4,
                    n_peaks: int = 20) -> np.ndarray:
    """(n,) share of each image's brightest spots (:func:`image_peaks`) that lie within
    ``radius_px`` of a spot of the refined model (any grain, peak >= ``min_intensity``).

    The refined correlation is measured at the model's own spots, so a wrong orientation whose
    few spots sit on real ones can still score high; spots the model does not predict betray
    it (a missed or wrong grain). NaN where the image has no spot to explain.
    """
    out = np.full(len(images01), np.nan)
    G = result.rotations.shape[1]
    for i, im in enumerate(np.asarray(images01, dtype=np.float32)):
        pk = image_peaks(im, n_peaks)
        if not len(pk):
            continue
        pred = np.concatenate([_grain_pixels(refiner, result, i, g, min_intensity) for g in range(G)])
        if not len(pred):
            out[i] = 0.0
            continue
        d2 = ((pk[:, None, :] - pred[None, :, :]) ** 2).sum(-1).min(1)
        out[i] = float(np.mean(d2 <= radius_px**2))
    return out


#: Grain A's weights at which :func:`image_fit_choice` draws each two-grain hypothesis (its fit is
#: the best of them). Not the refinement's fitted ratio: where that fit let one grain fade (a
#: clean test bicrystal refined to a weight of 0.02), every hypothesis would be judged by one
#: grain and the other chosen at random (70° off in that test).
IMAGE_FIT_RATIOS = (0.3, 0.5, 0.7)


def fit_valid(size: int, beam_radius_px: float = 5.0) -> np.ndarray:
    """(size, size) pixels of a working image that the whole-image fit reads: all but the direct
    beam's disc (the models draw no direct beam)."""
    from edorient import conventions as cv

    r0, c0 = cv.centre_pixel(size)
    rr, cc = np.indices((size, size))
    return np.hypot(rr - r0, cc - c0) > beam_radius_px


#: Label groups of the dictionary that :meth:`DictionaryProposals._best_entries` orders by their
#: bound first (a partial sort): the reads stop after a median 1.8 % of the entries (115 of
#: 6,400 groups), and the full stable sort of every group's bound took 0.27 ms a read against
#: 0.03 ms for the first 512 (session 38).
_ORDER_HEAD = 512


def _first_by_bound(bound: np.ndarray, head: int) -> np.ndarray:
    """The indices of the ``head`` largest of ``bound`` (all when it has no more), largest first,
    equal values by index: the first ``head`` of ``np.argsort(-bound, kind="stable")`` (equal
    values straddling the cut aside)."""
    if len(bound) <= head:
        return np.argsort(-bound, kind="stable")
    top = np.argpartition(-bound, head - 1)[:head]
    return top[np.lexsort((top, -bound[top]))]


#: Hypotheses :func:`image_fit_choice` draws and compares in one batch (bounds its memory).
_FIT_BLOCK = 32


def image_fit_choice(simulator, result, images01: np.ndarray, beam_radius_px: float = 5.0,
                     all_fits: bool = False, valid: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(n,) index of the refined hypothesis whose model fits each whole image best, and (n,) that fit.

    The fit is :func:`~edorient.indexing.matching.image_correlations` over every pixel outside
    ``beam_radius_px`` of the centre (the models draw no direct beam): a spot of the image that
    the model leaves unexplained costs as much as a predicted spot the image lacks, which the
    refinement's objective, sampled at the model's own spots, does not see. Each hypothesis is
    drawn (display transform of the linear pattern, two grains weighted by each of
    :data:`IMAGE_FIT_RATIOS`, the best kept) with its own refined centre and scale (drawn with
    the best-scoring hypothesis' instead, a right orientation was judged at a wrong
    orientation's calibration, 6 % off, and lost: tuning scan of ``edorient map``). Measured
    on noisy 128 px images of the tuning seeds (``benchmarks/bench_accuracy.py``'s): single
    crystals (seed 4041, 200) < 1° 94.0 % by the refinement's choice, 98.5 % by this one (the
    best hypothesis available: 98.5 %); bicrystals (seed 4040, 100) both < 2° 71 % against 75 %
    (best available 77 %); 3-10 ms an image.

    With ``all_fits`` also (n, h) every hypothesis' fit (NaN for the empty slots). ``valid``
    (n, H, W) bool, optional: the pixels that hold data; only those are compared.
    """
    from edorient.indexing.matching import model_linear_images
    from edorient.render import display_transform

    x = np.asarray(images01, dtype=np.float32)
    size = x.shape[-1]
    base = fit_valid(size, beam_radius_px)
    G = result.rotations.shape[1]
    W = np.array([[r, 1.0 - r] for r in IMAGE_FIT_RATIOS] if G == 2 else [[1.0]], dtype=np.float32)
    best = np.zeros(len(x), dtype=int)
    fit = np.full(len(x), np.nan)
    fits = np.full(result.hypothesis_scores.shape, np.nan)
    own = getattr(result, "hypothesis_centre_px", None) is not None  # each hypothesis with its own fit
    img, hyp = np.nonzero(np.isfinite(result.hypothesis_scores))  # every hypothesis of every image, by image
    for lo in range(0, len(img), _FIT_BLOCK):
        i, j = img[lo : lo + _FIT_BLOCK], hyp[lo : lo + _FIT_BLOCK]
        cen = result.hypothesis_centre_px[i, j] if own else result.centre_px[i]
        k = result.hypothesis_calibration_scale[i, j] if own else result.calibration_scale[i]
        L = model_linear_images(simulator, result.hypothesis_rotations[i, j].reshape(-1, 3, 3),
                                np.repeat(cen, G, axis=0), np.repeat(k, G)).reshape(len(i), G, size, size)
        if G == 1:  # (its one weight is 1: the weighted sum would be a copy of L) transformed in place
            models = display_transform(L, out=L).reshape(len(i), 1, -1)
        else:
            models = display_transform(np.einsum("hgij,wg->hwij", L, W)).reshape(len(i), len(W), -1)
        # each image of the block once (its hypotheses come one after the other)
        im, owner = np.unique(i, return_inverse=True)
        v = np.broadcast_to(base, (len(im), size, size)) if valid is None else base & np.asarray(valid)[im]
        c = masked_correlations(x[im].reshape(len(im), -1), models, v.reshape(len(im), -1), owner).max(axis=1)
        fits[i, j] = c
    for m in np.unique(img):
        ok = np.flatnonzero(np.isfinite(result.hypothesis_scores[m]))
        q = int(np.argmax(fits[m, ok]))
        best[m], fit[m] = ok[q], fits[m, ok[q]]
    return (best, fit, fits) if all_fits else (best, fit)


# --------------------------------------------------------------------------------------------
# batched proposals without a CNN: the template dictionary's top k, and the partner of a grain
# --------------------------------------------------------------------------------------------
#: Rank of the dictionary's factorisation that bounds an entry's correlation
#: (:meth:`DictionaryProposals._best_entries`). The 48 radii of an entry's angular-frequency
#: profile are nearly redundant: 16 basis vectors a frequency hold 99.8-99.9 % of the 6,400-direction
#: dictionary's energy (4: 67-93 %). Measured on 32 of the accuracy benchmark's noisy bicrystals:
#: the bound at rank 16 lies below the 10th best entry's correlation for all but a median 0.3 % of
#: the entries (at most 15 %), at rank 8 1 % (at most 64 %); the search, which needs the k-th
#: distinct label, reads a median 1.8 % (``benchmarks/bench_search.py``, k = 3-4).
BOUND_RANK = 16
#: :class:`DictionaryProposals` ranks by the correlation of its entries projected on the bases
#: of rank :data:`BOUND_RANK` (which hold 99.8-99.9 % of their energy): the bound needs no
#: residual term, so it is tighter, and a read is of 16 coefficients a frequency instead of 48
#: radii. On 256 noisy bicrystals of tuning seed 4041 the first candidate was the exact
#: correlation's in every image, the second and third in 98 %, at 2.8 instead of 3.7 ms an image
#: (k = 3; a pool of 20 with 2 certain 3.6 instead of 5.4 ms). Session 41, 7,000 bicrystals of
#: tuning seeds 4040-4043 (noisy 128 px 3,000, ratios 0.3-0.7 1,000, 224 px 2,400, noise-free
#: 600), the dictionary chain: +2 / -2 images with both grains < 2°, 3-5 % faster at 128 px,
#: 20-25 % at 224 px; 3,000 single crystals of seeds 4047 / 4048: the same misses, 50.5 -> 62.1
#: and 46.0 -> 51.5 images/s.
PROJECTED = True
#: A pruned read pays a factorisation of the dictionary first (~0.6 s for 6,400 directions, once
#: per :class:`DictionaryProposals`); a call with fewer images than this before it reads the full
#: correlation (~50 ms an image then, against ~5 pruned). The candidates are the same either way
#: with ``projected`` off; with it (:data:`PROJECTED`) such a call ranks by the exact entries, a
#: factorised one by the projected entries (whose first candidate was the exact one's in every
#: tuning image measured).
PRUNE_MIN_IMAGES = 8


#: :func:`_far_matrix`'s results of this process, by content; at most this many kept.
_FAR_KEPT = 4
_far_cache: dict = {}


def _far_matrix(laue, labels: np.ndarray, separation_deg: float) -> np.ndarray:
    """(m, m) whether each pair of a dictionary's ``labels`` lies more than ``separation_deg``
    apart modulo ``laue`` (:meth:`~edorient.physics.symmetry.LaueGroup.apart`), kept for the
    process by content (the group's operations, the labels, the separation): a chain built
    again on the same dictionary (each ``edorient predict`` call of a Python session builds its
    own) skips it (0.15 s for 1,600 cubic directions, 1.9 s for 6,400 anatase ones)."""
    import hashlib

    labels = np.ascontiguousarray(labels, dtype=np.float64)
    key = hashlib.sha1(np.ascontiguousarray(laue.ops, dtype=np.float64).tobytes() + labels.tobytes()
                       + np.float64(separation_deg).tobytes()).hexdigest()
    if key not in _far_cache:
        while len(_far_cache) >= _FAR_KEPT:
            _far_cache.pop(next(iter(_far_cache)))
        # (writable: the compiled greedy selection's signature takes no read-only array; nothing writes it)
        _far_cache[key] = np.ascontiguousarray(laue.apart(labels, labels, separation_deg), dtype=bool)
    return _far_cache[key]


class DictionaryProposals:
    """The ``k`` best orientations of a :class:`~edorient.indexing.matching.TemplateMatcher`'s
    dictionary for many images at once, without its ring refinement.

    :meth:`TemplateMatcher.match` refines its best entries on shrinking rings of directions
    (~110 template simulations and polar transforms per image, ~1 s a bicrystal on a free core).
    Here the refinement does that job: the dictionary (a ~2.5° grid over the sector, both
    mirror families, every in-plane angle by FFT) only has to put a start inside its ~3° basin.
    The images of a chunk are correlated with the whole dictionary in one batched matrix product
    per angular frequency; per image the ``k`` best entries whose labels lie more than
    ``separation_deg`` apart (modulo the Laue group) are kept, each in its better family and at
    its best in-plane angle.

    ``max_frequency`` keeps the angular frequencies up to it only (the correlation low-passed; the
    product's cost falls with it) and ``n_angles`` reads the correlation out on that many in-plane
    angles (at least twice the highest frequency kept; the inverse FFT and the maximum over angles,
    most of the time on a dense dictionary, fall with it). None: the polar grid's own.

    ``pruned`` (default) finds the same candidates without reading every entry at every angle
    (:meth:`_best_entries`): an upper bound of each entry's best correlation from a rank
    ``bound_rank`` factorisation of the dictionary, then the exact correlation of the entries,
    best bound first, until no entry left can enter the top k.

    ``projected`` (:data:`PROJECTED`): once the dictionary is factorised (the pruned read), the
    candidates are ranked by the correlation of its entries projected on the factorisation's
    rank-``bound_rank`` bases, which the bound then holds exactly (:meth:`_best_entries`); the
    in-plane angles (``sub_step``) come from the entries themselves.

    ``sub_step`` (default): each candidate's in-plane angle is its correlation's peak between the
    read-out's angles (:meth:`peak_angles`), not the best of them (3° apart on 120 angles).
    Measured on 200 noisy bicrystals of tuning seed 4041 (128 px), the first candidate's
    misorientation to the nearer grain: median 1.00° -> 0.42°; the best of three within 1° of a
    grain 59 -> 81 %.
    """

    def __init__(self, matcher: TemplateMatcher, k: int = 4, separation_deg: float = 4.0, chunk: int = 32,
                 max_frequency: int | None = None, n_angles: int | None = None, pruned: bool = True,
                 bound_rank: int = BOUND_RANK, sub_step: bool = True, projected: bool = PROJECTED) -> None:
        self.matcher = matcher
        self.sub_step = bool(sub_step)
        self.projected = bool(projected)
        self.scorer = matcher.scorer
        self.k = int(k)
        self.separation_deg = float(separation_deg)
        self.chunk = int(chunk)
        fam = matcher.families
        fft_t = matcher._fft_t  # the dictionary's FFTs, conjugated, (freq, m, r)
        nf = len(fft_t) if max_frequency is None else min(int(max_frequency) + 1, len(fft_t))
        # shares the matcher's memory; torch's batched complex product is ~10x numpy's matmul here
        self._conj = torch.from_numpy(np.ascontiguousarray(fft_t[:nf]))
        laue = self.scorer.simulator.crystal.laue
        labels = laue.reduce(matcher.directions.reshape(-1, fam, 3)[:, 0])
        self._far = _far_matrix(laue, labels, self.separation_deg)  # (groups, groups)
        self.n_angles = self.scorer.grid.n_phi if n_angles is None else int(n_angles)
        if self.n_angles < 2 * (nf - 1):
            raise EdorientError(f"{self.n_angles} in-plane angles cannot hold angular frequencies up to {nf - 1}")
        self.pruned = bool(pruned)
        self.bound_rank = max(1, min(int(bound_rank), self._conj.shape[2]))
        wf = np.full(nf, 2.0 / self.n_angles, dtype=np.float32)  # irfft's weight of each frequency's term
        wf[0] = 1.0 / self.n_angles
        self._wf = torch.from_numpy(wf)
        self._factors = None  # (basis, coefficients, residual norms): at the first pruned read
        self._read_copies: dict[bool, np.ndarray] = {}  # the reads' copy of the dictionary, by projected

    def _factorisation(self):
        """Per angular frequency f an orthonormal basis ``V_f`` (r, q) of the entries' radial
        profiles, each entry's coefficients ``c = T V`` (f, m, q) and the norm of what the basis
        misses ``ρ = |T - c Vᴴ|`` (f, m), from ``|T|² - |c|²`` in float64 and raised by 1e-5 of
        ``|T|²`` (float32 entries: their rounding stays below it, so ρ bounds the true residual).
        The basis comes from the singular vectors of at most 512 entries (any basis keeps the
        bound exact; a good one keeps it tight). With the reads' copy (:meth:`_read_copy`) ~0.6 s
        for 12,800 entries, once; hence :data:`PRUNE_MIN_IMAGES`. Memory: the coefficients are a
        third of the dictionary's size (100 MB for 6,400 directions)."""
        if self._factors is None:
            C = self._conj
            nf, m, r = C.shape
            rng = np.random.default_rng(0)
            sub = torch.from_numpy(np.sort(rng.choice(m, min(m, 512), replace=False)))
            Vh = torch.linalg.svd(C.index_select(1, sub), full_matrices=False).Vh[:, : self.bound_rank]  # (f, q, r)
            V = Vh.conj().transpose(1, 2).contiguous()  # (f, r, q)
            coef = torch.matmul(C, V)  # (f, m, q)
            q = coef.shape[2]
            t2 = torch.from_numpy(squared_norms(torch.view_as_real(C).reshape(nf, m, 2 * r).numpy()))
            c2 = torch.from_numpy(squared_norms(torch.view_as_real(coef).reshape(nf, m, 2 * q).numpy()))
            rho = torch.sqrt((t2 - c2).clamp(min=0) + 1e-5 * t2).float()  # (f, m)
            self._factors = (Vh.contiguous(), coef, (rho * self._wf[:, None]).T.contiguous())
        return self._factors

    def _read_copy(self) -> np.ndarray:
        """(m, freq, 2 q) float32: what the pruned search reads of each entry, its frequencies
        together (the real and imaginary parts side by side): with :attr:`projected` the
        factorisation's coefficients (q = ``bound_rank``), else the entries themselves (q the
        radii; the dictionary's size again, 300 MB for 6,400 directions)."""
        if self.projected not in self._read_copies:
            src = self._factorisation()[1] if self.projected else self._conj
            nf, m, q = src.shape
            self._read_copies[self.projected] = (torch.view_as_real(src).permute(1, 0, 2, 3)
                                                 .reshape(m, nf, 2 * q).contiguous().numpy())
        return self._read_copies[self.projected]

    def correlations(self, images01: np.ndarray, projected: bool = False) -> torch.Tensor:
        """(n, m, n_phi) correlation (a torch tensor) of images (n, H, W) with every dictionary
        entry at every in-plane angle (:meth:`TemplateMatcher.correlations`, batched; with
        ``max_frequency``, only the angular frequencies up to it; with ``n_angles``, on that many
        angles). ``projected``: with the entries projected on the factorisation's bases (what
        the pruned search ranks by with :attr:`projected`)."""
        return self._correlations_t(self._image_spectra(images01), projected).permute(2, 1, 0)

    def _correlations_t(self, fa: torch.Tensor, projected: bool = False) -> torch.Tensor:
        """:meth:`correlations` as (n_angles, m, n) from the images' spectra ``fa``
        (:meth:`_image_spectra`): the inverse FFT along the product's own first axis and the
        maximum over angles then run over contiguous slabs (measured ~1.3x faster than along the
        last axis of the transposed product)."""
        fa_t = fa.permute(2, 1, 0)  # (freq, r, n)
        if projected:
            Vh, coef, _ = self._factorisation()
            prod = torch.matmul(coef, torch.matmul(Vh, fa_t))
        else:
            prod = torch.matmul(self._conj, fa_t)  # (freq, m, n)
        return torch.fft.irfft(prod, n=self.n_angles, dim=0)

    def _image_spectra(self, images01: np.ndarray) -> torch.Tensor:
        """(n, r, freq) the images' polar transforms' angular FFTs up to the dictionary's highest
        frequency, scaled so that an inverse FFT on :attr:`n_angles` gives the polar grid's
        correlation values."""
        grid = self.scorer.grid
        polar = grid.normalise(grid.transform(np.asarray(images01, dtype=np.float32)))
        nf = self._conj.shape[0]
        fa = torch.fft.rfft(torch.from_numpy(polar.astype(np.float32)), dim=-1)[..., :nf]  # (n, r, freq)
        if self.n_angles != grid.n_phi:  # irfft divides by its length: the grid's values on fewer angles
            fa = fa * (self.n_angles / grid.n_phi)
        return fa

    def peak_angles(self, fa: torch.Tensor, entries: np.ndarray, j0: np.ndarray, steps: int = 2) -> np.ndarray:
        """In-plane angles (in units of the read-out's angle step, (n, e) floats) at which the
        correlations of images with spectra ``fa`` (n, r, freq; :meth:`_image_spectra`) and
        dictionary entries ``entries`` (n, e) peak, from their best read-out angles ``j0`` (n, e).

        The correlation read out on :attr:`n_angles` angles is a Fourier series in the angle,
        ``c(θ) = Σ_f w_f Re(P_f e^{ifθ})`` (the weights of the inverse FFT: 1/n for the constant
        and the Nyquist term, 2/n between), known everywhere between the samples: ``steps``
        Newton steps on ``c'(θ) = 0`` from the best sample, each at most half a sample, give its
        maximum. The read-out's step (3° on the default 120 angles) is what a dictionary
        candidate's in-plane angle was off by, up to half of it: at 224 px a 1.5° turn moves an
        outer spot by two pixels, more than a spot's width."""
        nf = self._conj.shape[0]
        n_ang = self.n_angles
        e = np.asarray(entries, dtype=np.int64)
        n, k = e.shape
        T = self._conj[:, torch.from_numpy(e.ravel())].reshape(nf, n, k, -1)  # (freq, n, e, r)
        P = torch.einsum("fier,irf->ife", T, fa).numpy().astype(np.complex128)  # (n, freq, e)
        f = np.arange(nf, dtype=float)
        w = self._wf.numpy().astype(float)  # the bound's weights of the inverse FFT's terms ...
        if 2 * (nf - 1) == n_ang:  # ... which count the Nyquist term twice (a bound); the FFT once
            w[-1] = 1.0 / n_ang
        theta = np.asarray(j0, dtype=float) * (2 * np.pi / n_ang)  # (n, e)
        half = np.pi / n_ang
        lo, hi = theta - half, theta + half
        for _ in range(steps):
            z = P * np.exp(1j * f[None, :, None] * theta[:, None, :])  # (n, freq, e)
            d1 = -np.einsum("f,ife->ie", w * f, z.imag)
            d2 = -np.einsum("f,ife->ie", w * f * f, z.real)
            step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
            theta = np.clip(theta + step, lo, hi)
        return theta * (n_ang / (2 * np.pi))

    def _greedy(self, order: np.ndarray, gbest: np.ndarray, k: int) -> list[int]:
        """Up to ``k`` groups (label groups of the dictionary) in ``order`` (best first), each more
        than ``separation_deg`` from those kept before it; groups scored -inf (not read) end it."""
        kept = np.empty(max(int(k), 1), dtype=np.int64)
        n = greedy_groups(np.ascontiguousarray(order, dtype=np.int64), np.ascontiguousarray(gbest, dtype=np.float64),
                          self._far, int(k), kept)
        return kept[:n].tolist()

    def _best_entries(self, fa: torch.Tensor, k: int, certain: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(best correlation over the in-plane angles (n, m), its angle index (n, m)) of every
        dictionary entry that can be among the ``k`` candidates of each image (their spectra
        ``fa``, :meth:`_image_spectra`); -inf elsewhere.

        An entry's correlation at angle θ is ``Σ_f w_f Re(P_f e^{ifθ})`` (``P_f = T_f · A_f`` its
        product with the image at angular frequency f, summed over radii; ``w_f`` the inverse
        FFT's weight), so it is at most ``Σ_f w_f |P_f|``. With the factorisation ``T_f = c_f V_fᴴ
        + E_f`` (:meth:`_factorisation`, ``E_f`` orthogonal to the basis), ``|P_f| <= |c_f ·
        (V_fᴴ A_f)| + |E_f| |A_f - V_f V_fᴴ A_f|``: a product of rank ``bound_rank`` instead of
        the radii's 48. Per image the label groups are then read exactly, best bound first, until
        the k-th candidate found (:meth:`_greedy`) scores above every bound left: the candidates
        are those of the full correlation (equal bounds aside). Measured on the accuracy
        benchmark's images: a median 1.8 % of the entries read for k = 3-4, at most 16 %
        (``benchmarks/bench_search.py``). With ``certain`` < k the reads stop once k candidates
        are found and the ``certain``-th scores above every bound left: the first ``certain``
        are the full correlation's, the others the best of the entries read (a pool to be
        judged otherwise, :func:`partner_candidates`).

        With :attr:`projected` the correlation ranked is that of the entries projected on the
        bases, ``c_f · (V_fᴴ A_f)`` (:meth:`correlations` with ``projected``): its bound has no
        residual term and its reads are of ``bound_rank`` coefficients, not of the radii."""
        nf, m = self._conj.shape[0], self._conj.shape[1]
        fam = self.matcher.families
        Vh, coef, rho_w = self._factorisation()
        entries_first = self._read_copy()
        fa_t = fa.permute(2, 1, 0).contiguous()  # (freq, r, n)
        n = fa_t.shape[2]
        ap = torch.matmul(Vh, fa_t)  # (freq, q, n): the image in each frequency's basis
        if self.projected:  # the projected entries leave no residual
            bound = np.zeros((m, n), dtype=np.float32)
        else:  # the residuals' part
            a2 = torch.from_numpy(squared_norms(torch.view_as_real(fa.permute(2, 0, 1)).reshape(nf, n, -1).contiguous().numpy()))
            p2 = torch.from_numpy(squared_norms(torch.view_as_real(ap.transpose(1, 2)).reshape(nf, n, -1).contiguous().numpy()))
            a_perp = torch.sqrt((a2 - p2).clamp(min=0) + 1e-5 * a2).float()  # (freq, n), raised as ρ
            bound = (rho_w @ a_perp).numpy()
        wf = self._wf.numpy()
        for f in range(nf):  # a frequency at a time: the (m, n) product stays in cache (2.5x faster)
            prod = torch.matmul(coef[f], ap[f])  # (m, n)
            bound += weighted_moduli(torch.view_as_real(prod).reshape(1, m, 2 * n).numpy(), wf[f : f + 1])
        # the image's rows for the reads (n, freq, 2, 2 q): in the bases, or over the radii
        img = ap.permute(2, 0, 1) if self.projected else fa.permute(0, 2, 1)
        img_uv = product_rows(torch.view_as_real(img).reshape(n, nf, -1).contiguous().numpy())
        # float32 sums: a margin far above their rounding (the correlations are at most ~1)
        gbound = (bound.T + 1e-4).reshape(n, -1, fam).max(-1)  # (n, groups)
        cmax = np.full((n, m), -np.inf, dtype=np.float32)
        jmax = np.zeros((n, m), dtype=np.int64)
        gbest = np.full(gbound.shape, -np.inf, dtype=np.float32)
        famr = np.arange(fam)
        c_last = (k if certain is None else max(1, min(int(certain), k))) - 1
        n_groups = gbound.shape[1]
        for i in range(n):
            order = _first_by_bound(gbound[i], _ORDER_HEAD)
            done, block = 0, 16
            while done < n_groups:
                if done + block >= len(order) and len(order) < n_groups:  # past the head: the rest too
                    rest = np.ones(n_groups, dtype=bool)
                    rest[order[:done]] = False
                    rest = np.flatnonzero(rest)
                    order = np.concatenate([order[:done], rest[np.argsort(-gbound[i, rest], kind="stable")]])
                groups = order[done : done + block]
                done += len(groups)
                ent = (groups[:, None] * fam + famr).ravel()
                prod = entry_products(entries_first, img_uv[i], ent)  # (freq, e, 2)
                c, jj = torch.fft.irfft(torch.view_as_complex(torch.from_numpy(prod)), n=self.n_angles, dim=0).max(0)
                cmax[i, ent], jmax[i, ent] = c.numpy(), jj.numpy()
                gbest[i, groups] = c.numpy().reshape(-1, fam).max(-1)
                if done >= n_groups:
                    break
                read = order[:done]
                kept = self._greedy(read[np.argsort(-gbest[i, read], kind="stable")], gbest[i], k)
                if len(kept) >= k and gbest[i, kept[c_last]] >= gbound[i, order[done]]:
                    break
                block *= 2
        return cmax, jmax

    def candidates(self, images01: np.ndarray, k: int | None = None,
                   other_family: bool = False, certain: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rotations (n, k, 3, 3), scores (n, k)) of images (n, H, W): the best dictionary
        entries with distinct labels, best first (repeated when fewer are distinct). With
        ``other_family``, (n, 2k): then the same directions in their other mirror family, each
        at its own best in-plane angle (near a mirror plane of the crystal the two families give
        near-identical patterns, and the refinement cannot cross from one to the other).
        ``certain`` (<= k; None: k): with the pruned read, only the first ``certain`` are sure to
        be the full correlation's (:meth:`_best_entries`)."""
        from edorient.physics.orientation import rotation_from_direction

        k = self.k if k is None else int(k)
        x = np.asarray(images01, dtype=np.float32)
        x = x[None] if x.ndim == 2 else x
        fam = self.matcher.families
        dirs = self.matcher.directions
        both = other_family and fam == 2
        rots = np.zeros((len(x), 2 * k if both else k, 3, 3))
        scores = np.zeros((len(x), 2 * k if both else k))
        for lo in range(0, len(x), self.chunk):
            xs = x[lo : lo + self.chunk]
            fa = self._image_spectra(xs)
            if self.pruned and (self._factors is not None or len(xs) >= PRUNE_MIN_IMAGES):
                cmax, j = self._best_entries(fa, k, certain)  # (c, m), -inf where not read
            else:  # every entry (projected where the dictionary is factorised already)
                cmax, j = self._correlations_t(fa, self.projected and self._factors is not None).max(0)  # (m, c)
                cmax, j = cmax.numpy().T, j.numpy().T
            best = cmax.astype(float).reshape(len(j), -1, fam)  # (c, groups, fam)
            f = best.argmax(-1)
            gbest = best.max(-1)
            order = np.argsort(-gbest, axis=1)
            ms = np.empty((len(j), rots.shape[1]), dtype=np.int64)
            for i in range(len(j)):
                kept = self._greedy(order[i], gbest[i], k)
                kept += [kept[-1]] * (k - len(kept))
                m = np.asarray(kept) * fam + f[i, kept]
                if both:
                    m = np.concatenate([m, np.asarray(kept) * fam + 1 - f[i, kept]])
                ms[i] = m
                scores[lo + i] = cmax[i, m]
            ang = np.take_along_axis(j, ms, axis=1)
            if self.sub_step:
                ang = self.peak_angles(fa, ms, ang)
            rots[lo : lo + len(j)] = rotation_from_direction(dirs[ms], ang * 360.0 / self.n_angles)
        return rots, scores


def ranked_by_image_fit(simulator, images01: np.ndarray, rotations: np.ndarray, k: int, centre_px=None,
                        scale=None, beam_radius_px: float = 5.0) -> np.ndarray:
    """The ``k`` of each image's candidate orientations ``rotations`` (n, K, 3, 3) whose one-grain
    models fit the image (n, H, W) best, best first: (n, k, 3, 3).

    The fit is :func:`image_fit_choice`'s (the model drawn, display-transformed and correlated
    with the image over every pixel outside the direct beam's disc), with the centre offset
    ``centre_px`` (n, 2) and calibration ``scale`` (n,) of a grain already refined on the same
    image (none: the nominal ones). The dictionary's polar correlation ranks a partner on an
    image with the other grain's spots erased; this judges it by what a model predicts
    everywhere. Measured on the misses of tuning seed 4040 (300 noisy bicrystals, the answer's
    right grain erased): the missing grain was the dictionary's 4th-25th candidate in 8 of 10,
    and the 1st-3rd by this fit in 8 of 10 (first in 5)."""
    from edorient.indexing.matching import model_linear_images
    from edorient.render import display_transform

    x = np.asarray(images01, dtype=np.float32)
    R = np.asarray(rotations, dtype=float)
    n, K = R.shape[:2]
    if k >= K:
        return R[:, :k]
    size = x.shape[-1]
    cen = np.zeros((n, 2)) if centre_px is None else np.asarray(centre_px, dtype=float).reshape(n, 2)
    sc = np.ones(n) if scale is None else np.asarray(scale, dtype=float).reshape(n)
    base = fit_valid(size, beam_radius_px).reshape(1, -1)
    out = np.empty((n, k, 3, 3))
    step = max(1, _FIT_BLOCK // K)
    for lo in range(0, n, step):
        sl = slice(lo, min(n, lo + step))
        c = sl.stop - lo
        L = model_linear_images(simulator, R[sl].reshape(-1, 3, 3), np.repeat(cen[sl], K, axis=0), np.repeat(sc[sl], K))
        models = display_transform(L, out=L).reshape(c, K, -1)
        fits = masked_correlations(x[sl].reshape(c, -1), models, np.broadcast_to(base, (c, size * size)))
        order = np.argsort(-fits, axis=1, kind="stable")[:, :k]
        out[sl] = np.take_along_axis(R[sl], order[:, :, None, None], axis=1)
    return out


def partner_candidates(proposer: DictionaryProposals, images01: np.ndarray, k: int | None, result=None,
                       pool: int | None = None) -> np.ndarray:
    """(n, k, 3, 3) partner candidates on images with a grain's spots erased: the dictionary's
    ``k`` best (``pool`` None or <= k), or of a pool of ``pool`` the ``k`` that fit the image best
    (:func:`ranked_by_image_fit`, drawn at ``result``'s refined centre and calibration).

    The pool holds the dictionary's ``k`` best and the best others of the entries its pruned
    read had to look at for those (``candidates(certain=k)``), not its exact ``pool`` best:
    reading until the ``pool``-th is certain cost 17-35 % of the bicrystal chain's speed for
    the same answers on 300 noisy bicrystals each of tuning seeds 4040 / 4041 (pool 20: 98.0 /
    98.0 % both grains < 2° either way, 6.5 against 9.2 bicrystals/s; pool 12: 97.7 / 97.7 %
    exact, 97.7 / 97.3 % from the cheap pool)."""
    k = proposer.k if k is None else int(k)
    if pool is None or pool <= k:
        return proposer.candidates(images01, k)[0]
    cands, _ = proposer.candidates(images01, int(pool), certain=k)
    cen = None if result is None else result.centre_px
    sc = None if result is None else result.calibration_scale
    return ranked_by_image_fit(proposer.scorer.simulator, images01, cands, k, cen, sc)


def erase_grain(refiner, result, images01: np.ndarray, g: int, min_intensity: float = 5e-4,
                radius_px: float | None = None) -> np.ndarray:
    """Images (n, H, W) with grain ``g``'s refined spots of ``result`` erased (discs of
    ``radius_px``, default 2.5 spot sigmas; the direct beam kept)."""
    from edorient.indexing.matching import erase_spots

    radius = 2.5 * refiner.config.spot_sigma_px if radius_px is None else float(radius_px)
    return np.stack([erase_spots(im, _grain_pixels(refiner, result, i, g, min_intensity), radius)
                     for i, im in enumerate(np.asarray(images01, dtype=np.float32))])


def subtract_grain(simulator, result, images01: np.ndarray, g: int, peak_share: float = 0.3) -> np.ndarray:
    """Display images (n, H, W) with grain ``g``'s refined model of ``result`` subtracted in linear
    intensity (negative values clipped to 0; the direct beam and the background kept).

    The model (:func:`~edorient.indexing.matching.model_linear_images`, the refined centre and
    calibration) is scaled to the image by the median, over its pixels above ``peak_share`` of its
    brightest, of (image - median of the image) / model: a spot that the other grain adds to is
    an outlier the median ignores while fewer than half of those pixels are the other grain's too
    (where they all are, e.g. a grain whose only bright spots are a Friedel pair lying on the other
    grain's, the scale takes the other grain's share as well). Unlike :func:`erase_grain`'s discs,
    a spot both grains share keeps the other grain's part (tests/unit/indexing/test_partner_pool.py).
    """
    from edorient.indexing.matching import model_linear_images
    from edorient.render import display_transform, inverse_display_transform

    x = np.asarray(images01, dtype=np.float32)
    lin = inverse_display_transform(x)
    L = model_linear_images(simulator, result.rotations[:, g], result.centre_px, result.calibration_scale)
    out = x.copy()
    for i in range(len(x)):
        top = float(L[i].max())
        if top <= 0:
            continue
        pk = L[i] > peak_share * top
        a = float(np.median((lin[i][pk] - np.median(lin[i])) / L[i][pk]))
        if a > 0:
            out[i] = display_transform(np.clip(lin[i] - a * L[i], 0, None))
    return out


#: How :func:`dictionary_partner_hypotheses` (the partner passes of
#: :class:`~edorient.indexing.estimators.DictionaryRefined`, the gated one and the chosen answer's)
#: removes a refined grain before the dictionary looks for its partner: 'subtract'
#: (:func:`subtract_grain`) or 'erase' (:func:`erase_grain`, the way before; the first search's
#: :func:`refine_partners` still erases). On 13 search failures of tuning seeds 4040 / 4043 (1,000
#: noisy bicrystals each; the truth fits the whole image better than the answer, which holds one
#: grain right), the missing grain was among the dictionary's 3 best on the subtracted image in 10
#: and on the erased one in 2: a disc erased around each of the found grain's spots takes the other
#: grain's spots that share its pixels with it. Noisy bicrystals of tuning seeds
#: (4040 / 4043: 1,000; 4041: 400; 4042: 600; random ratios 4040 / 4041: 400, 4043: 600), grains
#: > 2° off: erase 22 / 21 / 7 / 6 / 14 / 11 / 13 (94 images), subtract everywhere 81, subtract in
#: the partner passes and erase in the first search **80** (unflagged 22 -> 17), erase in the partner
#: passes and subtract in the first search 85; the same speed. ``edorient predict``'s files erase
#: (``pipeline._dictionary_chain``: a file's working image is not the model's own rendering).
PARTNER_REMOVAL = "subtract"
#: The ways :func:`remove_grain` knows.
REMOVALS = ("erase", "subtract")


def remove_grain(refiner, simulator, result, images01: np.ndarray, g: int, how: str) -> np.ndarray:
    """Images with grain ``g`` of ``result`` removed: ``how`` 'erase' (:func:`erase_grain`) or
    'subtract' (:func:`subtract_grain`)."""
    if how == "subtract":
        return subtract_grain(simulator, result, images01, g)
    if how == "erase":
        return erase_grain(refiner, result, images01, g)
    raise EdorientError(f"a grain is removed by one of {REMOVALS}, not {how!r}")


def with_half_turns(rotations: np.ndarray) -> np.ndarray:
    """(n, k, 3, 3) -> (n, 2k, 3, 3): each orientation, then all their half turns."""
    return np.concatenate([rotations, half_turn(rotations)], axis=1)


def pairs_with(first: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """Two-grain hypotheses (n, k, 2, 3, 3): grain A ``first`` (n, 3, 3) with each partner (n, k, 3, 3)."""
    return np.stack([np.broadcast_to(first[:, None], partners.shape), partners], axis=2)


def distinct_best(refiner, result, m: int) -> np.ndarray:
    """(n, m, g, 3, 3): per image the best hypothesis of ``result`` and the next best ones whose
    orientation differs from every better kept one (by more than the refiner's
    ``distinct_deg``, modulo its proper rotations; repeated when fewer are distinct)."""
    from edorient.indexing.refine import misorientation_deg

    R, S = result.hypothesis_rotations, np.where(np.isfinite(result.hypothesis_scores), result.hypothesis_scores, -np.inf)
    out = np.empty((len(R), m) + R.shape[2:])
    for i in range(len(R)):
        kept = []
        for j in np.argsort(-S[i]):
            if len(kept) >= m or not np.isfinite(S[i, j]):
                break
            if all((misorientation_deg(R[i, j], R[i, q], refiner.proper) > refiner.distinct_deg).any() for q in kept):
                kept.append(j)
        kept = kept or [int(result.best[i])]
        kept += [kept[-1]] * (m - len(kept))
        out[i] = R[i, kept]
    return out


def refine_partners(refiner, proposer: DictionaryProposals, images01: np.ndarray, single, k: int | None = None,
                    extra: np.ndarray | None = None, ratio: float = 0.5, firsts: int = 1, levels=None, valid=None,
                    pool: int | None = None):
    """Second grains for refined single-grain fits ``single`` (a one-grain
    :class:`~edorient.indexing.refine.RefineResult` of ``images01``): for each of its ``firsts``
    best distinct fits (:func:`distinct_best`), that grain's spots erased, the dictionary's top
    ``k`` on what is left (and their half turns) paired with it; plus ``extra`` two-grain
    hypotheses (n, e, 2, 3, 3); all refined together. Returns the two-grain RefineResult.
    ``pool``: the partners as :func:`partner_candidates` ranks them (its fit reads every pixel
    outside the direct beam, not only ``valid``'s).

    The best single-grain fit of a bicrystal is often a wrong orientation whose few spots sit on
    either grain's (measured: 95 % of images had a refined single-grain start within 2° of a
    grain, the best by correlation only 67 %), so ``firsts`` = 2 lets the two-grain fit choose.
    """
    import dataclasses

    x = np.asarray(images01, dtype=np.float32)
    firstR = distinct_best(refiner, single, firsts)[:, :, 0] if firsts > 1 else single.rotations[:, None, 0]
    hyps = []
    for f in range(firstR.shape[1]):
        fit = dataclasses.replace(single, rotations=firstR[:, f, None])
        partners = partner_candidates(proposer, erase_grain(refiner, fit, x, 0), k, fit, pool)
        hyps.append(pairs_with(firstR[:, f], with_half_turns(partners)))
    if extra is not None:
        hyps.append(extra)
    return refiner.refine(x, np.concatenate(hyps, axis=1), ratio=ratio, levels=levels, valid=valid)


def dictionary_partner_hypotheses(refiner, proposer: DictionaryProposals, images01: np.ndarray, res,
                                  k: int | None = None, pool: int | None = None,
                                  removal: str = PARTNER_REMOVAL, grains=(0, 1)) -> np.ndarray:
    """:func:`partner_hypotheses` with the batched dictionary instead of template matching:
    (n, 1 + len(grains) x 2k, 2, 3, 3): the best pair of the two-grain ``res``, then each
    refined grain of ``grains`` (both by default) paired with the dictionary's top ``k`` (and
    half turns) on the image with that grain removed (``removal``: its refined model
    subtracted, or its spots erased; :data:`PARTNER_REMOVAL`) (with ``pool``, the ``k`` of a
    pool that :func:`partner_candidates` ranks first)."""
    x = np.asarray(images01, dtype=np.float32)
    hyp = [res.rotations[:, None]]
    for g in grains:
        partners = partner_candidates(proposer, remove_grain(refiner, proposer.scorer.simulator, res, x, g, removal), k,
                                      res, pool)
        pair = pairs_with(res.rotations[:, g], with_half_turns(partners))
        hyp.append(pair if g == 0 else pair[:, :, ::-1])
    return np.concatenate(hyp, axis=1)


def spot_pair_indexer(refiner, length_px: float = 1.5, **kwargs):
    """A :class:`~edorient.indexing.pairs.SpotPairIndexer` of ``refiner``'s crystal: every
    reflection its spot model can show, lengths to ``length_px`` of its calibration."""
    from edorient.indexing.pairs import SpotPairIndexer

    model = refiner.model
    return SpotPairIndexer(model.g.double().cpu().numpy(), refiner.proper, model.wavelength,
                           length_px * refiner.config.resolved_calibration, **kwargs)


def pair_partner_hypotheses(refiner, indexer, images01: np.ndarray, res, k: int = 3, n_peaks: int = 40,
                            min_value: float = 0.08, radius_px: float = 2.5, separation_deg: float = 3.0,
                            min_intensity: float = 5e-4, strong: float = 3e-3, miss_weight: float = 0.5) -> np.ndarray:
    """(n, 2 x 2k, 2, 3, 3) two-grain hypotheses from answers ``res`` (a two-grain RefineResult of
    ``images01``): each answer grain paired with ``k`` partners indexed from the image's peaks
    that grain leaves unexplained (and their half turns).

    Per grain: the image's ``n_peaks`` brightest peaks (:func:`image_peaks` at ``min_value``)
    farther than ``radius_px`` from the grain's refined spots are the partner's; every pair of
    the brightest of them gives orientations (:meth:`~edorient.indexing.pairs.SpotPairIndexer.rotations`,
    at the refined centre and calibration), ranked by how many of those peaks their spots hit
    (:func:`~edorient.indexing.pairs.peak_hits`, at the partner's fitted weight clipped to 0.3-0.7)
    less ``miss_weight`` for each of their spots at least ``strong`` bright that lands on no peak
    of the image (:func:`~edorient.indexing.pairs.lone_spots`: near-symmetric spot positions let
    a wrong orientation hit as many peaks), the best ``k`` more than ``separation_deg`` apart kept
    (the grain's own partner where fewer are found). The dictionary's read of an erased image
    misses partners whose strong spots the erasing took (measured, docs/results.md "Session
    34"); the positions of what is left find them."""
    from edorient import conventions as cv
    from edorient.indexing.pairs import lone_spots, peak_hits
    from edorient.physics.symmetry import misorientation_deg

    x = np.asarray(images01, dtype=np.float32)
    size = refiner.config.image_size
    r0, c0 = cv.centre_pixel(size)
    out = np.empty((len(x), 4 * k, 2, 3, 3))
    for i in range(len(x)):
        peaks = image_peaks(x[i], n_peaks, min_value)
        cen, cal = res.centre_px[i], refiner.config.resolved_calibration * res.calibration_scale[i]
        hyps = []
        for g in (0, 1):
            own = _grain_pixels(refiner, res, i, g, min_intensity)
            left = peaks
            if len(peaks) and len(own):
                left = peaks[((peaks[:, None] - own[None]) ** 2).sum(-1).min(1) > radius_px**2]
            vec = np.stack([(left[:, 1] - c0 - cen[1]) * cal, (r0 + cen[0] - left[:, 0]) * cal], axis=1)
            C = indexer.rotations(vec)
            kept: list[np.ndarray] = []
            if len(C):
                pix, inten = _spot_pixels(refiner, C, cen, res.calibration_scale[i], torch.float32)
                w = np.clip(1.0 - res.ratio[i] if g == 0 else res.ratio[i], 0.3, 0.7)  # a wrong partner's fit may fade it
                hits = peak_hits(pix, inten * w >= min_intensity, left, size, radius_px).astype(float)
                if miss_weight:
                    bright = (inten * w >= strong) & (np.hypot(pix[..., 0] - r0 - cen[0], pix[..., 1] - c0 - cen[1]) >= 4.0)
                    hits -= miss_weight * lone_spots(pix, bright, peaks, size, radius_px)
                order = np.argsort(-hits, kind="stable")
                far = np.ones(len(order), dtype=bool)
                while len(kept) < k and far.any():  # the best left, then those far from it
                    j = order[np.argmax(far)]
                    kept.append(C[j])
                    far &= misorientation_deg(C[order], C[j], refiner.proper) > separation_deg
            kept += [res.rotations[i, 1 - g]] * (k - len(kept))
            pair = pairs_with(res.rotations[i : i + 1, g], with_half_turns(np.asarray(kept)[None]))[0]
            hyps.append(pair if g == 0 else pair[:, ::-1])
        out[i] = np.concatenate(hyps)
    return out


def refine_sequential(refiner, proposer: DictionaryProposals, images01: np.ndarray, k: int | None = None,
                      first: np.ndarray | None = None, extra: np.ndarray | None = None, firsts: int = 2,
                      first_levels=None, levels=None, pool: int | None = None):
    """Both grains of bicrystals by Method 2's order, batched, without template matching's
    ring refinement: grain A from the dictionary's top ``k`` (plus ``first`` starts (n, f, 3, 3),
    e.g. a CNN's; all with their half turns) refined as one grain, the spots of its ``firsts``
    best distinct fits erased in turn, grain B from the dictionary's top ``k`` on what is left
    (:func:`refine_partners`, with ``extra`` pair hypotheses). ``first_levels`` and ``levels``:
    the refinement schedules of the one-grain and the two-grain fits (None: the refiner's);
    ``pool``: grain B's candidates from a pool (:func:`partner_candidates`).
    Returns (two-grain RefineResult, one-grain RefineResult of grain A)."""
    x = np.asarray(images01, dtype=np.float32)
    starts, _ = proposer.candidates(x, k)
    if first is not None:
        starts = np.concatenate([starts, np.asarray(first, dtype=float)], axis=1)
    single = refiner.refine(x, with_half_turns(starts)[:, :, None], levels=first_levels)
    return refine_partners(refiner, proposer, x, single, k, extra, firsts=firsts, levels=levels, pool=pool), single
