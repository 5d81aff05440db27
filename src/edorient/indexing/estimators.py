"""One interface for every estimator: images in, orientations per grain out.

An :class:`Estimator` takes display images (n, H, W) in [0, 1] at its simulator's size and
calibration and returns an :class:`Estimate`: a full orientation per grain (the mirror family
and in-plane angle included), its label (the sector-reduced beam direction) and a score.

- :class:`TemplateMatching`: CNN-free; one grain by template matching over the whole
  orientation space, a second by Method 2's stage 2 (the first grain's spots erased);
- :class:`CNNEstimator`: a trained model's beam directions, each turned into the orientation
  whose pattern fits the image best (:meth:`PatternScorer.score`);
- :class:`Refined`: any of them as the proposal, refined against the image
  (:class:`~edorient.indexing.refine.Refiner`): the pipeline that chains them.

:func:`build_estimator` makes the chain ``edorient predict`` uses.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edorient.errors import EdorientError
from edorient.indexing.matching import PatternScorer, TemplateMatcher

__all__ = ["CNNEstimator", "Estimate", "Estimator", "Refined", "TemplateMatching", "build_estimator"]


@dataclass
class Estimate:
    """What an estimator found in n images of g grains."""

    rotations: np.ndarray  #: (n, g, 3, 3) orientations
    directions: np.ndarray  #: (n, g, 3) labels: beam directions reduced to the Laue sector
    scores: np.ndarray  #: (n, g) pattern correlation of each grain (refined: of the model)
    refinement: object | None = None  #: the RefineResult when refined


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
        d = self.directions(x)
        rots, scores = [], []
        for im, di in zip(x, d):
            c, R = self.scorer.score(im, di)
            rots.append(R)
            scores.append(c)
        return self._finish(np.stack(rots), np.stack(scores))


class Refined(Estimator):
    """``base``'s orientations refined against the image.

    Each grain starts from the base estimate, its half turn about the beam and the best
    orientation of the other mirror family (and that one's half turn); two grains try every
    combination (:func:`~edorient.indexing.proposals.grain_starts`). The best fit is kept.
    """

    def __init__(self, base: Estimator, refiner) -> None:
        super().__init__(base.scorer, base.grains)
        self.base = base
        self.refiner = refiner
        self.name = f"{base.name} + refinement"

    def hypotheses(self, images01, proposal: Estimate) -> np.ndarray:
        """(n, h, g, 3, 3) starts of the refinement."""
        from edorient.indexing.proposals import grain_starts

        out = []
        for im, rots in zip(images01, proposal.rotations):
            starts = [grain_starts(self.scorer, im, R) for R in rots]
            out.append(np.stack([np.stack(c) for c in itertools.product(*starts)]))
        return np.stack(out)

    def estimate(self, images01, proposal: Estimate | None = None) -> Estimate:
        x = self._check(images01)
        proposal = self.base.estimate(x) if proposal is None else proposal
        res = self.refiner.refine(x, self.hypotheses(x, proposal))
        return self._finish(res.rotations, np.repeat(res.scores[:, None], self.grains, axis=1), res)


def build_estimator(simulator, grains: int = 1, model=None, refine: bool = True, matcher_directions: int = 400,
                    device: str = "cpu") -> Estimator:
    """The estimator chain of ``edorient predict``: a CNN (``model``) or template matching as the
    proposal, refined against the image unless ``refine`` is False."""
    scorer = PatternScorer(simulator)
    if model is not None:
        est: Estimator = CNNEstimator(model, scorer)
        if est.grains != grains:
            raise EdorientError(f"the model finds {est.grains} grain(s) but {grains} were asked for")
    else:
        est = TemplateMatching(TemplateMatcher(simulator, n_directions=matcher_directions), grains)
    if refine:
        from edorient.indexing.refine import Refiner

        est = Refined(est, Refiner(simulator.crystal, simulator.config, device=device))
    return est
