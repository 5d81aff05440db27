"""One interface for every estimator: images in, orientations per grain out.

An :class:`Estimator` takes display images (n, H, W) in [0, 1] at its simulator's size and
calibration and returns an :class:`Estimate`: a full orientation per grain (the mirror family
and in-plane angle included), its label (the sector-reduced beam direction) and a score.

- :class:`TemplateMatching`: CNN-free; one grain by template matching over the whole
  orientation space, a second by Method 2's stage 2 (the first grain's spots erased);
- :class:`CNNEstimator`: a trained model's beam directions, each turned into the orientation
  whose pattern fits the image best (:meth:`PatternScorer.score`);
- :class:`Refined`: any of them as the proposal, refined against the image
  (:class:`~edorient.indexing.refine.Refiner`): the pipeline that chains them;
- :class:`DictionaryRefined`: the fast CNN-free chain: the template dictionary's top k
  (:class:`~edorient.indexing.proposals.DictionaryProposals`, batched, no ring refinement)
  refined, a second grain by Method 2's order (:func:`~edorient.indexing.proposals.refine_sequential`),
  one batched partner pass for bad fits.

:func:`build_estimator` makes the chain ``edorient predict`` uses.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edorient.errors import EdorientError
from edorient.indexing.matching import PatternScorer, TemplateMatcher

__all__ = ["CNNEstimator", "DictionaryRefined", "Estimate", "Estimator", "Refined", "TemplateMatching", "best_orientations", "build_estimator",
           "merge_results", "take_rows"]


@dataclass
class Estimate:
    """What an estimator found in n images of g grains."""

    rotations: np.ndarray  #: (n, g, 3, 3) orientations
    directions: np.ndarray  #: (n, g, 3) labels: beam directions reduced to the Laue sector
    scores: np.ndarray  #: (n, g) pattern correlation of each grain (refined: of the model)
    refinement: object | None = None  #: the RefineResult when refined
    fallback: np.ndarray | None = None  #: (n,) bool: a bad fit, refined again from slower proposals
    explained: np.ndarray | None = None  #: (n,) share of the image's spots on the model's (refined)
    other_family: np.ndarray | None = None  #: (n, g, 3, 3) each grain's best orientation in its other mirror family


class Estimator(ABC):
    """Images (n, H, W) in [0, 1] -> :class:`Estimate`; ``grains`` per image."""

    name: str = "estimator"

    def __init__(self, scorer: PatternScorer, grains: int) -> None:
        if grains not in (1, 2):
            raise EdorientError(f"grains must be 1 or 2, got {grains}")
        self.scorer = scorer
        self.grains = int(grains)

    @property
    def crystal(self):
        return self.scorer.simulator.crystal

    def _check(self, images01) -> np.ndarray:
        x = np.asarray(images01, dtype=np.float32)
        x = x[None] if x.ndim == 2 else x
        size = self.scorer.simulator.config.image_size
        if x.ndim != 3 or x.shape[1:] != (size, size):
            raise EdorientError(f"{self.name}: images must be (n, {size}, {size}), got {x.shape}")
        return x

    def _finish(self, rotations: np.ndarray, scores: np.ndarray, refinement=None) -> Estimate:
        rotations = np.asarray(rotations, dtype=float)
        return Estimate(rotations, self.crystal.laue.reduce(rotations[..., 2, :]), np.asarray(scores, float),
                        refinement)

    @abstractmethod
    def estimate(self, images01) -> Estimate:
        """Orientations of the grains in each image."""


class TemplateMatching(Estimator):
    """Template matching for the first grain; Method 2's stage 2 for the second."""

    name = "template matching"

    def __init__(self, matcher: TemplateMatcher, grains: int = 1) -> None:
        super().__init__(matcher.scorer, grains)
        self.matcher = matcher

    def estimate(self, images01) -> Estimate:
        from edorient.indexing.method2 import stage2

        x = self._check(images01)
        rots, scores = [], []
        for im in x:
            _, R, c = self.matcher.match(im)
            grains, sc = [R], [c]
            if self.grains == 2:
                st = stage2(im, R[2], self.scorer.simulator, self.matcher, scorer=self.scorer)
                c2, R2 = self.scorer.score(im, st.direction[None])
                grains.append(R2[0])
                sc.append(c2[0])
            rots.append(np.stack(grains))
            scores.append(sc)
        return self._finish(np.stack(rots), np.array(scores))


class CNNEstimator(Estimator):
    """A trained model's directions (one head per grain), each turned into its best orientation."""

    name = "CNN"

    def __init__(self, model, scorer: PatternScorer, batch: int = 256) -> None:
        super().__init__(scorer, int(model.config.n_grains))
        size = int(model.config.input_size)
        if size != scorer.simulator.config.image_size:
            raise EdorientError(f"the model takes {size} px images but the scorer's simulator makes "
                                f"{scorer.simulator.config.image_size} px")
        self.model = model
        self.batch = int(batch)

    def directions(self, images01) -> np.ndarray:
        """The model's sector-reduced directions (n, g, 3)."""
        import torch

        from edorient.evaluation.pipeline import sector_predictions

        x = self._check(images01)
        with torch.no_grad():
            raw = torch.cat([self.model(torch.as_tensor(x[i : i + self.batch])[:, None])
                             for i in range(0, len(x), self.batch)])
        return sector_predictions(raw.reshape(len(x), self.grains, 3).numpy().astype(float), self.crystal.laue)

    def estimate(self, images01) -> Estimate:
        x = self._check(images01)
        rots, scores, other = best_orientations(self.scorer, x, self.directions(x), other_family=True)
        est = self._finish(rots, scores)
        est.other_family = other
        return est


def best_orientations(scorer: PatternScorer, images01: np.ndarray, directions: np.ndarray,
                      chunk: int = 64, other_family: bool = False):
    """:meth:`PatternScorer.score` (both families, every in-plane angle) of directions (n, g, 3)
    in images (n, H, W), batched: the templates of a chunk of images in one simulator call and
    their polar images in one transform. Returns (rotations (n, g, 3, 3), scores (n, g)) and,
    with ``other_family``, the best orientation of each direction's other mirror family
    (n, g, 3, 3), which the same correlations hold (what
    :func:`~edorient.indexing.proposals.grain_starts` otherwise scores again)."""
    from edorient.indexing.matching import correlate_inplane
    from edorient.physics.orientation import rotation_from_direction

    n, g = directions.shape[:2]
    rots = np.zeros((n, g, 3, 3))
    other = np.zeros((n, g, 3, 3))
    scores = np.zeros((n, g))
    for lo in range(0, n, chunk):
        d = np.asarray(directions[lo : lo + chunk], dtype=float)
        m = len(d)
        trial = np.stack([d, -d], axis=2)  # (m, g, 2, 3): both families
        tmpl = scorer.template(trial.reshape(-1, 3)).reshape(m, g * 2, *scorer.grid.radii.shape, -1)
        polar = scorer.grid.normalise(scorer.grid.transform(images01[lo : lo + chunk]))
        ar = np.arange(g)
        for i in range(m):
            c = correlate_inplane(polar[i], tmpl[i]).reshape(g, 2, -1)
            flat = c.reshape(g, -1).argmax(axis=1)
            fam, j = np.divmod(flat, c.shape[-1])
            scores[lo + i] = c[ar, fam, j]
            rots[lo + i] = rotation_from_direction(trial[i, ar, fam], j * 360.0 / scorer.grid.n_phi)
            if other_family:
                jo = c[ar, 1 - fam].argmax(axis=1)
                other[lo + i] = rotation_from_direction(trial[i, ar, 1 - fam], jo * 360.0 / scorer.grid.n_phi)
    return (rots, scores, other) if other_family else (rots, scores)


