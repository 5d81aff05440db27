"""The specimen's effective thickness: fitted on a sample of the scan, used for the whole map."""

from __future__ import annotations

import numpy as np

from edorient.mapping import ComputeSettings, MapSettings, default_runs, run_map
from edorient.structures import anatase


def test_a_thin_specimens_thickness_is_fitted_and_fixes_the_tilt(tmp_path, small_scan):
    # a 4 x 6 scan of a 20 Å specimen (the models' relrods are 50 Å): the fit picks 17.5-25 Å and
    # grain 1 comes out within 0.3°; the map at the models' 50 Å tilts it by about a degree
    single, bi = default_runs("anatase")
    scan, truth, one = small_scan("thin.hspy", thickness=20.0)
    compute = ComputeSettings(workers=0, progress=False)

    def grain1_error(run):
        return anatase().laue.angle(run.results["directions"][:, 0], truth["directions"].reshape(-1, 2, 3)[:, 0])[one]

    fitted = run_map(scan, tmp_path / "fit", MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0), compute)
    assert fitted.thickness["fitted"] and 17.5 <= fitted.thickness["thickness_A"] <= 25.0
    assert fitted.thickness["used_A"] == fitted.thickness["thickness_A"]
    curve = fitted.thickness["median_fit"]
    assert max(curve, key=curve.get) == f"{fitted.thickness['thickness_A']:g}" and curve["20"] > curve["50"] + 0.05
    assert "effective thickness: 2" in (tmp_path / "fit" / "report.md").read_text()
    assert np.median(grain1_error(fitted)) < 0.3
    # kept beside the chunks: a rerun (a resumed map) takes it, not a new fit
    import json

    kept = json.loads((tmp_path / "fit" / "thickness.json").read_text())
    assert kept == {k: v for k, v in fitted.thickness.items() if k != "used_A"}
    again = run_map(scan, tmp_path / "fit", MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0), compute,
                    assemble=False)
    assert again.thickness["seconds"] == kept["seconds"] and again.patterns_computed == 0
    np.testing.assert_array_equal(again.results["rotations"], fitted.results["rotations"])
    given = run_map(scan, tmp_path / "given", MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0,
                                                           thickness=50.0), compute, assemble=False)
    assert not given.thickness["fitted"] and given.thickness["used_A"] == 50.0
    assert np.median(grain1_error(given)) > 0.5
