"""edorient._utils.jit: compile uncached when numba has nowhere to cache, else fail as numba does."""

from __future__ import annotations

import numba as nb
import pytest

from edorient._utils import jit


def _fake_njit(message):
    calls = []

    def fake(signature, cache, nogil):
        calls.append(cache)
        if cache:
            raise RuntimeError(message)
        return lambda f: ("compiled", f)

    return fake, calls


def test_falls_back_to_no_cache_without_a_cache_location(monkeypatch):
    fake, calls = _fake_njit("cannot cache function 'f': no locator available for file '/ro/x.py'")
    monkeypatch.setattr(jit.nb, "njit", fake)
    out = jit.njit("f8(f8)")(abs)
    assert out == ("compiled", abs) and calls == [True, False]


def test_other_errors_propagate(monkeypatch):
    fake, _ = _fake_njit("something else")
    monkeypatch.setattr(jit.nb, "njit", fake)
    with pytest.raises(RuntimeError, match="something else"):
        jit.njit("f8(f8)")(abs)


def test_real_compilation_is_cached_and_typed():
    def twice(x):
        return 2.0 * x

    f = jit.njit(nb.float64(nb.float64))(twice)
    assert f(1.5) == 3.0 and f.py_func(1.5) == 3.0
    assert len(f.signatures) == 1  # compiled eagerly for its explicit signature