class Refined(Estimator):
    """``base``'s orientations refined against the image.

    Each grain starts from the base estimate and its half turn about the beam and, with
    ``families``, the best orientation of the other mirror family (and that one's half turn);
    two grains try every combination (:func:`~edorient.indexing.proposals.grain_starts`). The
    best fit is kept.

    A fit is *bad* when fewer than ``fallback_below`` of the image's brightest spots lie on the
    refined model's spots (:func:`~edorient.indexing.proposals.explained_peaks`; the refined
    correlation alone does not tell: it is measured at the model's own spots, and a wrong grain
    whose few spots sit on real ones scores high). Only for bad fits, and only when given:

    1. ``fallback`` (e.g. :class:`TemplateMatching` behind a CNN) estimates the image again and
       its hypotheses are refined together with the first fit;
    2. ``partner`` (a :class:`~edorient.indexing.matching.TemplateMatcher`, two grains) looks for
       each refined grain's partner in the image with that grain's refined spots erased
       (:func:`~edorient.indexing.proposals.partner_hypotheses`) and refines again.

    After each step the fit that explains more of the image's spots is kept (ties: the higher
    correlation). So the slower estimators are paid for only where the fast one failed. A fit
    still bad after that is reported ``ambiguous`` with an uncertainty of
    ``unexplained_sigma_deg`` (None: the curvature's, which only holds near the truth): its
    error is not small, and the reported 95 % interval says so.

    :func:`rechoose_by_image_fit` at the end (as :class:`DictionaryRefined` does) was measured
    here too, on the tuning seeds of ``benchmarks/bench_accuracy.py``: CNN singles < 1° 74 ->
    78.5 % at 130 -> 99 images/s, bicrystals 1 -> 3 % (the CNN's proposals are the limit); it is
    not used here, to keep the map's speed.
    """

    def __init__(self, base: Estimator, refiner, families: bool = True, fallback: Estimator | None = None,
                 fallback_below: float | None = None, partner=None,
                 unexplained_sigma_deg: float | None = 90.0) -> None:
        super().__init__(base.scorer, base.grains)
        self.base = base
        self.refiner = refiner
        self.families = bool(families)
        self.fallback = fallback
        self.fallback_below = None if fallback_below is None else float(fallback_below)
        self.partner = partner if self.grains == 2 else None
        self.unexplained_sigma_deg = unexplained_sigma_deg
        if fallback is not None and fallback.grains != base.grains:
            raise EdorientError(f"the fallback finds {fallback.grains} grain(s), the base {base.grains}")
        self.name = f"{base.name} + refinement"
        if fallback is not None:
            self.name += f" (+ {fallback.name} where bad)"

    def hypotheses(self, images01, proposal: Estimate) -> np.ndarray:
        """(n, h, g, 3, 3) starts of the refinement."""
        from edorient.indexing.proposals import grain_starts, half_turn

        out = []
        other = proposal.other_family if self.families else None
        for i, (im, rots) in enumerate(zip(images01, proposal.rotations)):
            if other is not None:  # the proposal's own other-family orientations: grain_starts' order, not scored again
                starts = [np.stack([R, o, half_turn(R), half_turn(o)]) for R, o in zip(rots, other[i])]
            else:
                starts = [grain_starts(self.scorer, im, R, families=self.families) for R in rots]
            out.append(np.stack([np.stack(c) for c in itertools.product(*starts)]))
        return np.stack(out)

    def _retry(self, x, res, expl, idx, hyp, ratio=0.5):
        """Refine ``hyp`` for images ``idx``; keep per image the fit that explains more."""
        from edorient.indexing.proposals import explained_peaks

        second = self.refiner.refine(x[idx], hyp, ratio=ratio)
        ex2 = explained_peaks(self.refiner, second, x[idx])
        old = expl[idx]
        better = (np.nan_to_num(ex2, nan=-1) > np.nan_to_num(old, nan=-1)) | (
            (np.nan_to_num(ex2, nan=-1) == np.nan_to_num(old, nan=-1)) & (second.scores >= res.scores[idx]))
        expl = expl.copy()
        expl[idx[better]] = ex2[better]
        return merge_results(res, idx[better], second, np.flatnonzero(better)), expl

    def estimate(self, images01, proposal: Estimate | None = None,
                 fallback_proposal: Estimate | None = None) -> Estimate:
        """Refined estimates; ``proposal`` (of all images) replaces the base's, and
        ``fallback_proposal`` (of all images) the fallback's."""
        from edorient.indexing.proposals import explained_peaks, partner_hypotheses

        x = self._check(images01)
        proposal = self.base.estimate(x) if proposal is None else proposal
        res = self.refiner.refine(x, self.hypotheses(x, proposal))
        used = np.zeros(len(x), dtype=bool)
        expl = None
        if self.fallback_below is not None and (self.fallback is not None or fallback_proposal is not None
                                                or self.partner is not None):
            expl = explained_peaks(self.refiner, res, x)
            bad = np.flatnonzero(expl < self.fallback_below)
            if len(bad) and (self.fallback is not None or fallback_proposal is not None):
                used[bad] = True
                if fallback_proposal is None:
                    fb = self.fallback.estimate(x[bad])
                else:
                    fb = Estimate(fallback_proposal.rotations[bad], fallback_proposal.directions[bad],
                                  fallback_proposal.scores[bad])
                hyp = np.concatenate([self.hypotheses(x[bad], fb), res.rotations[bad][:, None]], axis=1)
                res, expl = self._retry(x, res, expl, bad, hyp)
            bad = np.flatnonzero(expl < self.fallback_below)
            if len(bad) and self.partner is not None:
                used[bad] = True
                hyp = partner_hypotheses(self.refiner, self.partner, x[bad], take_rows(res, bad))
                res, expl = self._retry(x, res, expl, bad, hyp)
        if expl is not None and self.unexplained_sigma_deg is not None:
            res = self._unexplained(res, expl < self.fallback_below)
        est = self._finish(res.rotations, np.repeat(res.scores[:, None], self.grains, axis=1), res)
        est.fallback = used
        est.explained = expl
        return est

    def _unexplained(self, res, bad: np.ndarray):
        return widen_unexplained(res, bad, self.unexplained_sigma_deg)


def widen_unexplained(res, bad: np.ndarray, sigma_deg: float):
    """Fits still bad after every chance: ambiguous, and an uncertainty of ``sigma_deg`` (the
    curvature of a wrong optimum says nothing of the error)."""
    import dataclasses

    if not bad.any():
        return res
    s = float(sigma_deg)
    unc, tilt, inpl = res.uncertainty_deg.copy(), res.tilt_covariance.copy(), res.inplane_uncertainty_deg.copy()
    amb = res.ambiguous.copy()
    unc[bad] = s
    tilt[bad] = np.eye(2) * s * s / 2
    inpl[bad] = s
    amb[bad] = True
    return dataclasses.replace(res, uncertainty_deg=unc, tilt_covariance=tilt, inplane_uncertainty_deg=inpl,
                               ambiguous=amb)


#: :class:`DictionaryRefined`'s dictionary candidates for two grains (measured before the
#: whole-image choice, see its docstring) and for one. One grain, with the whole-image choice, on
#: 300 noisy single crystals each of tuning seeds 4041 and 4042: k = 3 < 1° 99.0 % / 96.0 % at
#: 34-36 images/s, k = 5 99.7 % / 98.3 % at 23-29/s (more starts, and the choice now picks the
#: right one among them).
BICRYSTAL_K = 3
SINGLE_K = 5
#: :class:`DictionaryRefined`'s first search for two grains: the partners of this many of the
#: one-grain fits' best distinct orientations (:func:`~edorient.indexing.proposals.refine_partners`).
#: Two paid when the first search was the only one (65 % of 100 bicrystals both < 2° against 57 %);
#: since the chosen answer's partner pass searches from both grains of every answer, a second
#: first grain finds what that pass finds anyway. 7,000 bicrystals of tuning seeds 4040-4043 (noisy
#: 128 px 3,000, ratios 0.3-0.7 1,000, 224 px 2,400, noise-free 600; session 41), 2 -> 1: the
#: same number right (+7 / -7 images), 12-20 % faster (12.7 -> 14.3-14.8 bicrystals/s at 128 px;
#: the first search's share of the time 35 -> 26 %).
FIRSTS = 1
#: Dictionary candidates for the partner of each refined grain in :class:`DictionaryRefined`'s
#: partner pass. 300 noisy bicrystals each of tuning seeds 4040 / 4041, both grains < 2°: 3 (then
#: the chain's k) 81.7 / 80.3 % at 10.4 / 9.4 bicrystals/s, 4 82.7 / 81.3 % at 8.6 / 8.8, 5 84.3 /
#: 82.3 % at 7.5 / 7.5 (two runs side by side each time).
PARTNER_K = 5

#: The dictionary chain's correlation (:class:`~edorient.indexing.proposals.DictionaryProposals`):
#: angular frequencies up to 60 only, read out on 120 in-plane angles (3° steps; the refinement's
#: basin is ~3°). 300 noisy bicrystals each of tuning seeds 4040 / 4041 with 3,200 directions:
#: frequencies up to 60 or 90 chose the same candidates as all 180 (identical errors, 5-10 % faster);
#: 120 angles instead of 360 both grains < 2° 89.3 / 90.3 % against 91.7 / 90.0 % at 7.2 / 6.4
#: instead of 5.3 / 5.0 bicrystals/s (180 angles: 89.0 / 88.3 % at 5.9 / 5.7). Fewer frequencies
#: lose more than they gain (6,400 directions, with the chosen answer's partner pass): 40 on 80
#: angles 95.3 / 94.0 % at 4.8 / 4.6 bicrystals/s, 30 on 60 92.7 / 94.3 % at 4.8 / 4.8, against
#: 95.3 / 96.0 % at 4.1 / 3.9 with 60 on 120.
DICTIONARY_MAX_FREQUENCY = 60
DICTIONARY_ANGLES = 120

