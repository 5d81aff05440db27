"""``edorient simulate`` and ``edorient reflections`` end to end (main() with argv)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from edorient.cli.main import main

pytestmark = pytest.mark.cli


def test_simulate_bicrystal_writes_png_and_spots(tmp_path, capsys):
    png, spots = tmp_path / "bi.png", tmp_path / "bi.csv"
    rc = main(["-q", "simulate", "--zone-axis", "0", "0", "1", "--zone-axis", "1", "0", "1",
               "--inplane", "0", "--inplane", "30", "--size", "96", "--png", str(png), "--spots", str(spots)])
    assert rc == 0
    img = np.asarray(Image.open(png))
    assert img.shape == (96, 96) and img.dtype == np.uint8
    assert img[48, 48] == img.max()  # direct beam at the centre pixel
    with open(spots) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["grain", "h", "k", "l", "gx", "gy", "g", "d", "s", "intensity"]
    assert {r["grain"] for r in rows} == {"1", "2"}
    # grain 1 is [001]: its zero-order spots have l = 0 and d matches the tetragonal formula
    for r in rows:
        if r["grain"] == "1" and r["l"] == "0":
            h, k = int(r["h"]), int(r["k"])
            assert float(r["d"]) == pytest.approx(3.7845 / np.hypot(h, k), rel=1e-4)
    out = json.loads(capsys.readouterr().out)
    assert out["grains"][0]["label"] == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("theta", [(0.0, 0.0), (30.0, 75.0), (200.0, 313.0)])
def test_simulate_prints_the_beam_direction_of_each_grain(theta, capsys):
    # The printed beam direction is R.T e_z: the zone axis itself, whatever the in-plane angle
    # (a column of R instead of a row was 11° off for [101] at 30°).
    a = 3.7845 * np.array([1.0, 0, 0]) + 9.5143 * np.array([0, 0, 1.0])  # [101]
    b = np.array([0.3, 0.1, 0.9])
    rc = main(["-q", "simulate", "--zone-axis", "1", "0", "1", "--direction", *map(str, b),
               "--inplane", str(theta[0]), "--inplane", str(theta[1]), "--size", "32"])
    assert rc == 0
    grains = json.loads(capsys.readouterr().out)["grains"]
    for g, truth, t in zip(grains, (a, b), theta):
        np.testing.assert_allclose(g["beam_direction"], truth / np.linalg.norm(truth), atol=2e-6)
        assert g["inplane_deg"] == pytest.approx(t, abs=1e-4)


def test_simulate_direction_and_noise(tmp_path):
    png = tmp_path / "n.png"
    assert main(["-q", "simulate", "--direction", "0.3", "0.1", "0.9", "--dose", "1000", "--size", "32",
                 "--png", str(png), "--invert"]) == 0
    img = np.asarray(Image.open(png))
    assert img[16, 16] == img.min()  # inverted: the direct beam is darkest


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["simulate", "--zone-axis", "0", "0", "0"], "zone axis"),
        (["simulate", "--crystal", "nosuch", "--zone-axis", "0", "0", "1"], "unknown crystal"),
        (["simulate", "--zone-axis", "0", "0", "1", "--voltage", "0"], "voltage"),
        (["simulate", "--zone-axis", "0", "0", "1", "--size", "4"], "image size"),
        (["simulate"], "--zone-axis"),
        (["simulate", "--crystal", "missing.cif", "--zone-axis", "0", "0", "1"], "not found"),
        (["reflections", "--dmin", "-1"], "dmin"),
        # refused before anything is allocated, with the figure
        (["simulate", "--zone-axis", "0", "0", "1", "--size", "100000"], "40,000 MB per image"),
        (["simulate", "--zone-axis", "0", "0", "1", "--spot-sigma", "1e9"], "spot sigma"),
        (["simulate", "--zone-axis", "0", "0", "1", "--calibration", "1e6"], "1/nm is 10x 1/Å"),
        (["simulate", "--zone-axis", "0", "0", "1", "--dose", "1e300"], "dose must lie"),
        (["simulate", "--zone-axis", "0", "0", "1", "--thickness", "1e9"], "thickness"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0]


def test_nan_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--zone-axis", "0", "0", "nan"])
    assert exc.value.code == 2
    assert "finite" in capsys.readouterr().err


def test_reflections_csv(tmp_path):
    out = tmp_path / "r.csv"
    assert main(["-q", "reflections", "--dmin", "1.4", "--csv", str(out)]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["h", "k", "l", "d", "F_abs", "F_squared"]
    hkls = {(int(r["h"]), int(r["k"]), int(r["l"])) for r in rows}
    assert (1, 0, 1) in hkls and (2, 0, 4) in hkls
    assert (2, 0, 2) not in hkls and (1, 0, 0) not in hkls and (0, 0, 2) not in hkls
    assert min(float(r["d"]) for r in rows) >= 1.4
