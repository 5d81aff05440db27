"""A nano-beam scan's diffraction discs: measured by the map on the direct beam, deconvolved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping import ComputeSettings, MapSettings, default_runs, run_map
from edorient.mapping.simulate import ScanSimConfig, write_scan
from edorient.structures import anatase


def test_a_scans_discs_are_measured_deconvolved_and_kept_for_a_resumed_map(tmp_path, monkeypatch, small_scan):
    # a 4 x 6 scan whose spots and direct beam are 4 px discs: the map measures 4 px, deconvolves,
    # and grain 1 of the one-grain probes comes out within a few tenths of a degree
    single, bi = default_runs("anatase")
    scan, truth, one = small_scan("nbed.hspy", disc_px=4.0)
    compute = ComputeSettings(workers=0, progress=False)
    settings = MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0, thickness=50.0)
    run = run_map(scan, tmp_path / "map", settings, compute)
    assert run.discs["measured"] and run.discs["deconvolved"] and abs(run.discs["radius_px"] - 4.0) <= 0.25
    assert run.discs["used_px"] == run.discs["radius_px"]
    err = anatase().laue.angle(run.results["directions"][:, 0], truth["directions"].reshape(-1, 2, 3)[:, 0])[one]
    assert np.median(err) < 0.2
    assert "a disc of 4 px deconvolved" in (tmp_path / "map" / "report.md").read_text()
    # kept beside the chunks: a rerun takes it and measures nothing
    kept = json.loads((tmp_path / "map" / "discs.json").read_text())
    assert kept == run.discs

    def no_measuring(*_a, **_k):
        raise AssertionError("measured again")

    monkeypatch.setattr("edorient.mapping.runner._fit_disc", no_measuring)
    again = run_map(scan, tmp_path / "map", settings, compute, assemble=False)
    assert again.discs == kept and again.patterns_computed == 0


def test_gaussian_spots_are_not_deconvolved_and_off_means_off(tmp_path):
    single, bi = default_runs("anatase")
    scan, _ = write_scan(tmp_path / "spots.hspy", ScanSimConfig(probes=(3, 4), n_grains=1, seed=3, dose=20000.0))
    compute = ComputeSettings(workers=0, progress=False)
    base = dict(run_single=single, run_bicrystal=bi, neighbour_radius=0, thickness=50.0, grains="1")
    auto = run_map(scan, tmp_path / "auto", MapSettings(**base), compute, assemble=False)
    assert auto.discs["measured"] and not auto.discs["deconvolved"] and auto.discs["used_px"] == 0.0
    off = run_map(scan, tmp_path / "off", MapSettings(**base, disc_px=0.0), compute, assemble=False)
    assert not off.discs["measured"] and off.discs["used_px"] == 0.0
    np.testing.assert_array_equal(auto.results["rotations"], off.results["rotations"])


@pytest.mark.parametrize("bad", [-1.0, 17.0, float("nan")])
def test_an_impossible_disc_radius_is_refused(bad):
    with pytest.raises(EdorientError, match="--disc"):
        MapSettings(disc_px=bad)


def test_the_disc_option_reads_auto_off_or_a_radius():
    import argparse

    from edorient.cli._base import disc_radius

    assert disc_radius("auto") is None and disc_radius("OFF") == 0.0 and disc_radius("3.5") == 3.5
    for bad in ("0", "-2", "20", "nan", "wide"):
        with pytest.raises(argparse.ArgumentTypeError):
            disc_radius(bad)


def test_a_saturated_direct_beam_is_reported_not_measured(tmp_path):
    # at this dose the direct beam clips at the uint16 maximum in every pattern: its flat top is
    # the detector's, so no disc is measured from it and the report says how to give one
    from edorient.mapping.runner import _fit_disc
    from edorient.mapping.scan import open_scan

    scan, _ = write_scan(tmp_path / "bright.hspy", ScanSimConfig(probes=(2, 4), n_grains=1, seed=3, dose=2e5))
    settings, report = _fit_disc(open_scan(scan), MapSettings())
    assert settings.disc_px == 0.0 and not report["measured"]
    assert "saturated" in report["why"] and "--disc PX" in report["why"]