#: The partner pass from the whole-image choice's answer (:class:`DictionaryRefined`'s
#: ``chosen_partner_k`` and ``chosen_partner_rounds``): the dictionary's best partners of each
#: chosen grain, and how many times over for the images whose answer it changed. 300 noisy
#: bicrystals each of tuning seeds 4040 / 4041 (6,400 directions), both grains < 2°: without it
#: 91.7 / 94.3 % at 5.7 / 5.7 bicrystals/s; k 1 94.3 / 95.7 % at 4.3 / 4.2, k 2 95.3 / 96.0 % at
#: 4.1 / 3.9, k 3 95.3 % at 3.8 (4040); in place of the gated partner pass before the choice
#: (``partner_passes`` 0) k 2 93.3 / 94.3 %, k 3 93.7 / 94.3 %. Two rounds 96.0 / 96.0 % at 4.2 /
#: 4.1 (the rate moves by ~10 % between sittings), three the same. The partners in both mirror
#: families (``candidates(other_family=True)``): k 1 95.3 / 96.0 % at 4.1 / 4.1, k 2 96.3 / 96.7 %
#: at 3.6 / 3.5 (not kept: +0.3 / +0.7 points for 13 % of the speed). k 5: 97.3 / 96.7 % at 2.9 /
#: 2.8; candidates 3-5 only for the doubtful fits (ambiguous or spots unexplained) after the two
#: rounds: 96.3 / 96.0 % at 3.9 / 3.8 (the images k 5 wins are mostly not flagged).
CHOSEN_PARTNER_K = 2
CHOSEN_PARTNER_ROUNDS = 2
#: The chosen answer's partner pass skips the images whose answer the gated partner pass already
#: searched from (each grain within this many degrees; None: none skipped): that pass removed the
#: same grains the same way and read the dictionary's pool for ``partner_k`` partners, at least
#: the ``chosen_partner_k`` this pass reads (5 and 2 by default). Measured on 4,400 noisy bicrystals of tuning seeds 4040-4043 (128 px, random
#: ratios included): the same 80 images with a grain > 2° off with and without the skip, no
#: answer moved by more than 0.1° (about a tenth of them by less: the chosen pass refines its
#: answers once more), 5 more images flagged; 0.4-5.5 % faster (the two runs side by side).
CHOSEN_SKIP_DEG = 0.5
#: The chosen answer's partner pass leaves out, in its first round, the search from an answer
#: grain within this many degrees of the first search's first grain (None: none left out): the
#: first search paired that grain with the dictionary's partners on the image with its spots
#: erased, and those pairs, refined, are among the image's hypotheses already. The grain's
#: partner is searched for again only where the answer's grain is another (or moved since:
#: refined further, the spots it removes are others): 128 of the 184 images of the first round
#: searched from one grain on 200 noisy bicrystals of tuning seed 4041. Measured on noisy
#: bicrystals of tuning seeds 4040-4043 (1,000 / 400 / 600 / 1,000; 128 px, 0.5:0.5), ratios
#: 0.3-0.7 (4040 / 4043: 400 / 600) and 224 px (4040 / 4041: 600 each), both grains < 2°:
#: +1 / -2 images of 5,200 (4042 one mended, 4043 two lost), 4-13 % faster in runs side by
#: side. The same for the gated partner pass (whose 5 partners a grain are more than the first
#: search's 3): +1 / -4 on 4040-4042 for 4 % more speed, not kept.
CHOSEN_FIRST_SKIP_DEG = 0.5
#: Dictionary candidates read for each partner search on an image with a grain erased, of which
#: the ones that fit the whole image best are kept (:func:`~edorient.indexing.proposals.partner_candidates`;
#: None: the dictionary's own best). 300 noisy bicrystals each of tuning seeds 4040 / 4041
#: (6,400 directions, the other defaults), both grains < 2°, two runs side by side each time:
#:
#: - none: 96.0 / 96.0 % at 10.2 / 9.8 bicrystals/s;
#: - the pool read exactly (the dictionary's ``pool`` best): 8 97.7 / 97.0 % at 8.7 / 9.1; 12
#:   97.7 / 97.7 % at 7.7 / 7.5; 20 98.0 / 98.0 % at 6.5 / 6.5. With 12, cutting one of the other
#:   searches to pay for it gives back what it wins: one first grain (``firsts`` 1) 98.0 / 96.7 % at 9.7 / 9.9, one
#:   chosen partner 96.7 / 97.3 % at 8.2 / 8.1, one round 97.3 / 97.3 % at 8.2 / 8.1, 3 gated
#:   partners 97.3 / 97.0 % at 7.9 / 8.0;
#: - the pool as read now (the exact best ``k`` and the best of the other entries read for them):
#:   12 97.7 / 97.3 % at 10.3 / 10.2; **20 98.0 / 98.0 % at 9.2 / 9.1**; 30 98.0 / 98.0 % at 8.2 / 8.3.
#:   A third seed, 4042: none 96.3 %, 20 96.7 %.
#:
#: With pool 12 on seed 4040 every miss left was a search failure (the truth, refined, fits the
#: whole image better than the answer in all 7).
PARTNER_POOL = 20

#: :class:`DictionaryRefined`'s zone-axis twins (:func:`zone_twin_pass`): how many per grain
#: (0: off), and how much better a twin must fit the whole image than the answer to replace it
#: (within it either way, the grain is flagged ``ambiguous``). The fits of an answer and its twin
#: differ only through the few reflections off the zone's plane; where they differ by less than
#: the noise, the choice is a coin toss. Measured on noisy images of tuning seeds (300
#: bicrystals each of 4040 / 4041 / 4042, both grains < 2°; the margin tried on the same chain's
#: answers): without the pass 98.0 / 98.0 / 96.7 %; margin 0 98.7 / 98.0 / 97.3 % (4 answers
#: that were right moved to a twin that fitted better by 0-2.1e-4); 1e-4 99.0 / 98.3 / 97.0 %;
#: 2.5e-4, 5e-4 and 1e-3 98.7 / 98.7 / 97.3 % (none moved wrongly; 5e-4 is the middle of that
#: plateau), 5 % slower. 1,000 single crystals of seed 4044 (< 1°): 99.6 -> 99.8 % at 47 -> 41
#: images/s, the two misses left flagged ``ambiguous``. Every miss of 2,000 single crystals of
#: seed 4043 was the truth's twin, within 0.03-0.72° (docs/results.md, "Session 20: zone-axis twins").
#: Twins per grain, the pass applied to the same chain's answers (session 21): 1 / 2 / 3 twins
#: 98.7 / 98.7 / 98.7 % (4040), 98.7 / 98.7 / 98.7 % (4041), 97.3 / **98.0** / 98.0 % (4042):
#: near a two-fold axis several high-index zones lie within a few degrees ([9 -9 1], [11 -13 1]
#: near [1 -1 0]) and the heaviest is not always the one; a second twin costs ~2 ms an image.
#: Single crystals (1,000 of seed 4044): 99.8 % with any of them.
ZONE_TWINS = 2
TWIN_MARGIN = 5e-4

#: :class:`DictionaryRefined`'s partners indexed from spot pairs
#: (:func:`~edorient.indexing.proposals.pair_partner_hypotheses`) for each grain of the answers
#: still doubtful after the zone-axis twin pass (flagged ``ambiguous`` or spots unexplained); 0:
#: off. Noisy bicrystals of tuning seeds 4040 / 4041 / 4042 (1,000 / 400 / 600), both grains < 2°:
#: without 96.3 / 97.5 / 98.7 %, 3 97.3 / 98.25 / 98.8 % (net +10 / +3 / +1 images); 5, or
#: the 20 best re-ranked by their whole-image fit, the same on 4040 for 1.3-1.5x the pass's time.
#: The pass costs 4-8 % of the chain's time (docs/results.md, "Session 34").
PAIR_PARTNER_K = 3
#: How many times over the spot-pair pass runs for the images whose answer's orientation it
#: moved (:func:`orientations_moved`: a grain by more than 1°): the partners of a moved answer
#: are indexed from the peaks *its* grains leave unexplained, which the answer before hid. Noisy
#: bicrystals of tuning seeds 4040 / 4041 / 4042 (1,000 / 400 / 600), both grains < 2°: one round
#: 97.3 / 98.25 / 98.83 %, two 97.7 / 98.25 / 98.83 % (4041 / 4042 with a first version that took
#: every answer rewritten as another matrix); random ratios 0.3-0.7 (400 each of 4040 / 4041)
#: 96.25 / 96.5 % -> 96.5 / 96.75 %. All six images mended were 4-16° off, none lost; the second
#: round runs on a few images in a thousand. The pass's refinement with no pruning among its
#: hypotheses (``Refiner.keep`` None) as well: 97.5 / 98.5 / 98.83 %, 96.5 / 97.5 % (its gains
#: beyond two rounds mostly zone-axis twins, which fit as well as the truth: coin tosses).
PAIR_PARTNER_ROUNDS = 2
#: Rounds of the chosen answer's partner pass (:func:`chosen_partner_pass`) again, at the end, for
#: the images whose answer's orientation the zone-axis twin pass or the spot-pair pass moved
#: (:func:`orientations_moved`): a grain those passes brought has had no dictionary search for
#: its partner on the image with it erased. Of the noisy bicrystals of tuning seed 4043 (1,000)
#: missed with the passes before, 5 had the right grain and the truth's partner as the first
#: candidate of that search, refined to 0.03-0.3° and fitting the whole image best. Both grains
#: < 2°, without -> two rounds: 4043 97.4 -> 97.9 % (those 5 mended), 4040 (1,000) 97.8 %, 4042
#: (600) 98.83 -> 99.0 %, 4041 (400) 98.25 %, random ratios 4040 / 4041 (400 each) 96.5 / 97.0 ->
#: 96.5 / 97.25 %: 7 mended, none lost. (One round, measured with the whole-image fit at five
#: weights, lost one image of 4040 that the second round gave back.) The pass runs on a few
#: images in a hundred.
LATE_CHOSEN_ROUNDS = 2


