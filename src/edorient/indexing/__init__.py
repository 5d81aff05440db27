"""Orientation indexing beyond the coarse estimators: batched sub-degree refinement.

:class:`~edorient.indexing.refine.Refiner` fits the kinematic spot model to the image for
orientation proposals (template matching, CNN + pattern scorer); :mod:`edorient.indexing.proposals`
builds such proposals.
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
