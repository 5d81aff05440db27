"""Every data mode samples the whole orientation space, with sector-reduced labels.

A beam direction in the 4/mmm sector plus an in-plane angle covers only half of SO(3) modulo
the crystal's proper rotations (422): the other half reaches the sector through a mirror, and
its patterns are the mirror images of the first half's, with the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from edorient.data.generate import GenerateConfig, sample_labels
from edorient.physics.orientation import beam_direction, rotation_from_direction
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase

LAUE = anatase().laue
MIRROR_Y = np.diag([1.0, -1.0, 1.0])  # a mirror of 4/mmm (crystal) and of the lab (detector y)


def _family(rotations):
    """+1 where the beam direction reaches the sector by a proper operation, -1 by an improper one."""
    d = beam_direction(rotations)
    return np.sign(np.sum(LAUE.reduce_proper(d) * LAUE.reduce(d), axis=-1))


@pytest.mark.parametrize("mode", ["thesis", "single", "random"])
def test_sampled_orientations_are_uniform_over_so3(mode):
    lab = sample_labels(GenerateConfig(mode=mode, n=20000, seed=3), LAUE)
    R = lab["rotations"].reshape(-1, 3, 3)
    # Haar measure: the rotation angle w has CDF (w - sin w) / pi, and E[R] = 0
    w = np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert stats.kstest(w, lambda x: (x - np.sin(x)) / np.pi).pvalue > 1e-3
    assert np.abs(R.mean(axis=0)).max() < 0.03  # sd of one entry's mean: 0.58 / sqrt(n) = 0.004
    # both families, half each (sd 0.0035 at n = 20,000)
    assert abs(np.mean(_family(R) > 0) - 0.5) < 0.02
    # the labels are the sector-reduced beam directions
    np.testing.assert_allclose(lab["directions"].reshape(-1, 3), LAUE.reduce(R[:, 2]), atol=1e-6)
    assert np.all(LAUE.in_sector(lab["directions"].reshape(-1, 3), atol=1e-6))


def test_fixed_inplane_angle_still_covers_both_families():
    lab = sample_labels(GenerateConfig(mode="single", n=4000, seed=1, inplane_deg=30.0), LAUE)
    assert abs(np.mean(_family(lab["rotations"][:, 0]) > 0) - 0.5) < 0.05
    R = lab["rotations"][:, 0]
    np.testing.assert_allclose(R, rotation_from_direction(R[:, 2], 30.0), atol=1e-12)


def test_the_two_families_give_mirror_images_with_one_label():
    sim = Simulator(anatase(), SimulationConfig(image_size=96))
    d = np.array([0.6, 0.25, 0.76]) / np.linalg.norm([0.6, 0.25, 0.76])
    R1 = rotation_from_direction(d, 37.0)
    R2 = MIRROR_Y @ R1 @ MIRROR_Y  # proper; beam direction M d
    assert np.linalg.det(R2) == pytest.approx(1.0)
    assert _family(R1) == 1 and _family(R2) == -1
    np.testing.assert_allclose(LAUE.reduce(beam_direction(R2)), LAUE.reduce(beam_direction(R1)), atol=1e-12)
    # no proper symmetry of the crystal relates them: they are different orientations
    proper = LAUE.ops[np.linalg.det(LAUE.ops) > 0]
    traces = np.einsum("ij,mij->m", R1, R2 @ np.transpose(proper, (0, 2, 1)))
    assert np.degrees(np.arccos((traces.max() - 1) / 2)) > 10.0
    # spots: same reflections and intensities, detector y negated
    s1, s2 = sim.spots(R1), sim.spots(R2)
    k1 = {tuple(h): (p, i) for h, p, i in zip(s1.hkl, s1.position, s1.intensity)}
    assert len(s1.hkl) == len(s2.hkl) > 10
    for h, p, i in zip(s2.hkl, s2.position, s2.intensity):
        p1, i1 = k1[tuple(MIRROR_Y.astype(int) @ h)]
        np.testing.assert_allclose(p, p1 * [1, -1], atol=1e-9)
        assert i == pytest.approx(i1, rel=1e-9)
    # images: mirror images about the centre row (row r <-> 2 * 48 - r), and not equal
    a, b = sim.linear_image(R1), sim.linear_image(R2)
    np.testing.assert_allclose(b[1:], a[1:][::-1], atol=1e-6)
    assert np.abs(a - b).max() > 0.1