class DictionaryRefined(Estimator):
    """The fast CNN-free chain: batched dictionary proposals, refined.

    One grain: the ``k`` best distinct entries of the template dictionary
    (:class:`~edorient.indexing.proposals.DictionaryProposals`: polar correlation over the
    whole dictionary for a chunk of images at once, no ring refinement) with their half turns,
    refined (with ``families``, also each in its other mirror family), the refinement's ~3°
    basin replacing template matching's ring search. Two grains:
    :func:`~edorient.indexing.proposals.refine_sequential` (grain A as one grain, the spots of
    its ``firsts`` best distinct fits erased in turn, the dictionary on what is left, the pairs
    refined). Where the fit is bad (fewer than ``fallback_below`` of the image's brightest spots
    on the model's, :func:`~edorient.indexing.proposals.explained_peaks`), ``partner_passes``
    batched partner passes (:func:`~edorient.indexing.proposals.dictionary_partner_hypotheses`:
    each refined grain removed (``partner_removal``), the dictionary for the other), keeping per
    image the fit that explains more; a fit still bad is reported ``ambiguous`` with an
    uncertainty of ``unexplained_sigma_deg``.

    Parameters measured on noisy bicrystals of seed 4040 (benchmarks/bench_accuracy.py's images,
    not its test seed): a denser dictionary (800 directions) helped (both grains < 2° 48 -> 57 %
    of 100), more candidates did not (k 6 or 8: 49-56 %), two first grains did (57 -> 65 %; not
    since the chosen answer's partner pass: :data:`FIRSTS`), one partner pass did (65 -> 72 %), a
    second hardly (73 %). k = 3 instead of 4: 72.7 % against
    71 % of 300 bicrystals (seeds 4040 and 4041) at 1.5x the speed (single crystals of seed 4041:
    94.0 % under 1° against 93.5 %); k = 2: 66 % of 100.

    The matcher's density matters most (benchmarks/bench_accuracy.py's ``--dictionary-directions``,
    6,400 since 2026-12-04 evening). 300 noisy bicrystals each of tuning seeds 4040 / 4041, both
    grains < 2°: 800 directions 84.3 / 82.3 % at 6.7 / 6.4 bicrystals/s; 3,200 91.7 / 90.0 % at
    4.6 / 4.4 (5.3 / 5.0 with the frequencies up to 60 only, the same answers; 89.3 / 90.3 % at
    7.2 / 6.4 read out on 120 angles, :data:`DICTIONARY_ANGLES`); 6,400 on 120 angles 90.7 / 93.0 %
    at 5.3 / 5.1; a denser dictionary for the partner pass only (1,600 or 3,200 directions)
    88.0-88.7 / 84.7-85.0 %. Single crystals (300 noisy each of seeds 4041 / 4042, k = 5, < 1°):
    800 directions 5 misses in 600 at 24/s, 3,200 1 at 20/s, 6,400 none at 16/s.

    With ``image_fit`` (the default) the answer is the refined hypothesis that fits the whole
    image best (:func:`~edorient.indexing.proposals.image_fit_choice`), not the one the
    refinement scored best, refined once more where the two differ. ``k`` None: :data:`SINGLE_K`
    for one grain, :data:`BICRYSTAL_K` for two.

    ``partner_k``: the dictionary's candidates for each partner (:data:`PARTNER_K`; None: ``k``).
    ``partner_ambiguous``: the partner passes also take the fits flagged ``ambiguous`` whose
    spots are all explained (the partner pass's misses are mostly weak second grains none of
    whose spots is among the brightest). Measured on 300 noisy bicrystals each of the tuning
    seeds 4040 / 4041: both grains < 2° 80.7 -> 81.7 % / 79.3 -> 80.3 %, at 10.7 -> 10.0 and
    9.8 -> 9.5 bicrystals/s (the partner pass for every image instead: 83.0 % on 4040 at 30 %
    less speed).

    ``partner_join``: how the partner pass's refined pairs meet the first search's. 'append' (the
    default with ``image_fit``; None: that, or 'merge' without it): they join the image's hypotheses and the whole-image choice decides; 'merge' (the
    version before): the pass's best replaced the answer only where it explained more of the
    image's spots (or as many at a better refinement score), so a right pair that did not was
    lost before the whole-image choice saw it; 'after': the partner pass starts from the
    whole-image choice's answer, and the choice is made again. Measured with 6,400 directions on
    300 noisy bicrystals each of tuning seeds 4040 / 4041, both grains < 2°: merge 90.7 / 93.0 % at
    6.1 / 5.8 bicrystals/s, append 91.7 / 94.3 % at 5.7 / 5.7, after 90.7 / 94.0 % at 5.7 / 6.0;
    with the partner pass for every bicrystal (``fallback_below`` 1.01) merge 93.0 / 93.7 % at
    3.7 / 3.7, append 94.0 / 95.0 % at 3.4 / 3.2, after 94.3 / 95.3 % at 3.6 / 3.8. (Where the
    misses were: in 35 of the 49 of merge the missing grain was among the top 5 of the dictionary
    on the image with the answer's right grain erased, first in 28.)

    ``chosen_partner_k`` (None: :data:`CHOSEN_PARTNER_K` with ``image_fit``, 0 without; 0: off):
    after the whole-image choice, every bicrystal gets a partner pass from its *chosen* answer:
    each grain's spots erased in turn, the dictionary's best ``chosen_partner_k`` partners (and
    half turns) on what is left, each paired with the grain kept, refined; the pairs join the
    image's hypotheses and the choice is made again, ``chosen_partner_rounds`` times over for
    the images whose answer moved (a grain by more than ~1°), but not on the images whose answer
    the gated pass searched from already (``chosen_skip_deg``, :data:`CHOSEN_SKIP_DEG`), nor, in
    its first round, from an answer grain that is the first search's first grain (with one first
    grain; ``chosen_first_skip_deg``, :data:`CHOSEN_FIRST_SKIP_DEG`). The
    gated pass above starts from the refinement's best pair, which is often not the pair the
    whole-image choice ends with: in 10 of the 25 misses of tuning seed 4040 the missing grain
    was the dictionary's first candidate on the image with the chosen answer's right grain
    erased, and that pair, refined, fitted the whole image better than the answer. Measured:
    :data:`CHOSEN_PARTNER_K`.

    ``partner_pool`` (:data:`PARTNER_POOL`; None: off): every partner search on an image with a
    grain's spots erased (the first search's, the gated pass's and the chosen answer's) reads a
    pool of ``partner_pool`` dictionary candidates and keeps the ones whose one-grain models fit
    that image best (:func:`~edorient.indexing.proposals.partner_candidates`). The polar correlation ranks a
    partner by the rings and angles of its spots, and a grain's erased spots take some of the
    partner's with them; a model drawn and compared over every pixel ranks the right partner
    higher. Measured: :data:`PARTNER_POOL`.

    ``pair_partner_k`` (:data:`PAIR_PARTNER_K`; None: that with ``image_fit`` for two grains,
    else 0): last, after the zone-axis twins, the images still flagged (``ambiguous``, or
    fewer than ``fallback_below`` of their peaks explained) get partners indexed from the
    positions of the peaks each answer grain leaves unexplained
    (:func:`~edorient.indexing.proposals.pair_partner_hypotheses`: two spots' lengths and angle
    matched to two reflections'), refined, joined to the image's hypotheses, and the whole-image
    choice made again (an answer that moved gets its zone-axis twins refined, as every answer
    did). The dictionary's read of an image with a grain erased ranks a partner by rings of
    intensity that the erasing cut into; the unexplained peaks' positions do not depend on them.
    Measured: :data:`PAIR_PARTNER_K`. ``pair_partner_rounds`` (:data:`PAIR_PARTNER_ROUNDS`): the
    pass again for the images whose answer it moved. ``late_chosen_rounds``
    (:data:`LATE_CHOSEN_ROUNDS`): the chosen answer's partner pass again at the end for the
    images whose answer the twin or spot-pair passes moved.

    ``partner_removal`` (None: :data:`~edorient.indexing.proposals.PARTNER_REMOVAL`, 'subtract'):
    how the partner passes (the gated one and the chosen answer's) remove a refined grain before
    the dictionary looks for its partner: its refined model subtracted in linear intensity
    (:func:`~edorient.indexing.proposals.subtract_grain`), or its spots erased ('erase', the
    first search's way).

    ``twins`` (:data:`ZONE_TWINS`; None: that with ``image_fit``, else 0) and ``twin_margin``
    (:data:`TWIN_MARGIN`): after the partner passes, every answer grain's zone-axis twins (the
    orientation turned 180° about a zone axis near its beam that is no two-fold axis of the
    crystal: the same zero-order Laue zone, the beam 2δ away) are refined; a twin that fits the
    whole image better by more than the margin replaces the answer, one within it either way
    flags the grain ``ambiguous`` (:func:`zone_twin_pass`).

    ``keep_worse`` False: an answer that the whole-image choice moved and the refinement refined
    once more is kept only if it fits the whole image at least as well as the answer before
    (:func:`rechoose_by_image_fit`). Off by default, as measured on the tuning seeds (300 each of
    4040 / 4041, with the chosen answer's partner pass): noisy 95.7 / 96.0 % both < 2° against
    96.0 / 96.0 % without the guard, noise-free 98.7 / 99.3 % against 99.0 / 99.3 % (the
    whole-image fit of a noisy image is not a perfect judge either way); on 24 clean bicrystals of
    the tests it kept two answers (0.9° and 3.3° off) that the refinement had moved 17° and 4.8°.

    ``cnn`` (a :class:`CNNEstimator` of as many grains): its answer and half turns
    (:func:`cnn_starts`) are refined too and join the hypotheses of the whole-image choice. Off
    by default: with the shipped bicrystal model trained further on a GPU (6.5° median), 300 noisy
    bicrystals of seed 4040 went from 80.7 % to 81.3 % both under 2° at 20 % less speed (7.8
    instead of 9.7/s); a CNN within the refinement's ~3° basin would make it pay.
    """

    name = "dictionary + refinement"

    def __init__(self, matcher: TemplateMatcher, refiner, grains: int = 1, k: int | None = None, separation_deg: float = 4.0,
                 firsts: int = FIRSTS, fallback_below: float | None = 0.95, partner_passes: int = 1,
                 unexplained_sigma_deg: float | None = 90.0, first_levels=None, levels=None,
                 families: bool = True, image_fit: bool = True, cnn: CNNEstimator | None = None,
                 partner_ambiguous: bool = True, partner_k: int | None = PARTNER_K, partner_join: str | None = None,
                 max_frequency: int | None = DICTIONARY_MAX_FREQUENCY, n_angles: int | None = DICTIONARY_ANGLES,
                 chosen_partner_k: int | None = None, chosen_partner_rounds: int = CHOSEN_PARTNER_ROUNDS,
                 keep_worse: bool = True, partner_pool: int | None = PARTNER_POOL, twins: int | None = None,
                 twin_margin: float = TWIN_MARGIN, pair_partner_k: int | None = None,
                 pair_partner_rounds: int = PAIR_PARTNER_ROUNDS, late_chosen_rounds: int = LATE_CHOSEN_ROUNDS,
                 partner_removal: str | None = None, chosen_skip_deg: float | None = CHOSEN_SKIP_DEG,
                 chosen_first_skip_deg: float | None = CHOSEN_FIRST_SKIP_DEG) -> None:
        from edorient.indexing.proposals import PARTNER_REMOVAL, REMOVALS, DictionaryProposals, spot_pair_indexer

        super().__init__(matcher.scorer, grains)
        self.matcher = matcher
        self.refiner = refiner
        k = (SINGLE_K if grains == 1 else BICRYSTAL_K) if k is None else int(k)
        self.proposer = DictionaryProposals(matcher, k=k, separation_deg=separation_deg, max_frequency=max_frequency,
                                            n_angles=n_angles)
        self.firsts = int(firsts)
        self.fallback_below = None if fallback_below is None else float(fallback_below)
        self.partner_passes = int(partner_passes)
        self.unexplained_sigma_deg = unexplained_sigma_deg
        self.first_levels, self.levels = first_levels, levels
        self.families = bool(families)
        self.image_fit = bool(image_fit)
        if cnn is not None and (cnn.grains != grains or not self.image_fit):
            raise EdorientError(f"the CNN's starts need a model of this chain's {grains} grain(s) (it finds "
                                f"{cnn.grains}) and the whole-image choice (image_fit True)")
        self.cnn = cnn
        self.partner_ambiguous = bool(partner_ambiguous)
        self.partner_k = None if partner_k is None else int(partner_k)  # None: k
        if partner_join is None:
            partner_join = "append" if self.image_fit else "merge"
        if partner_join not in ("merge", "append", "after") or (partner_join != "merge" and not self.image_fit):
            raise EdorientError(f"partner_join must be 'merge', or 'append' / 'after' with the whole-image choice; "
                                f"got {partner_join!r}")
        self.partner_join = partner_join
        if chosen_partner_k is None:
            chosen_partner_k = CHOSEN_PARTNER_K if self.image_fit else 0
        self.chosen_partner_k = int(chosen_partner_k)
        self.chosen_partner_rounds = int(chosen_partner_rounds)
        self.chosen_skip_deg = None if chosen_skip_deg is None else float(chosen_skip_deg)
        self.chosen_first_skip_deg = None if chosen_first_skip_deg is None else float(chosen_first_skip_deg)
        self.late_chosen_rounds = int(late_chosen_rounds)
        self.partner_removal = PARTNER_REMOVAL if partner_removal is None else str(partner_removal)
        if self.partner_removal not in REMOVALS:
            raise EdorientError(f"partner_removal must be one of {REMOVALS}, not {self.partner_removal!r}")
        self.keep_worse = bool(keep_worse)
        self.partner_pool = None if partner_pool is None else int(partner_pool)
        if self.chosen_partner_k and not self.image_fit:
            raise EdorientError(f"chosen_partner_k {self.chosen_partner_k} needs the whole-image choice (image_fit "
                                f"True); give 0 to go without")
        self.twins = (ZONE_TWINS if self.image_fit else 0) if twins is None else int(twins)
        self.twin_margin = float(twin_margin)
        if self.twins and not self.image_fit:
            raise EdorientError(f"twins {self.twins} needs the whole-image choice (image_fit True); give 0 to go without")
        if pair_partner_k is None:
            pair_partner_k = PAIR_PARTNER_K if self.image_fit and grains == 2 and self.fallback_below is not None else 0
        self.pair_partner_k = int(pair_partner_k)
        self.pair_partner_rounds = int(pair_partner_rounds)
        if self.pair_partner_k and (not self.image_fit or grains != 2 or self.fallback_below is None):
            raise EdorientError(f"pair_partner_k {self.pair_partner_k} needs two grains, the whole-image choice "
                                f"(image_fit True) and the explained-spots check (fallback_below); give 0 to go without")
        self.pair_indexer = spot_pair_indexer(refiner) if self.pair_partner_k else None

    def estimate(self, images01) -> Estimate:
        from edorient.indexing.proposals import explained_peaks, refine_sequential, with_half_turns

        x = self._check(images01)
        first = None
        if self.grains == 1:
            starts, _ = self.proposer.candidates(x, other_family=self.families)
            res = self.refiner.refine(x, with_half_turns(starts)[:, :, None], levels=self.levels)
        else:
            res, single = refine_sequential(self.refiner, self.proposer, x, firsts=self.firsts,
                                            first_levels=self.first_levels, levels=self.levels, pool=self.partner_pool)
            first = single.rotations[:, 0] if self.firsts == 1 else None
        used = np.zeros(len(x), dtype=bool)
        gated_rows = None
        expl = None
        if self.fallback_below is not None:
            expl = explained_peaks(self.refiner, res, x)
            for _ in range(self.partner_passes if self.grains == 2 and self.partner_join != "after" else 0):
                bad = self._partner_rows(res, expl)
                if not len(bad):
                    break
                used[bad] = True
                gated_rows, gated_from = bad, res.rotations[bad]
                second = self._partner_pass(x, res, bad)
                if self.partner_join == "append":  # the whole-image choice below decides
                    res = append_rows(res, bad, second)
                    break  # (res's answers are unchanged: another pass would propose the same)
                ex2 = explained_peaks(self.refiner, second, x[bad])
                old = expl[bad]
                better = (np.nan_to_num(ex2, nan=-1) > np.nan_to_num(old, nan=-1)) | (
                    (np.nan_to_num(ex2, nan=-1) == np.nan_to_num(old, nan=-1)) & (second.scores >= res.scores[bad]))
                expl = expl.copy()
                expl[bad[better]] = ex2[better]
                res = merge_results(res, bad[better], second, np.flatnonzero(better))
        if self.cnn is not None:  # the CNN's answer, refined, competes in the whole-image choice
            res = append_hypotheses(res, self.refiner.refine(x, cnn_starts(self.cnn, x), levels=self.levels))
        if self.image_fit:
            res, expl, _ = rechoose_by_image_fit(self.refiner, self.matcher.scorer.simulator, res, x, expl, self.levels,
                                                 self.keep_worse)
        if self.partner_join == "after" and self.grains == 2 and expl is not None:
            # the partner pass from the chosen answer; its hypotheses join the whole-image choice again
            bad = self._partner_rows(res, expl)
            if len(bad):
                used[bad] = True
                res = append_rows(res, bad, self._partner_pass(x, res, bad))
                res, expl, _ = rechoose_by_image_fit(self.refiner, self.matcher.scorer.simulator, res, x, expl,
                                                     self.levels, self.keep_worse)
        if self.chosen_partner_k and self.grains == 2:
            # every image: each grain of the chosen answer with the dictionary's best partners on
            # the image with that grain erased; the whole-image choice is made again
            rows = np.arange(len(x))
            if self.chosen_skip_deg is not None and gated_rows is not None and \
                    (self.partner_k or self.proposer.k) >= self.chosen_partner_k:
                # the images whose answer the gated pass searched from already
                same = np.zeros(len(x), dtype=bool)
                same[gated_rows] = ~orientations_moved(self.refiner.proper, gated_from, res.rotations[gated_rows],
                                                       self.chosen_skip_deg)
                rows = rows[~same]
            # the answer grains the first search searched from already are left out (first round)
            searched = None if self.chosen_first_skip_deg is None or first is None else \
                ~grains_near(self.refiner.proper, res.rotations[rows], first[rows], self.chosen_first_skip_deg)
            for _ in range(self.chosen_partner_rounds):
                if not len(rows):
                    break
                res, expl, moved = self._chosen_pass(x, res, expl, rows, searched)
                rows = rows[moved]
                searched = None
        chosen = res.rotations  # (the answers the chosen-partner pass saw)
        if self.twins:
            res, expl, _, _ = zone_twin_pass(self.refiner, self.matcher.scorer.simulator, x, res, expl, self.levels,
                                          self.twin_margin, self.twins)
        if self.pair_partner_k:
            res, expl = self._pair_passes(x, res, expl)
        if self.chosen_partner_k and self.grains == 2:
            res, expl = self._late_chosen_passes(x, res, expl, chosen)
        if self.fallback_below is not None:
            if self.unexplained_sigma_deg is not None:
                res = widen_unexplained(res, expl < self.fallback_below, self.unexplained_sigma_deg)
        est = self._finish(res.rotations, np.repeat(res.scores[:, None], self.grains, axis=1), res)
        est.fallback = used
        est.explained = expl
        return est


    def _chosen_pass(self, x: np.ndarray, res, expl, rows: np.ndarray, searched: np.ndarray | None = None):
        """:func:`chosen_partner_pass` on images ``rows``, from the answer grains ``searched``
        (len(rows), 2) bool (None: both; an image with neither: both). Returns (res, expl,
        (len(rows),) whether the answer moved)."""
        searched = np.ones((len(rows), 2), dtype=bool) if searched is None else np.array(searched, dtype=bool)
        searched[~searched.any(1)] = True
        moved = np.zeros(len(rows), dtype=bool)
        for grains in ((0, 1), (0,), (1,)):  # the images searched from the same grains together
            sel = np.flatnonzero((searched == np.isin([0, 1], grains)).all(1))
            if not len(sel):
                continue
            r = rows[sel]
            sub, ex, _, mv = chosen_partner_pass(self.refiner, self.proposer, self.matcher.scorer.simulator, x[r],
                                                 take_rows(res, r), self.chosen_partner_k,
                                                 None if expl is None else expl[r], self.levels, self.keep_worse,
                                                 self.partner_pool, self.partner_removal, grains=grains)
            res = merge_results(res, r, sub, np.arange(len(r)))
            if expl is not None:
                expl = expl.copy()
                expl[r] = ex
            moved[sel] = mv
        return res, expl, moved

    def _late_chosen_passes(self, x: np.ndarray, res, expl, before: np.ndarray):
        """The chosen answer's partner pass (:meth:`_chosen_pass`) again for the images whose
        answer's orientation moved since ``before`` (n, 2, 3, 3) (:func:`orientations_moved`: the
        twin and spot-pair passes bring grains whose partners the dictionary never looked for),
        ``late_chosen_rounds`` times, each later round on the images the round before moved.
        Returns (res, expl)."""
        rows = np.flatnonzero(orientations_moved(self.refiner.proper, before, res.rotations))
        for _ in range(self.late_chosen_rounds):
            if not len(rows):
                break
            res, expl, moved = self._chosen_pass(x, res, expl, rows)
            rows = rows[moved]
        return res, expl

    def _pair_passes(self, x: np.ndarray, res, expl: np.ndarray):
        """The spot-pair pass (:meth:`_pair_pass`) on the images still in doubt, then
        ``pair_partner_rounds`` - 1 times more on those whose answer it moved. Returns (res, expl)."""
        rows = self._partner_rows(res, expl)
        for _ in range(self.pair_partner_rounds):
            if not len(rows):
                break
            before = res.rotations[rows]
            res, expl = self._pair_pass(x, res, expl, rows)
            rows = rows[orientations_moved(self.refiner.proper, before, res.rotations[rows])]
        return res, expl

    def _pair_pass(self, x: np.ndarray, res, expl: np.ndarray, rows: np.ndarray):
        """Partners indexed from spot pairs for images ``rows`` (:attr:`pair_partner_k`),
        refined, joined to their hypotheses, the whole-image choice made again. Returns (res, expl)."""
        from edorient.indexing.proposals import pair_partner_hypotheses

        sub = take_rows(res, rows)
        hyp = pair_partner_hypotheses(self.refiner, self.pair_indexer, x[rows], sub, self.pair_partner_k)
        joined = append_rows(sub, np.arange(len(rows)), self.refiner.refine(x[rows], hyp, levels=self.levels))
        sim = self.matcher.scorer.simulator
        sub, ex, _ = rechoose_by_image_fit(self.refiner, sim, joined, x[rows], expl[rows], self.levels, self.keep_worse)
        moved = np.flatnonzero(answer_moved(res.rotations[rows], sub.rotations))
        if self.twins and len(moved):  # a new answer's zone-axis twins, as every answer's
            tw, ext, _, _ = zone_twin_pass(self.refiner, sim, x[rows[moved]], take_rows(sub, moved), ex[moved],
                                           self.levels, self.twin_margin, self.twins)
            sub = merge_results(sub, moved, tw, np.arange(len(moved)))
            ex = ex.copy()
            ex[moved] = ext
        expl = expl.copy()
        expl[rows] = ex
        return merge_results(res, rows, sub, np.arange(len(rows))), expl

    def _partner_rows(self, res, expl: np.ndarray) -> np.ndarray:
        """The images whose fit gets the partner pass: too few of their spots explained, or (with
        ``partner_ambiguous``) flagged ambiguous."""
        return np.flatnonzero((expl < self.fallback_below)
                              | (res.ambiguous.any(axis=1) if self.partner_ambiguous else False))

    def _partner_pass(self, x: np.ndarray, res, rows: np.ndarray):
        """The refined partner hypotheses (a two-grain RefineResult) of images ``rows`` of ``res``."""
        from edorient.indexing.proposals import dictionary_partner_hypotheses

        hyp = dictionary_partner_hypotheses(self.refiner, self.proposer, x[rows], take_rows(res, rows), k=self.partner_k,
                                            pool=self.partner_pool, removal=self.partner_removal)
        return self.refiner.refine(x[rows], hyp, levels=self.levels)


