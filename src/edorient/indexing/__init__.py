"""Orientation indexing: every estimator of a grain's orientation from an image.

- :mod:`~edorient.indexing.matching`: polar pattern correlation (:class:`PatternScorer`: the
  best orientation of a given beam direction, both mirror families) and CNN-free template
  matching over the whole orientation space (:class:`TemplateMatcher`);
- :mod:`~edorient.indexing.method2`: the thesis' Method 2 without an oracle (pick by score) and
  its stage 2 (erase the kept grain's spots, estimate the other);
- :mod:`~edorient.indexing.proposals`: orientation hypotheses from the coarse estimators;
- :mod:`~edorient.indexing.refine`: :class:`Refiner`, the batched fit of the kinematic spot model
  to the image (sub-degree orientations, uncertainty, margin, ambiguity).

The CNNs (:mod:`edorient.models`) give beam directions; :meth:`PatternScorer.score` turns them
into orientations. :mod:`edorient.evaluation` only measures what these produce.
"""

from edorient.indexing.refine import (
    DEFAULT_LEVELS,
    RefineLevel,
    Refiner,
    RefineResult,
    SpotModel,
    beam_tilt_error,
    misorientation_deg,
    proper_rotations,
)

__all__ = [
    "DEFAULT_LEVELS",
    "RefineLevel",
    "RefineResult",
    "Refiner",
    "SpotModel",
    "beam_tilt_error",
    "misorientation_deg",
    "proper_rotations",
]
