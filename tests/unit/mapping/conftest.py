"""Tiny scans shared by the mapping tests (written once per session into a temp folder)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_scan(tmp_path_factory):
    """A 4 x 4 probe .hspy scan of two grains (128 px, 0.02 1/Å per px) and its truth."""
    from edorient.mapping.simulate import ScanSimConfig, write_scan

    folder = tmp_path_factory.mktemp("scan")
    cfg = ScanSimConfig(probes=(4, 4), n_grains=2, seed=3, dose=20000.0)
    return write_scan(folder / "tiny.hspy", cfg)


@pytest.fixture
def small_scan(tmp_path):
    """Make a 4 x 6 probe .hspy scan of two grains (seed 7, dose 20,000) in ``tmp_path``:
    ``small_scan(name, **fields)`` (more :class:`ScanSimConfig` fields) -> (scan path, truth,
    (n,) whether each probe holds one grain)."""
    import numpy as np

    from edorient.mapping.simulate import ScanSimConfig, write_scan

    def make(name: str, **fields):
        scan, truth_path = write_scan(tmp_path / name, ScanSimConfig(probes=(4, 6), n_grains=2, seed=7, dose=20000.0, **fields))
        truth = np.load(truth_path)
        return scan, truth, truth["shares"].reshape(-1, 2)[:, 1] == 0

    return make
