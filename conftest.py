"""Root conftest: the --slow switch, shared fixtures."""

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="session")
def _dictionary_cache(tmp_path_factory):
    """Template dictionaries go to a folder of this test session, never the user's ~/.cache
    (a test that wants its own sets EDORIENT_CACHE itself)."""
    if "EDORIENT_CACHE" in os.environ:
        yield
        return
    os.environ["EDORIENT_CACHE"] = str(tmp_path_factory.mktemp("edorient-cache"))
    try:
        yield
    finally:
        os.environ.pop("EDORIENT_CACHE", None)
