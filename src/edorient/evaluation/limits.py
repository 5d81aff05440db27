"""How much of an accuracy target the images allow: the truth against its zone-axis twins.

A pattern near a zone axis that is no two-fold axis of the crystal shows the same zero-order
Laue zone for an orientation and for that orientation turned 180° about the zone
(:mod:`edorient.physics.twins`); only the few reflections off the zone's plane tell them apart,
and the twin's beam lies 2δ from the truth's (δ the beam's tilt from the zone). On a noisy image
the twin can fit as well as the truth, or better. Every estimator of :mod:`edorient.indexing`
chooses its answer by the whole-image fit (:func:`~edorient.indexing.proposals.image_fit_choice`);
where a wrong twin fits at least as well as the truth, none of them is right except by chance.

:func:`twin_limit` measures this on images whose truth is known: the truth refined, each grain's
zone-axis twins (paired with the other true grain) refined on their own, all compared by the
whole-image fit. The share of images where the truth beats every twin that is wrong (a grain
``wrong_deg`` or more off) bounds what a fit-based chain can reach on them. It is a bound from
above on that share (other confusions than twins are not counted) and says nothing about
estimators that use more than the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TwinLimit:
    """Per image (n,): the refined truth's whole-image fit, the best wrong twin's (-inf where
    the image has none), whether the truth fits better (``decidable``); (n, g) the refined
    truth's own errors (degrees; a refinement that left the truth shows here)."""

    truth_fit: np.ndarray
    twin_fit: np.ndarray
    truth_errors: np.ndarray
    decidable: np.ndarray

    @property
    def share(self) -> float:
        """The share of images where the truth fits better than every wrong twin."""
        return float(np.mean(self.decidable))


def twin_limit(refiner, simulator, images01: np.ndarray, rotations: np.ndarray, levels=None, max_twins: int | None = None,
               wrong_deg: float = 2.0) -> TwinLimit:
    """:class:`TwinLimit` of display images (n, H, W) with true orientations ``rotations``
    (n, g, 3, 3): the truth and each twin (:func:`~edorient.indexing.estimators.zone_twin_hypotheses`,
    ``max_twins`` a grain, default the chain's :data:`~edorient.indexing.estimators.ZONE_TWINS`)
    refined with ``refiner`` (``levels`` its schedule), each hypothesis alone (no pruning
    among them), and compared by :func:`~edorient.indexing.proposals.image_fit_choice`. A twin is
    wrong where, refined, a grain lies ``wrong_deg`` or more from the truth (modulo the Laue
    group, the grains matched order-free)."""
    from edorient.evaluation.metrics import grain_errors
    from edorient.indexing.estimators import ZONE_TWINS, zone_twin_hypotheses
    from edorient.indexing.proposals import image_fit_choice

    x = np.asarray(images01, dtype=np.float32)
    R = np.asarray(rotations, dtype=float)
    laue = simulator.crystal.laue
    truth = refiner.refine(x, R[:, None], levels=levels)
    _, truth_fit = image_fit_choice(simulator, truth, x)
    truth_err, _ = grain_errors(truth.rotations[..., 2, :], R[..., 2, :], laue)
    hyp, grain = zone_twin_hypotheses(simulator, R, ZONE_TWINS if max_twins is None else int(max_twins))
    img, slot = np.nonzero(grain >= 0)
    twin_fit = np.full(len(x), -np.inf)
    if len(img):
        tw = refiner.refine(x[img], hyp[img, slot][:, None], levels=levels)
        _, fit = image_fit_choice(simulator, tw, x[img])
        err, _ = grain_errors(tw.rotations[..., 2, :], R[img][..., 2, :], laue)
        wrong = err.max(axis=1) >= wrong_deg
        np.maximum.at(twin_fit, img[wrong], fit[wrong])
    return TwinLimit(truth_fit, twin_fit, truth_err, truth_fit > twin_fit)
