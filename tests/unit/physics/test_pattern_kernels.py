"""The compiled spot kernels (edorient.physics._kernels), through ``f.py_func`` and ``f``.

That they select exactly the spots of the unpruned reference is tested in
test_render_speedpaths.py; here: compiled = pure Python, the shape factors against numpy's
formulas, and the buffer-growing path of ``ExcitationBounds.pairs``.
"""

from __future__ import annotations

import numpy as np
import pytest

from edorient.physics import _kernels as k
from edorient.physics import pattern
from edorient.physics.orientation import random_rotations
from edorient.physics.pattern import ExcitationBounds
from edorient.physics.reflections import compute_reflections
from edorient.physics.wavelength import electron_wavelength
from edorient.structures import anatase

X = np.array([0.0, 1e-40, 1e-8, 0.3, -0.5, 1.0, 2.0, -3.7, 12.25, 250.5])


@pytest.fixture(scope="module")
def bounds():
    refl = compute_reflections(anatase(), 1.6)
    return ExcitationBounds.build(refl, electron_wavelength(200.0), 50.0, "sinc2", 1e-4)


def test_shape_factors_match_numpy():
    sinc2 = np.array([k._shape(x, 0) for x in X])
    gauss = np.array([k._shape(x, 1) for x in X])
    np.testing.assert_allclose(sinc2, np.sinc(X) ** 2, rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(gauss, np.exp(-np.pi * X**2), rtol=1e-12, atol=0)
    assert sinc2[0] == 1.0 and sinc2[5] < 1e-30 and sinc2[6] < 1e-30  # zeros at integers
    for x in X:
        assert k._shape(x, 0) == pytest.approx(k._shape.py_func(x, 0), rel=1e-14, abs=1e-300)


def test_excited_single_compiled_equals_python(bounds):
    args = bounds._kernel_args()
    for R in random_rotations(5, rng=8):
        outs = [bounds._buffers(len(bounds.possible)) for _ in range(2)]
        n1 = k._excited_single(np.ascontiguousarray(R), *args, 3, 0, *outs[0])
        n2 = k._excited_single.py_func(np.ascontiguousarray(R), *args, 3, 0, *outs[1])
        assert n1 == n2 > 5
        for a, b in zip(outs[0], outs[1]):
            np.testing.assert_allclose(a[:n1], b[:n1], rtol=1e-13, atol=1e-15)
        assert np.all(outs[0][0][:n1] == 3)  # the image number given
        assert np.all(np.diff(outs[0][1][:n1]) > 0)  # reflections in order


def test_excited_single_reports_full_buffer(bounds):
    R = np.ascontiguousarray(random_rotations(1, rng=9)[0])
    bufs = bounds._buffers(2)
    assert k._excited_single(R, *bounds._kernel_args(), 0, 0, *bufs) == -1


def test_pairs_grows_its_buffers(bounds, monkeypatch):
    R = random_rotations(20, rng=10)
    want = bounds.pairs(R)
    monkeypatch.setattr(pattern, "_SPOTS_GUESS", 1)  # too small: the retry must give the same
    got = bounds.pairs(R)
    assert len(got[0]) == len(want[0]) > 20
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    for i in range(20):  # and each orientation's part is spots() of it
        sp = bounds.spots(R[i])
        np.testing.assert_array_equal(sp.index, want[1][want[0] == i])
        np.testing.assert_array_equal(sp.intensity, want[4][want[0] == i])
