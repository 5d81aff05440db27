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
