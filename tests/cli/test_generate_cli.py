"""edorient generate / edorient inspect through main()."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from _standin import STANDIN
from _standin import STANDIN_MAIN as _STANDIN_MAIN

from edorient.cli.main import main

pytestmark = pytest.mark.cli


def test_generate_then_inspect(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["-q", "generate", "--mode", "thesis", "-n", "10", "--size", "32", "--shard-size", "4",
               "--workers", "2", "--seed", "5", "--inplane", "15", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_samples"] == 45 and meta["complete"] and meta["config"]["inplane_deg"] == 15.0
    assert np.allclose(np.load(out / "labels" / "inplane_deg.npy"), 15.0)
    capsys.readouterr()
    assert main(["inspect", str(out), "--verify", "--examples", "4"]) == 0
    text = capsys.readouterr().out
    assert "thesis: 45 samples" in text and "verified" in text
    assert (out / "contact_sheet.png").stat().st_size > 1000
    assert main(["inspect", str(out), "--json", "--no-sheet"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["samples"] == 45 and desc["splits"]["random"]["test"] + desc["splits"]["random"]["trainval"] == 45


def test_generate_random_mode_with_ratio_range_and_noise(tmp_path):
    out = tmp_path / "r"
    rc = main(["-q", "generate", "--mode", "random", "-n", "12", "--size", "32", "--ratio", "0.3:0.6",
               "--dose", "200", "--dtype", "float16", "--out", str(out)])
    assert rc == 0
    r = np.load(out / "labels" / "ratio.npy")
    assert r.min() >= 0.3 and r.max() <= 0.6
    assert np.load(out / "images" / "shard_00000.npy").dtype == np.float16


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "{tmp}/missing"], "not found"),
        (["inspect", "{tmp}"], "not an edorient data set"),
        (["generate", "--mode", "thesis", "-n", "1", "--out", "{tmp}/x"], "N >= 2"),
        (["generate", "--mode", "single", "--dtype", "float32", "--out", "{tmp}/x"], "dtype"),
        (["generate", "--shard-index", "2", "--num-shards", "2", "--out", "{tmp}/x"], "shard-index"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]


def test_unknown_mode_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--mode", "pairs", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2


def test_bad_ratio_text(tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--mode", "random", "--ratio", "a:b", "--out", str(tmp_path / "x")])


def test_thesis_mode_noise_error_names_the_real_flag(tmp_path, capsys):
    rc = main(["generate", "--mode", "thesis", "--dose", "100", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "drop --dose" in err and "--noise-dose" not in err




def _standin_env(**kw):
    return dict(os.environ, PYTHONPATH=f"{STANDIN}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **kw)


def test_killed_worker_exits_2_with_one_line_and_the_rerun_resumes(tmp_path):
    out, marker = tmp_path / "ds", tmp_path / "died"
    argv = [sys.executable, "-c", _STANDIN_MAIN, "_standin_source:images_die_once", "-q", "generate", "--mode",
            "single", "-n", "24", "--size", "32", "--shard-size", "3", "--workers", "2", "--no-progress",
            "--out", str(out)]
    env = _standin_env(EDORIENT_TEST_DIE_ONCE=str(marker))
    try:  # before issue 15: a hang with no message
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("generate hung after a worker was killed")
    assert marker.is_file()
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert err[0].startswith("edorient generate: error: a worker process") and str(out) in err[0]
    assert "rerun the same command to resume" in err[0]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "meta.json").read_text())["complete"]


def test_second_generate_on_a_folder_in_use_exits_2_naming_the_pid(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = [sys.executable, "-c", _STANDIN_MAIN, "_standin_source:images", "-q", "generate", "--mode", "single",
            "-n", "24", "--size", "32", "--shard-size", "3", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(argv, env=_standin_env(EDORIENT_TEST_SLEEP="0.5"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((out / "images").glob("*.json")):
            time.sleep(0.05)
        assert proc.poll() is None
        # the same arguments but the real simulator, as a second user would start it
        rc = main(["generate", "--mode", "single", "-n", "24", "--size", "32", "--shard-size", "3", "--out", str(out)])
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"is being written by another edorient generate (pid {proc.pid})" in err[0] and str(out) in err[0]
