"""``edorient map`` end to end: a Dask LocalCluster of 2 processes gives this process's result, a
map killed midway resumes to the same output, a folder of PNG files, and bad input refused in
one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edorient.cli.main import main
from edorient.mapping import (
    ComputeSettings,
    MapSettings,
    ScanSimConfig,
    default_runs,
    run_map,
    write_scan,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    return write_scan(folder / "s.hspy", ScanSimConfig(probes=(2, 4), n_grains=2, seed=5, dose=20000.0))[0]


def _settings():
    single, bi = default_runs("anatase")
    return MapSettings(grains="1", run_single=single, run_bicrystal=bi)


def test_neighbour_pass_on_two_workers_equals_this_process(tmp_path):
    # --grains auto on a scan with boundaries: the chunks and the neighbour pass's parts run on the
    # cluster's two worker processes and give the in-process result bit for bit
    single, bi = default_runs("anatase")
    settings = MapSettings(run_single=single, run_bicrystal=bi)
    scan = write_scan(tmp_path / "b.hspy", ScanSimConfig(probes=(6, 8), n_grains=3, seed=3, dose=20000.0))[0]
    runs = [run_map(scan, tmp_path / f"w{n}", settings, ComputeSettings(workers=n, chunk=16, progress=False),
                    assemble=False) for n in (0, 2)]
    assert runs[1].workers == 2 and runs[0].neighbours == runs[1].neighbours
    assert runs[0].neighbours["second_grains_added"] > 0
    for k, v in runs[0].results.items():
        np.testing.assert_array_equal(runs[1].results[k], v, err_msg=k)


def test_killed_map_resumes_to_the_same_output(scan, tmp_path):
    args = [str(scan), "--grains", "1", "--workers", "0", "--chunk", "2", "--no-progress"]
    assert main(["map", *args, "--out", str(tmp_path / "whole")]) == 0
    # options not given stay out of the resolved config (so maps written before they existed resume)
    settings = json.loads((tmp_path / "whole" / "config.json").read_text())["identity"]["settings"]
    assert "second_grain" not in settings and "chosen_partner_k" not in settings
    out = tmp_path / "killed"
    env = dict(os.environ, EDORIENT_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "edorient", "map", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "chunks"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(chunks.glob("chunk_*.npz"))) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(chunks.glob("chunk_*.npz")))
    assert 1 <= n_before
    assert main(["map", *args, "--out", str(out)]) == 0
    assert (out / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()


def test_folder_of_png(tmp_path, capsys):
    from PIL import Image

    from edorient.mapping.simulate import simulate_scan

    counts, _ = simulate_scan(ScanSimConfig(probes=(1, 3), n_grains=1, seed=2, dose=20000.0))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, im in enumerate(counts[0]):
        Image.fromarray(np.clip(im, 0, 65535).astype(np.uint16)).save(folder / f"f{i}.png")
    assert main(["map", str(folder), "--calibration", "0.02", "--grains", "1", "--workers", "0",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    rows = (tmp_path / "o" / "results.csv").read_text().splitlines()
    assert len(rows) == 4 and ",file," in rows[0] and rows[1].split(",")[3].endswith("f0.png")
    # files need not be neighbouring probes: each gets the whole chain (no anchors' pools)
    col = rows[0].split(",").index("anchor")
    assert all(r.split(",")[col] == "1" for r in rows[1:])
    assert "mapped 3 patterns" in capsys.readouterr().out
    from orix import io as orix_io

    assert orix_io.load(str(tmp_path / "o" / "orientations_grain1.h5")).size == 3  # 1-D: .h5 (no .ang)


@pytest.mark.parametrize("case", ["missing", "dims", "nan", "no_calibration", "bad_calibration"])
def test_bad_input_one_line(tmp_path, capsys, case, scan):
    a = np.zeros((2, 2, 32, 32), np.float32)
    a[..., 16, 16] = 10.0
    args = ["--workers", "0", "--out", str(tmp_path / "o"), "--no-progress"]
    if case == "missing":
        target, extra = tmp_path / "nope.hspy", []
    elif case == "dims":
        np.save(tmp_path / "d.npy", a[0, 0])
        target, extra = tmp_path / "d.npy", ["--calibration", "0.02"]
    elif case == "nan":
        a[1, 1, 3, 3] = np.nan
        np.save(tmp_path / "n.npy", a)
        target, extra = tmp_path / "n.npy", ["--calibration", "0.02", "--grains", "1"]
    elif case == "no_calibration":
        np.save(tmp_path / "c.npy", a)
        target, extra = tmp_path / "c.npy", []
    else:
        target, extra = scan, ["--calibration", "5"]
    assert main(["map", str(target), *extra, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edorient map: error:"), err


def test_simulate_scan_cli(tmp_path, capsys):
    assert main(["simulate-scan", "--out", str(tmp_path / "s.hspy"), "--probes", "2", "3", "--grains", "2",
                 "--detector", "64", "--calibration", "0.04"]) == 0
    assert (tmp_path / "s.hspy").is_file() and (tmp_path / "s_truth.npz").is_file()
    from edorient.mapping import open_scan

    src = open_scan(tmp_path / "s.hspy")
    assert src.shape == (2, 3) and src.calibration == pytest.approx(0.04)


def test_existing_scheduler_by_address(scan, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        run = run_map(scan, tmp_path / "s", _settings(),
                      ComputeSettings(scheduler=cluster.scheduler_address, chunk=4, progress=False), assemble=False)
    assert run.workers == 1 and run.patterns_computed == 8
    ref = run_map(scan, tmp_path / "p", _settings(), ComputeSettings(workers=0, chunk=4, progress=False),
                  assemble=False)
    np.testing.assert_allclose(run.results["rotations"], ref.results["rotations"], atol=1e-4)


def test_unreachable_scheduler_is_one_line(scan, tmp_path, capsys, monkeypatch):
    from edorient.mapping import runner

    monkeypatch.setattr(runner, "SCHEDULER_TIMEOUT", "1s")  # (the message, not the 10 s wait, is tested)
    assert main(["map", str(scan), "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scheduler" in err[0]


def test_second_grain_mode_from_the_command_line(scan, tmp_path):
    # --second-grain model reaches the map's settings (and its resolved config)
    import json

    assert main(["map", str(scan), "--second-grain", "model", "--workers", "0", "--out", str(tmp_path / "m"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["identity"]["settings"]["second_grain"] == "model"
    # (a map without the option leaves it out of its config: test_killed_map_resumes_to_the_same_output)


def test_anchor_stride_from_the_command_line(scan, tmp_path, capsys):
    # --anchor-stride reaches the resolved config and the CSV's anchor column; 0 is refused in one line
    import csv
    import json

    assert main(["map", str(scan), "--anchor-stride", "2", "--grains", "1", "--workers", "0", "--out",
                 str(tmp_path / "a"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["identity"]["settings"]["anchor_stride"] == 2
    with open(tmp_path / "a" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["anchor"] for r in rows} <= {"0", "1"} and any(r["anchor"] == "1" for r in rows)
    assert all(r["model_fit"] != "" for r in rows)
    with pytest.raises(SystemExit):
        main(["map", str(scan), "--anchor-stride", "0", "--out", str(tmp_path / "b")])
    assert "--anchor-stride" in capsys.readouterr().err


def test_partner_again_from_the_command_line(scan, tmp_path, capsys):
    # --partner-again K reaches the resolved config (absent by default, so maps from before resume);
    # the map runs with it; 0 is refused in one line
    import json

    assert main(["map", str(scan), "--partner-again", "1", "--workers", "0", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    settings = json.loads((tmp_path / "r" / "config.json").read_text())["identity"]["settings"]
    assert settings["chosen_partner_k"] == 1
    with pytest.raises(SystemExit):
        main(["map", str(scan), "--partner-again", "0", "--out", str(tmp_path / "z")])
    assert "--partner-again" in capsys.readouterr().err
    with pytest.raises(Exception, match="partner-again"):
        MapSettings(chosen_partner_k=0)


def test_map_undoes_a_calibration_files_ellipticity(tmp_path, capsys):
    # a 4 x 4 scan on a detector with 5 % ellipticity, mapped with the calibration file that
    # `edorient calibrate` would write: report.md states the correction, grain 1 is within 0.3° of
    # the truth on every one-grain probe, and the models fit the images better than without it
    # (the refinement's scale absorbs part of an ellipticity, not all of it)
    import csv

    from edorient.structures import anatase

    assert main(["simulate-scan", "--out", str(tmp_path / "e.hspy"), "--probes", "4", "4", "--grains", "2",
                 "--dose", "20000", "--seed", "3", "--ellipticity", "1.05", "30"]) == 0
    (tmp_path / "cal.json").write_text(json.dumps({"calibration": 0.02, "ellipticity": 1.05, "angle_deg": 30.0}))
    base = ["map", str(tmp_path / "e.hspy"), "--workers", "0", "--no-progress", "--neighbour-radius", "0"]
    assert main([*base, "--out", str(tmp_path / "m"), "--calibration", str(tmp_path / "cal.json")]) == 0
    assert main([*base, "--out", str(tmp_path / "plain"), "--calibration", "0.02"]) == 0
    assert "ellipticity 1.0500 (major axis at 30.0°) undone" in (tmp_path / "m" / "report.md").read_text()
    truth = np.load(tmp_path / "e_truth.npz")
    one = truth["shares"].reshape(16, 2)[:, 1] == 0

    def table(name):
        with open(tmp_path / name / "results.csv") as fh:
            return list(csv.DictReader(fh))

    rows = table("m")
    d = np.array([[float(r[f"g1_dir_{a}"]) for a in "xyz"] for r in rows])
    err = anatase().laue.angle(d, truth["directions"].reshape(16, 2, 3)[:, 0])
    assert one.sum() >= 8 and err[one].max() < 0.3, err
    fit = np.array([float(r["image_fit"]) for r in rows])
    plain = np.array([float(r["image_fit"]) for r in table("plain")])
    assert np.median(fit[one] - plain[one]) > 0
