"""The information limit of a set of images: the truth against its zone-axis twins by the
whole-image fit. An image drawn from the truth is decidable; the same label on an image drawn
from the truth's twin is not (the twin fits it better); a grain without a twin always is."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from edorient.evaluation.limits import twin_limit
from edorient.indexing import Refiner
from edorient.physics.orientation import rotation_from_zone_axis
from edorient.physics.twins import half_turn_about
from edorient.render import SimulationConfig, Simulator, display_transform
from edorient.structures import anatase


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=128))


def _near(xt, uvw, tilt_deg, inplane_deg, axis):
    R = rotation_from_zone_axis(uvw, xt.direct_matrix, inplane_deg)
    return Rotation.from_rotvec(np.radians(tilt_deg) * np.asarray(axis, float) / np.linalg.norm(axis)).as_matrix() @ R


def test_an_image_of_the_twin_is_not_decidable_and_one_of_the_truth_is(sim):
    xt = sim.crystal
    refiner = Refiner(xt, sim.config)
    a = _near(xt, [3, 1, 1], 3.0, 20.0, (1, 0.3, 0))  # 3° off a zone with no two-fold axis: a twin 6° away
    b = _near(xt, [1, 1, 1], 4.0, -35.0, (0.2, 1, 0))
    c = _near(xt, [0, 0, 1], 3.0, 10.0, (1, 1, 0))  # off a four-fold axis: no twin
    a_twin = a @ half_turn_about(xt.zone_axis_direction([3, 1, 1]))
    lin = sim.linear_images(np.stack([a, a_twin, b, c]))
    x = display_transform(np.stack([lin[0], lin[1], 0.5 * (lin[0] + lin[2]), 0.5 * (lin[1] + lin[2])]))
    singles = twin_limit(refiner, sim, x[:2], np.stack([a, a])[:, None], wrong_deg=1.0)
    assert singles.decidable.tolist() == [True, False]
    assert np.isfinite(singles.twin_fit).all()
    assert singles.truth_fit[0] > singles.twin_fit[0] and singles.twin_fit[1] > singles.truth_fit[1]
    pairs = twin_limit(refiner, sim, x[2:], np.stack([[a, b], [a, b]]))
    assert pairs.decidable.tolist() == [True, False]
    assert pairs.share == 0.5
    assert pairs.truth_errors[0].max() < 0.5
    none = twin_limit(refiner, sim, display_transform(lin[3:]), c[None, None])
    assert none.decidable.tolist() == [True] and none.twin_fit.tolist() == [-np.inf]
