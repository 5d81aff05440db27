"""``edorient calibrate`` on a real pattern and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edorient.cli.main import main
from edorient.indexing.calibration import load_calibration

pytestmark = pytest.mark.cli

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata not present")
def test_calibrate_cuni_writes_file_and_overlay(tmp_path, capsys):
    out, png = tmp_path / "cal.json", tmp_path / "o.png"
    status = main(["-q", "calibrate", str(REAL / "images" / "cuni_110_sad.png"), "--crystal",
                   str(REAL / "cif" / "CuNi.cif"), "--zone", "1", "1", "0", "--calibration", "0.0105",
                   "--out", str(out), "--overlay", str(png)])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["calibration"] == pytest.approx(0.00979, rel=5e-3) and printed["zone"] == [1, 1, 0]
    assert printed["zone_family"] == [1, 1, 0]  # the family's name, as predict's [1 0 1] is <1 1 0> too
    cal = load_calibration(out)
    assert cal.calibration == pytest.approx(0.00979, rel=5e-3) and cal.crystal == "CuNi" and cal.voltage_kv == 200.0
    assert cal.centre == pytest.approx((208.5, 152.0), abs=1.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata not present")
@pytest.mark.parametrize("extra, message", [
    (["--calibration", "0.0979"], "is it in 1/nm?"),
    (["--zone", "0", "0", "0"], "--zone"),
    (["--kv", "0"], "--kv"),
])
def test_calibrate_bad_input_is_one_line(tmp_path, capsys, extra, message):
    status = main(["-q", "calibrate", str(REAL / "images" / "cuni_110_sad.png"), "--crystal",
                   str(REAL / "cif" / "CuNi.cif"), "--out", str(tmp_path / "c.json"), *extra])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.json").exists()


def test_calibrate_missing_image(tmp_path, capsys):
    status = main(["calibrate", str(tmp_path / "nope.png"), "--crystal", "anatase", "--out", str(tmp_path / "c.json")])
    assert status == 2 and "not found" in capsys.readouterr().err


def test_calibrate_pattern_without_lattice(tmp_path, capsys):
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).random((64, 64)).astype(np.float32))
    status = main(["calibrate", str(tmp_path / "noise.npy"), "--crystal", "anatase", "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("edorient calibrate: error:")


@pytest.mark.parametrize("value, message", [("missing_cal.json", "calibration file not found"),
                                            ("cal/none", "calibration file not found"),
                                            ("0.02nm", "neither a number")])
def test_a_calibration_that_is_no_number_and_no_file_is_named(tmp_path, capsys, value, message):
    from edorient.cli._base import calibration_or_file
    from edorient.errors import EdorientError

    with pytest.raises(EdorientError, match=message):
        calibration_or_file(str(tmp_path / value) if "/" in value or value.endswith(".json") else value)


def test_a_close_runner_up_is_named_and_a_guess_settles_it(tmp_path, capsys):
    """ZrO2 [1 0 0] with no --calibration: its own spot lattice at 1/sqrt(2) of the scale (a
    centred relabelling) fits nearly as well; the answer is right, and the warning names the
    other reading and how to choose. With a nominal calibration there is no second reading."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "indexing"))
    from _measured import measured

    from edorient.physics.orientation import rotation_from_direction
    from edorient.render import SimulationConfig, Simulator
    from edorient.structures import get_crystal

    cif = Path(__file__).resolve().parents[1] / "data" / "zro2.cif"
    x = get_crystal(cif)
    sim = Simulator(x, SimulationConfig(image_size=256, calibration=0.008, spot_sigma_px=1.5))
    img, _, _ = measured(sim, rotation_from_direction(x.zone_axis_direction([1, 0, 0]), 17.0), size=256,
                         calibration=0.008, centre=(121.3, 134.8), ellipticity=1.0, angle_deg=0.0, beam_stop=False, rng=1)
    path = tmp_path / "zro2.npy"
    np.save(path, img.astype(np.float32))
    base = ["calibrate", str(path), "--crystal", str(cif), "--zone", "1", "0", "0", "--out", str(tmp_path / "c.json")]
    assert main(base) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["calibration"] == pytest.approx(0.008, rel=2e-3)
    assert "fits nearly as well" in cap.err and "0.005656" in cap.err and "give --calibration" in cap.err
    assert main(base + ["--calibration", "0.0085", "--tolerance", "0.2"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["calibration"] == pytest.approx(0.008, rel=2e-3) and "nearly as well" not in cap.err
