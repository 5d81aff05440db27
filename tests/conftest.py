"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dictionary_cache_dir(tmp_path_factory):
    """One template-dictionary cache folder for the session: tests that index the same crystal
    with the same settings reuse what an earlier one built, as a user's cache would, and none
    writes into the user's own (``~/.cache/edorient``). A dictionary loaded from the cache equals
    the one built (tests/unit/indexing/test_real_patterns.py); tests of the cache itself set a
    folder of their own."""
    return tmp_path_factory.getbasetemp() / "dictionaries"


@pytest.fixture(autouse=True)
def shared_cache(dictionary_cache_dir, monkeypatch):
    """``EDORIENT_CACHE`` set to :func:`dictionary_cache_dir` for every test (subprocesses and
    Dask workers inherit it)."""
    monkeypatch.setenv("EDORIENT_CACHE", str(dictionary_cache_dir))
    return dictionary_cache_dir