def zone_twin_hypotheses(simulator, rotations: np.ndarray, max_twins: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(hypotheses (n, h, g, 3, 3), (n, h) the grain each replaces, -1 for an empty slot) from
    answers ``rotations`` (n, g, 3, 3): for each grain its zone-axis twins
    (:func:`~edorient.physics.twins.zone_axis_twins`, at most ``max_twins``; the crystal's
    reflections near the beam's plane decide the zones), paired with the answer's other grains.
    Empty slots repeat the answer."""
    from edorient.physics.twins import crystal_twins

    R = np.asarray(rotations, dtype=float)
    n, G = R.shape[:2]
    hyp = np.repeat(R[:, None], max(1, max_twins * G), axis=1)
    grain = np.full(hyp.shape[:2], -1)
    for i in range(n):
        q = 0
        for g in range(G):
            for T in crystal_twins(simulator.crystal, simulator.reflections, R[i, g], max_twins):
                hyp[i, q, g], grain[i, q] = T, g
                q += 1
    h = max(1, int((grain >= 0).sum(axis=1).max(initial=0)))
    return hyp[:, :h], grain[:, :h]


def zone_twin_pass(refiner, simulator, x: np.ndarray, res, expl: np.ndarray | None = None, levels=None,
                   margin: float | None = None, max_twins: int = 1):
    """Each answer grain's zone-axis twins (:func:`zone_twin_hypotheses`), refined and joined to
    the image's hypotheses; the answer moves to a twin only where that fits the whole image
    better by more than ``margin`` (:data:`TWIN_MARGIN`), and a grain whose twin fits within
    ``margin`` of it either way is flagged ``ambiguous`` (``direction_ambiguous`` too where the
    twin's beam lies more than 1° away).

    A pattern near a zone axis z that is no two-fold axis of the crystal shows the same zero-order
    Laue zone for an orientation R and for R turned 180° about z (:mod:`edorient.physics.twins`):
    only the few reflections off the zone's plane differ, and the two beam directions lie 2δ
    apart (δ the beam's tilt from z). The dictionary and the refinement reach one of the two; the
    other, 2-12° away, is outside the refinement's basin.

    Returns (res, expl, (n,) whether the answer moved, (n, g) the best twin's whole-image fit
    minus the answer's, NaN where the grain has no twin); the twins stay among the hypotheses."""
    import dataclasses

    from edorient.indexing.proposals import explained_peaks, image_fit_choice

    margin = TWIN_MARGIN if margin is None else float(margin)
    n, G = res.rotations.shape[:2]
    moved = np.zeros(n, dtype=bool)
    gap = np.full((n, G), np.nan)
    hyp, grain = zone_twin_hypotheses(simulator, res.rotations, max_twins)
    rows = np.flatnonzero((grain >= 0).any(axis=1))
    if not len(rows):
        return res, expl, moved, gap
    joined = append_rows(res, rows, refiner.refine(x[rows], hyp[rows], levels=levels))
    _, _, fits = image_fit_choice(simulator, take_rows(joined, rows), x[rows], all_fits=True)
    h0 = res.hypothesis_scores.shape[1]
    own = fits[np.arange(len(rows)), res.best[rows]]
    twin = np.where((grain[rows] >= 0) & np.isfinite(fits[:, h0:]), fits[:, h0:], -np.inf)
    for g in range(G):
        tg = np.where(grain[rows] == g, twin, -np.inf).max(axis=1)
        gap[rows, g] = np.where(np.isfinite(tg), tg - own, np.nan)
    tb = twin.argmax(axis=1)
    better = twin[np.arange(len(rows)), tb] > own + margin
    sw = rows[better]
    if len(sw):
        again = refiner.refine(x[sw], joined.hypothesis_rotations[sw, h0 + tb[better]][:, None], levels=levels)
        # (the answer before and the other twins stay on as hypotheses)
        joined = append_rows(merge_results(joined, sw, again, np.arange(len(sw))), sw, take_rows(joined, sw))
        if expl is not None:
            expl = expl.copy()
            expl[sw] = explained_peaks(refiner, again, x[sw])
        moved[sw] = True
        gap[sw] = np.nan  # the twin replaced the answer: the answer before is now its twin
        gap[sw, grain[sw, tb[better]]] = -twin[better, tb[better]] + own[better]
    tie = np.abs(np.nan_to_num(gap, nan=np.inf)) <= margin
    if tie.any():
        laue = simulator.crystal.laue
        far = np.zeros_like(tie)
        for i, g in zip(*np.nonzero(tie)):
            k = np.flatnonzero(grain[i] == g)
            H = joined.hypothesis_rotations[i, h0 : h0 + hyp.shape[1]]  # (a tie never moved the answer)
            far[i, g] = bool(np.any(laue.angle(np.broadcast_to(joined.rotations[i, g, 2], (len(k), 3)),
                                               H[k, g, 2]) > 1.0))
        joined = dataclasses.replace(joined, ambiguous=joined.ambiguous | tie,
                                     direction_ambiguous=joined.direction_ambiguous | (tie & far))
    return joined, expl, moved, gap


def cnn_starts(cnn: CNNEstimator, x: np.ndarray) -> np.ndarray:
    """Refinement starts (n, h, g, 3, 3) from a CNN's answer: its orientations (the pattern
    scorer's for each head's direction) and, for two grains, every combination of their half
    turns (4 pairs); for one grain the answer and its half turn."""
    from edorient.indexing.proposals import half_turn

    R = cnn.estimate(x).rotations
    if R.shape[1] == 1:
        return np.stack([R, half_turn(R)], axis=1)
    a, b = R[:, 0], R[:, 1]
    return np.stack([np.stack(p, axis=1) for p in ((a, b), (half_turn(a), b), (a, half_turn(b)),
                                                   (half_turn(a), half_turn(b)))], axis=1)


def append_hypotheses(res, other):
    """``res`` (a :class:`~edorient.indexing.refine.RefineResult`) with ``other``'s refined
    hypotheses of the same images appended to its own (its answer and every other field kept):
    what :func:`rechoose_by_image_fit` then chooses among."""
    import dataclasses

    if len(other.scores) != len(res.scores):
        raise EdorientError(f"cannot join the hypotheses of {len(res.scores)} and {len(other.scores)} images")
    return dataclasses.replace(res, **{f.name: np.concatenate([getattr(res, f.name), getattr(other, f.name)], axis=1)
                                       for f in dataclasses.fields(res) if f.name.startswith("hypothesis_")})


def append_rows(res, rows: np.ndarray, other):
    """``res`` with ``other``'s refined hypotheses (of images ``rows`` of ``res``) appended to
    those images' own; the other images get empty slots (score -inf, which the whole-image
    choice skips). Its answer and every other field are kept."""
    import dataclasses

    blank = {}
    for f in dataclasses.fields(other):
        if not f.name.startswith("hypothesis_"):
            continue
        v = getattr(other, f.name)
        fill = _empty_hypotheses(f.name, (len(res.scores),) + v.shape[1:], v.dtype)
        fill[rows] = v
        blank[f.name] = fill
    return append_hypotheses(res, dataclasses.replace(res, **blank))


def answer_moved(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(n,) whether the answer (n, g, 3, 3) moved: a matrix element by more than 0.02 (~1°)."""
    return np.abs(np.asarray(after) - np.asarray(before)).max(axis=(1, 2, 3)) > 0.02


def orientations_moved(proper: np.ndarray, before: np.ndarray, after: np.ndarray, deg: float = 1.0) -> np.ndarray:
    """(n,) whether answers (n, g, 3, 3) changed orientation: a grain by more than ``deg`` modulo
    the crystal's proper rotations ``proper``, the grains matched order-free. Unlike
    :func:`answer_moved` (any matrix element by 0.02), an answer that a choice replaced by the
    same orientation in another symmetry-equivalent matrix, or with its grains swapped, has not
    moved: of the 30 answers of 37 images the spot-pair pass changed as matrices on 400 noisy
    bicrystals of tuning seed 4040, 6 had moved."""
    from edorient.physics.symmetry import misorientation_deg

    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    same = misorientation_deg(a, b, proper).max(axis=1)
    if a.shape[1] == 2:
        same = np.minimum(same, misorientation_deg(a, b[:, ::-1], proper).max(axis=1))
    return same > deg


def grains_near(proper: np.ndarray, answers: np.ndarray, grain: np.ndarray, deg: float) -> np.ndarray:
    """(n, g) whether each grain of ``answers`` (n, g, 3, 3) lies within ``deg`` of ``grain``
    (n, 3, 3), modulo the crystal's proper rotations ``proper``."""
    from edorient.physics.symmetry import misorientation_deg

    A = np.asarray(answers, dtype=float)
    return np.stack([misorientation_deg(A[:, g], grain, proper) <= deg for g in range(A.shape[1])], axis=1)


def chosen_partner_pass(refiner, proposer, simulator, x: np.ndarray, res, k: int, expl: np.ndarray | None = None,
                        levels=None, keep_worse: bool = True, pool: int | None = None, removal: str | None = None,
                        grains=(0, 1)):
    """The partner pass from two-grain answers ``res`` of images ``x``: each answer grain removed
    in turn (its refined model subtracted, or its spots erased), the dictionary's ``k`` best on
    what is left (and their half turns) paired with the grain kept, refined, joined to the
    image's hypotheses, and the whole-image choice made again (:func:`rechoose_by_image_fit`). ``removal``: how a grain is removed
    (None: :data:`~edorient.indexing.proposals.PARTNER_REMOVAL`); ``grains``: the answer grains
    searched from (both by default). Returns (res, expl, (n,)
    whole-image fit, (n,) whether the answer moved: a grain by more than ~1°)."""
    from edorient.indexing.proposals import PARTNER_REMOVAL, dictionary_partner_hypotheses

    removal = PARTNER_REMOVAL if removal is None else removal
    # (slot 0, the answer itself, is among the image's hypotheses already)
    hyp = dictionary_partner_hypotheses(refiner, proposer, x, res, k=k, pool=pool, removal=removal, grains=grains)[:, 1:]
    out, expl, fit = rechoose_by_image_fit(refiner, simulator, append_rows(res, np.arange(len(x)), refiner.refine(
        x, hyp, levels=levels)), x, expl, levels, keep_worse)
    return out, expl, fit, answer_moved(res.rotations, out.rotations)


def rechoose_by_image_fit(refiner, simulator, res, x: np.ndarray, expl: np.ndarray | None = None, levels=None,
                          keep_worse: bool = True, valid: np.ndarray | None = None, tie_margin: float = TWIN_MARGIN):
    """``res`` with each image's answer replaced by the refined hypothesis that fits the whole
    image best (:func:`~edorient.indexing.proposals.image_fit_choice`), refined once more where
    that is not the refinement's own best; ``expl`` (the explained share of spots, or None)
    updated for those images. Returns (res, expl, (n,) the chosen hypotheses' whole-image fit).

    Without ``keep_worse`` an image whose answer, refined once more, fits the whole image worse
    than its answer before did keeps the answer before (the refinement from a hypothesis can
    leave its basin: a pair that fitted 0.85 went to 0.78, 17° off); the fit returned is then
    the final answer's. ``valid`` (n, H, W), optional: the pixels that hold data, for the fits and
    the refinement.

    A replaced answer, refined alone, would carry no ``ambiguous`` flag (no competitor): its
    grains are flagged where another of the image's hypotheses, distinct for that grain, fits the
    whole image within ``tie_margin`` of it (as the zone-axis twin pass flags a twin). Noisy
    bicrystals of the tuning seeds (4040 / 4041 / 4042: 1,000 / 400 / 600; random ratios 4040 /
    4041: 400 each), before -> after: grains > 2° off that were not flagged 8 -> 4, 2 -> 1,
    3 -> 2, 7 -> 6, 7 -> 1; right grains flagged 108 -> 116, 53 -> 59, 71 -> 79, 40 -> 45,
    58 -> 66; both grains < 2° the same or one image more (the flags gate the spot-pair pass)."""
    from edorient.indexing.proposals import explained_peaks, image_fit_choice

    best, fit, fits = image_fit_choice(simulator, res, x, all_fits=True, valid=valid)
    change = np.flatnonzero(best != res.best)
    if len(change):
        vc = None if valid is None else valid[change]
        again = refiner.refine(x[change], res.hypothesis_rotations[change, best[change]][:, None], levels=levels, valid=vc)
        _, fa = image_fit_choice(simulator, again, x[change], valid=vc)  # the refined answers' own fits
        if not keep_worse:
            old = fits[change, res.best[change]]
            worse = fa < old  # (NaN on either side: kept)
            fit = fit.copy()
            fit[change[worse]] = old[worse]
            fit[change[~worse]] = fa[~worse]
            again = take_rows(again, np.flatnonzero(~worse))
            change, fa = change[~worse], fa[~worse]
        if len(change):  # (refined alone, the answer has no competitor: its flags are set here)
            again = _flag_image_fit_ties(refiner, simulator.crystal.laue, again, fa, take_rows(res, change),
                                         fits[change], best[change], tie_margin)
        res = merge_results(res, change, again, np.arange(len(change)))
        if expl is not None and len(change):
            expl = expl.copy()
            expl[change] = explained_peaks(refiner, again, x[change])
    return res, expl, fit


def _flag_image_fit_ties(refiner, laue, again, fa: np.ndarray, before, fits: np.ndarray, chosen: np.ndarray,
                         margin: float):
    """``again`` (one refined hypothesis an image: the answer a whole-image choice took from the
    hypotheses of ``before``; ``fa`` (n,) its whole-image fit) with each grain flagged
    ``ambiguous`` where another of those hypotheses, distinct for that grain (misorientation >
    the refiner's ``distinct_deg``), fits the whole image within ``margin`` of the refined answer
    (``fits`` (n, h) their whole-image fits, ``chosen`` (n,) the answer's slot);
    ``direction_ambiguous`` too where that hypothesis' beam lies more than 1° from the grain's,
    modulo the Laue group ``laue``."""
    import dataclasses

    from edorient.indexing.refine import grain_distances

    H = before.hypothesis_rotations  # (n, h, G, 3, 3)
    n, G = H.shape[0], H.shape[2]
    tie = np.zeros((n, G), dtype=bool)
    far = np.zeros((n, G), dtype=bool)
    close = np.isfinite(fits) & (fits >= fa[:, None] - margin)
    close[np.arange(n), chosen] = False
    for g in range(G):
        mis, dang = grain_distances(H, again.rotations[:, g], g, refiner.proper, laue)
        hit = close & (mis > refiner.distinct_deg)
        tie[:, g] = hit.any(axis=1)
        far[:, g] = (hit & (dang > 1.0)).any(axis=1)
    return dataclasses.replace(again, ambiguous=again.ambiguous | tie,
                               direction_ambiguous=again.direction_ambiguous | far)


def concat_results(parts: list):
    """RefineResults of different images joined in order (hypothesis arrays padded with empty
    slots to the largest count)."""
    import dataclasses

    h = max(q.hypothesis_scores.shape[1] for q in parts)
    return type(parts[0])(**{f.name: np.concatenate([_padded_hypotheses(f.name, getattr(q, f.name), h)
                                                     if f.name.startswith("hypothesis_") else getattr(q, f.name)
                                                     for q in parts])
                             for f in dataclasses.fields(parts[0])})


def take_rows(res, rows: np.ndarray):
    """The :class:`~edorient.indexing.refine.RefineResult` of images ``rows`` only."""
    import dataclasses

    return type(res)(**{f.name: getattr(res, f.name)[rows] for f in dataclasses.fields(res)})


def _empty_hypotheses(name: str, shape: tuple, dtype) -> np.ndarray:
    """Slots of a RefineResult's ``hypothesis_`` field ``name`` that hold no hypothesis: score
    -inf (never chosen), identity rotations, calibration scale 1, zeros otherwise."""
    fill = np.full(shape, {"hypothesis_scores": -np.inf, "hypothesis_calibration_scale": 1.0}.get(name, 0.0), dtype=dtype)
    if name == "hypothesis_rotations":
        fill[...] = np.eye(3)
    return fill


def _padded_hypotheses(name: str, v: np.ndarray, h: int) -> np.ndarray:
    """A RefineResult's ``hypothesis_`` field ``name`` (n, h', ...) with empty slots up to h."""
    if v.shape[1] == h:
        return v
    return np.concatenate([v, _empty_hypotheses(name, (len(v), h - v.shape[1]) + v.shape[2:], float)], axis=1)


def merge_results(res, rows: np.ndarray, other, other_rows: np.ndarray):
    """``res`` (a :class:`~edorient.indexing.refine.RefineResult`) with its ``rows`` replaced by
    ``other``'s ``other_rows`` (hypothesis arrays padded to the larger count)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(res):
        a, b = getattr(res, f.name), getattr(other, f.name)
        if f.name.startswith("hypothesis_") and a.shape[1] != b.shape[1]:
            h = max(a.shape[1], b.shape[1])
            a, b = _padded_hypotheses(f.name, a, h), _padded_hypotheses(f.name, b, h)
        a = a.copy()
        a[rows] = b[other_rows]
        out[f.name] = a
    return type(res)(**out)


def build_estimator(simulator, grains: int = 1, model=None, refine: bool = True, matcher_directions: int = 400,
                    device: str = "cpu", explained_below: float | None = None,
                    families: bool = True) -> Estimator:
    """The estimator chain of ``edorient predict``: a CNN (``model``) or template matching as the
    proposal, refined against the image unless ``refine`` is False.

    ``explained_below`` (e.g. 0.95) turns on the second chance for bad fits (see
    :class:`Refined`): behind a CNN, template matching's proposal; for two grains, the partner
    pass. ``families``: the other mirror family's starts too (:class:`Refined`).
    """
    scorer = PatternScorer(simulator)
    matcher = None
    if model is not None:
        est: Estimator = CNNEstimator(model, scorer)
        if est.grains != grains:
            raise EdorientError(f"the model finds {est.grains} grain(s) but {grains} were asked for")
    else:
        matcher = TemplateMatcher(simulator, n_directions=matcher_directions)
        est = TemplateMatching(matcher, grains)
    if refine:
        from edorient.indexing.refine import Refiner

        fallback = partner = None
        if explained_below is not None:
            if matcher is None:
                matcher = TemplateMatcher(simulator, n_directions=matcher_directions)
                fallback = TemplateMatching(matcher, grains)
            partner = matcher if grains == 2 else None
        est = Refined(est, Refiner(simulator.crystal, simulator.config, device=device), families=families,
                      fallback=fallback, fallback_below=explained_below, partner=partner)
    return est
