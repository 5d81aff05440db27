"""``edorient predict A B C --out-dir DIR``: several files in one process, resumable, with a table.

A microscopist with a folder of patterns runs one command: every file gets its JSON (the same
as ``predict FILE --json``) and overlay, ``summary.tsv`` has a row a grain, a file that cannot be
read is named and the others go on (exit code 2 at the end), and a run killed halfway goes on
where it stopped.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edorient.cli.main import main
from edorient.physics.orientation import rotation_from_zone_axis
from edorient.render import SimulationConfig, Simulator, add_noise
from edorient.structures import anatase

pytestmark = pytest.mark.cli

ARGS = ["--calibration", "0.011", "--matcher-directions", "200", "--crystal", "anatase"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    xt = anatase()
    sim = Simulator(xt, SimulationConfig(image_size=160, calibration=0.011))
    d = tmp_path_factory.mktemp("patterns")
    out = []
    for i, (zone, t) in enumerate([([0, 0, 1], 10.0), ([1, 0, 1], 40.0)]):
        img = sim.linear_image(rotation_from_zone_axis(zone, xt.direct_matrix, t))
        np.save(d / f"p{i}.npy", (add_noise(img, 20000, 0.0005, np.random.default_rng(i)) * 20000).astype(np.float32))
        out.append(d / f"p{i}.npy")
    (d / "broken.tif").write_bytes(b"II*\x00not a tiff")
    return out, d / "broken.tif"


def _table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_several_files_into_one_folder_and_resumed(files, tmp_path, capsys, monkeypatch):
    (a, b), broken = files
    out = tmp_path / "preds"
    rc = main(["-q", "predict", str(a), str(broken), str(b), *ARGS, "--out-dir", str(out)])
    printed = capsys.readouterr()
    assert rc == 2  # one file failed; the others are done
    assert "broken.tif" in printed.err and "1 of 3 file(s) failed" in printed.err
    for p in (a, b):
        res = json.loads((out / f"{p.name}.json").read_text())
        assert res["file"] == str(p) and res["grains"][0]["verdict"] in ("confident", "ambiguous", "no match")
        assert (out / f"{p.name}.png").stat().st_size > 0
        assert f"{p}: grain 1: zone" in printed.out
    assert not (out / "broken.tif.json").exists()
    rows = _table(out / "summary.tsv")
    assert [r["file"] for r in rows] == [str(a), str(broken), str(b)]
    assert rows[1]["verdict"] == "error" and "TIFF" in rows[1]["reasons"]
    for r, zone in ((rows[0], "[0 0 1]"), (rows[2], "[1 0 1]")):
        assert r["grain"] == "1" and r["zone"] == zone and r["verdict"] != "error", r
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "predict" and cfg["identity"]["crystal"] == "anatase"
    # the same again: nothing is done twice (the files' results are read back), the table is whole
    import edorient.predict as pr

    def fail(*a, **k):
        raise AssertionError("a finished file was predicted again")

    monkeypatch.setattr(pr, "predict_file", fail)
    rc = main(["-q", "predict", str(a), str(b), *ARGS, "--out-dir", str(out)])
    assert rc == 0 and "0 file(s) predicted, 2 done before, 0 failed" in capsys.readouterr().out
    assert [r["zone"] for r in _table(out / "summary.tsv")] == ["[0 0 1]", "[1 0 1]"]


def test_a_folder_of_other_settings_or_a_clash_is_refused(files, tmp_path, capsys):
    (a, b), _ = files
    out = tmp_path / "preds"
    assert main(["-q", "predict", str(a), *ARGS, "--out-dir", str(out), "--no-overlays"]) == 0
    assert not (out / f"{a.name}.png").exists()
    capsys.readouterr()
    # other settings into the same folder: refused before any work, nothing overwritten
    before = (out / f"{a.name}.json").read_text()
    assert main(["-q", "predict", str(a), *ARGS, "--out-dir", str(out), "--no-overlays", "--grains", "2"]) == 2
    assert "holds predictions made with other settings" in capsys.readouterr().err
    assert (out / f"{a.name}.json").read_text() == before
    # two files of one name (from two folders) would share their results' names
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / a.name).write_bytes(a.read_bytes())
    assert main(["-q", "predict", str(a), str(other / a.name), *ARGS, "--out-dir", str(tmp_path / "x")]) == 2
    assert "have the same name" in capsys.readouterr().err
    # several files without --out-dir, or --out-dir with --json: one line saying what to give
    assert main(["-q", "predict", str(a), str(b), *ARGS]) == 2
    assert "give --out-dir DIR" in capsys.readouterr().err
    assert main(["-q", "predict", str(a), *ARGS, "--out-dir", str(out), "--json", str(tmp_path / "r.json")]) == 2
    assert "leave out --json and --overlay" in capsys.readouterr().err


def test_a_cif_edited_in_place_is_another_crystal(files, tmp_path, capsys):
    """The folder's identity holds the CIF's content (SHA-256), not only its path: results of the
    CIF before an edit are not resumed as if they were the edited crystal's."""
    from pathlib import Path

    (a, _), _ = files
    cif = tmp_path / "anatase.cif"
    cif.write_text((Path(__file__).parents[1] / "data" / "anatase.cif").read_text())
    args = [a for a in ARGS if a not in ("--crystal", "anatase")]
    out = tmp_path / "preds"
    assert main(["-q", "predict", str(a), *args, "--crystal", str(cif), "--out-dir", str(out), "--no-overlays"]) == 0
    assert json.loads((out / "config.json").read_text())["identity"]["crystal_sha256"]
    capsys.readouterr()
    # the same CIF again: resumed (nothing redone)
    assert main(["-q", "predict", str(a), *args, "--crystal", str(cif), "--out-dir", str(out), "--no-overlays"]) == 0
    assert "0 file(s) predicted, 1 done before" in capsys.readouterr().out
    cif.write_text(cif.read_text() + "\n# edited in place: another file's content\n")
    assert main(["-q", "predict", str(a), *args, "--crystal", str(cif), "--out-dir", str(out), "--no-overlays"]) == 2
    assert "crystal_sha256" in capsys.readouterr().err
