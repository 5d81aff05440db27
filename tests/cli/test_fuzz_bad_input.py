"""Fuzz suite of issue 14: bad input, other people's folders, damaged files, interrupted runs.

Every case runs one ``edorient`` command (through :func:`edorient.cli.main.main`, in this
process, or as a subprocess where a real process is needed) and must end with exit status 2 and
exactly one line on stderr without a traceback, while every user file placed beside its outputs
(and in the working folder) keeps its bytes and its modification time.

An outcome is classified (worst first) as ``destroyed user file`` (a sentinel changed or is
gone), ``traceback`` (an exception escaped, or stderr shows one), ``silent wrong result`` (exit
0: the command did something it should have refused), ``unclear error`` (several lines, or
another exit status) or ``clear one-line error``. With ``EDORIENT_FUZZ_TALLY=FILE`` each case
appends ``{"case", "outcome", "rc", "line"}`` to FILE as a JSON line; ``benchmarks/fuzz_tally.py``
runs the suite that way (also against an older source tree) and prints the tallies of
docs/benchmarks.md, "Reliability (issue 14)".

The cases are tiny (32 px data sets of 8 orientations, a one-epoch compact-s run); a case that
would run long on a version without the check is built to fail fast there after the damage
(``demo`` into a user's folder that also holds a *file* named ``data_thesis``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from _standin import STANDIN
from _standin import STANDIN_MAIN as _STANDIN_MAIN

from edorient.cli.main import main

pytestmark = pytest.mark.cli

CIF = Path(__file__).resolve().parents[1] / "data" / "anatase.cif"
TRAIN = ["--arch", "compact-s", "--epochs", "1", "--batch-size", "32", "--no-progress", "--device", "cpu"]
OUTCOMES = ("clear one-line error", "unclear error", "silent wrong result", "traceback", "destroyed user file")


# -- shared inputs (built once) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_shared")
    data, run = root / "data", root / "run"
    assert main(["-q", "generate", "--mode", "thesis", "-n", "8", "--size", "32", "--out", str(data), "--no-progress"]) == 0
    assert main(["-q", "train", "--data", str(data), "--out", str(run), *TRAIN]) == 0
    from edorient.physics.orientation import rotation_from_zone_axis
    from edorient.render import SimulationConfig, Simulator, add_noise
    from edorient.structures import anatase

    xtal = anatase()
    sim = Simulator(xtal, SimulationConfig(image_size=128, calibration=0.02))
    img = sim.linear_image(rotation_from_zone_axis([1, 1, 2], xtal.direct_matrix, 30.0))
    img = add_noise(img, 20000, 0.0005, np.random.default_rng(1)) * 20000
    image = root / "pattern.npy"
    np.save(image, np.roll(img, (-5, 4), axis=(0, 1)).astype(np.float32))
    return {"data": data, "run": run, "image": image}


@dataclass
class Ctx:
    """One case's folders: ``tmp`` (scratch), ``user`` (a user's folder), ``cwd`` (working folder)."""

    tmp: Path
    shared: dict
    sentinels: list[Path] = field(default_factory=list)
    readonly: list[Path] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.shared["data"]

    @property
    def run(self) -> Path:
        return self.shared["run"]

    @property
    def image(self) -> Path:
        return self.shared["image"]

    def sentinel(self, folder: Path, name: str = "sentinel.txt", data: bytes | None = None) -> Path:
        """A user's file ``folder/name`` that must survive the case unchanged."""
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else f"user file {name}\n".encode())
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # an mtime no write keeps
        self.sentinels.append(path)
        return path

    def folder(self, name: str, *files: str) -> Path:
        """A user's folder holding sentinel ``files`` (a sentinel.txt when none are named)."""
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        for f in files or ("sentinel.txt",):
            self.sentinel(path, f)
        return path

    def copy(self, src: Path, name: str) -> Path:
        dst = self.tmp / name
        shutil.copytree(src, dst, symlinks=True)
        return dst

    def ro(self) -> Path:
        """A read-only folder (holding a sentinel) that this process cannot write, even as root."""
        path = self.folder("readonly")
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
                pytest.skip("no read-only folder: chattr +i is not available to root here")
        else:
            path.chmod(0o555)
        self.readonly.append(path)
        try:
            (path / "probe").write_text("x")
        except OSError:
            return path
        pytest.skip("could not make a read-only folder here")

    def release(self) -> None:
        for path in self.readonly:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
            else:
                path.chmod(0o755)


def _snapshot(paths):
    out = {}
    for p in paths:
        try:
            out[p] = (p.read_bytes(), p.stat().st_mtime_ns)
        except OSError:
            out[p] = None
    return out


def _edit_meta(root: Path, **changes) -> None:
    meta = json.loads((root / "meta.json").read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    (root / "meta.json").write_text(json.dumps(meta, indent=2))


def _hold_generate_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".generate.lock", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"4242\n", 0)
    return fd


# -- the cases --------------------------------------------------------------------------------------
# Each returns (argv, names): the command, and strings its error line must contain (the path at
# fault). A case may return a third item, "subprocess", to run the command as its own process
# with the stand-in image source.
CASES = {}


def case(group: str):
    def deco(fn):
        CASES[f"{group}:{fn.__name__}"] = fn
        return fn

    return deco


SIM = ["simulate", "--zone-axis", "0", "0", "1"]
PRED = ["--calibration", "0.02", "--matcher-directions", "20"]


# already fixed before issue 14's second part: ranges of simulate, degenerate images, lying or
# damaged files, concurrent and killed generate runs
@case("fixed")
def simulate_size_huge(c):
    return [*SIM, "--size", "100000", "--png", str(c.folder("u") / "x.png")], ["100000", "MB"]


@case("fixed")
def simulate_spot_sigma(c):
    return [*SIM, "--size", "64", "--spot-sigma", "1000", "--png", str(c.folder("u") / "x.png")], ["spot sigma"]


@case("fixed")
def simulate_calibration_1_per_nm(c):
    return [*SIM, "--size", "64", "--calibration", "5", "--png", str(c.folder("u") / "x.png")], ["1/nm"]


@case("fixed")
def simulate_dose(c):
    return [*SIM, "--size", "64", "--dose", "1e15", "--png", str(c.folder("u") / "x.png")], ["dose"]


@case("fixed")
def simulate_voltage(c):
    return [*SIM, "--size", "64", "--voltage", "1e6", "--png", str(c.folder("u") / "x.png")], ["voltage"]


@case("fixed")
def simulate_thickness(c):
    return [*SIM, "--size", "64", "--thickness", "1e9", "--png", str(c.folder("u") / "x.png")], ["thickness"]


def _degenerate(c, name, array):
    path = c.folder("u") / name
    np.save(path, array)
    return ["predict", str(path), *PRED, "--json", str(path.parent / "r.json")], [name]


@case("fixed")
def predict_constant_image(c):
    return _degenerate(c, "flat.npy", np.full((64, 64), 7.0, np.float32))


@case("fixed")
def predict_complex_image(c):
    rng = np.random.default_rng(0)
    return _degenerate(c, "complex.npy", (rng.random((64, 64)) + 1j * rng.random((64, 64))).astype(np.complex64))


@case("fixed")
def predict_bool_image(c):
    return _degenerate(c, "mask.npy", np.random.default_rng(0).random((64, 64)) > 0.5)


@case("fixed")
def predict_tiny_image(c):
    return _degenerate(c, "tiny.npy", np.random.default_rng(0).random((8, 8)).astype(np.float32))


@case("fixed")
def meta_path_outside_dataset(c):
    d = c.copy(c.data, "d")
    meta = json.loads((d / "meta.json").read_text())
    rel = min(meta["files"])
    meta["files"]["../../../etc/passwd"] = meta["files"].pop(rel)
    (d / "meta.json").write_text(json.dumps(meta))
    return ["inspect", str(d), "--no-sheet"], ["meta.json", "outside"]


@case("fixed")
def train_args_damaged(c):
    r = c.copy(c.run, "r")
    (r / "train_args.json").write_text('{"arch": "compact-s", "sett')
    return ["train", "--data", str(c.data), "--out", str(r), "--resume", "--no-progress"], ["train_args.json"]


@case("fixed")
def cif_nan_coordinates(c):
    cif = c.folder("u") / "nan.cif"
    cif.write_text(CIF.read_text().replace("O1 O 0.0 0.0 0.2081", "O1 O nan 0.0 0.2081"))
    return [*SIM, "--crystal", str(cif), "--size", "64"], ["nan.cif"]


@case("fixed")
def generate_folder_in_use(c):
    out = c.tmp / "ds"
    c.fd = _hold_generate_lock(out)
    return ["generate", "--mode", "single", "-n", "6", "--size", "32", "--out", str(out), "--no-progress"], [
        str(out), "pid 4242"]


@case("fixed")
def generate_killed_worker(c):
    out = c.folder("u").parent / "ds"
    c.env = {"EDORIENT_TEST_DIE_ONCE": str(c.tmp / "died")}
    argv = ["_standin_source:images_die_once", "generate", "--mode", "single", "-n", "24", "--size", "32",
            "--shard-size", "3", "--workers", "2", "--no-progress", "--out", str(out)]
    return argv, [str(out), "rerun"], "subprocess"


@case("fixed")
def generate_into_user_folder(c):
    u = c.folder("u", "notes.txt")
    return ["generate", "-n", "4", "--size", "32", "--out", str(u), "--no-progress"], [str(u)]


@case("fixed")
def generate_out_is_a_file(c):
    f = c.sentinel(c.tmp, "file.txt")
    return ["generate", "-n", "4", "--size", "32", "--out", str(f), "--no-progress"], [str(f)]


@case("fixed")
def generate_size_huge(c):
    return ["generate", "-n", "4", "--size", "100000", "--out", str(c.folder("u") / "ds")], ["100000", "MB"]


# 1. never destroy what edorient did not write
@case("folders")
def generate_user_images_folder(c):
    u = c.folder("photos", "images/grain_01.png", "images/grain_02.png")
    return ["generate", "-n", "4", "--size", "32", "--out", str(u), "--no-progress"], [str(u)]


@case("folders")
def generate_user_file_named_shard(c):
    u = c.folder("photos", "images/shard_01.tif")
    return ["generate", "-n", "4", "--size", "32", "--out", str(u), "--no-progress"], [str(u)]


@case("folders")
def cluster_out_user_folder(c):
    d = c.copy(c.data, "d")
    u = c.folder("u", "config.json", "tables.md")
    return ["cluster", "--data", str(d), "--out", str(u), "--kmax", "3", "--resize", "8", "--no-progress"], [str(u)]


@case("folders")
def cluster_out_a_run_folder(c):
    d, r = c.copy(c.data, "d"), c.copy(c.run, "r")
    c.sentinels += [r / "config.json", r / "best.pt"]
    return ["cluster", "--data", str(d), "--out", str(r), "--kmax", "3", "--resize", "8", "--no-progress"], [str(r)]


@case("folders")
def evaluate_out_user_folder(c):
    u = c.folder("u", "config.json", "report.md")
    return ["evaluate", "--run", str(c.run), "--data", str(c.data), "--out", str(u), "--stage2-max", "0",
            "--subsets", "1", "--no-progress"], [str(u)]


@case("folders")
def evaluate_out_a_run_folder(c):
    r = c.copy(c.run, "r")
    c.sentinels += [r / "config.json", r / "best.pt"]
    return ["evaluate", "--run", str(r), "--data", str(c.data), "--out", str(r), "--stage2-max", "0",
            "--subsets", "1", "--no-progress"], [str(r)]


@case("folders")
def demo_out_user_folder(c):
    u = c.folder("u", "config.json", "data_thesis")  # data_thesis a file: an old version fails fast after the damage
    return ["demo", "--tiny", "--out", str(u), "--no-progress"], [str(u)]


@case("folders")
def train_resume_user_folder(c):
    u = c.folder("u", "config.json", "notes.txt")
    return ["train", "--data", str(c.data), "--out", str(u), "--resume", *TRAIN], [str(u)]


@case("folders")
def train_into_user_folder_says_not_a_run(c):
    u = c.folder("u", "notes.txt")
    c.forbid = ["--resume"]  # continuing it is what would destroy the folder
    return ["train", "--data", str(c.data), "--out", str(u), *TRAIN], [str(u)]


@case("folders")
def reproduce_out_user_config(c):
    u = c.folder("u")
    c.sentinel(u, "config.json", b'{"my": "settings"}\n')
    return ["reproduce", "--out", str(u), "--experiment", "3", "--no-progress"], [str(u)]


# 2. refuse before allocating, with the figure
@case("sizes")
def generate_n_1e12(c):
    return ["generate", "--mode", "random", "-n", str(10**12), "--size", "32", "--out", str(c.folder("u") / "ds"),
            "--no-progress"], ["1,000,000,000,000", "of disk"]


@case("sizes")
def generate_thesis_5e11_pairs(c):
    return ["generate", "--mode", "thesis", "-n", "1000001", "--size", "32", "--out", str(c.folder("u") / "ds"),
            "--no-progress"], ["500,000,500,000", "TB"]


@case("sizes")
def train_input_100000(c):
    return ["train", "--data", str(c.data), "--out", str(c.folder("u") / "run"), "--input", "100000", *TRAIN], [
        "100000", "GB"]


@case("sizes")
def predict_matcher_directions_1e9(c):
    return ["predict", str(c.image), "--calibration", "0.02", "--matcher-directions", str(10**9)], [
        "--matcher-directions", "TB"]


@case("sizes")
def evaluate_matcher_directions_1e9(c):
    return ["evaluate", "--run", str(c.run), "--data", str(c.data), "--out", str(c.folder("u") / "ev"),
            "--matcher-directions", str(10**9), "--subsets", "1", "--no-progress"], ["--matcher-directions", "TB"]


@case("sizes")
def train_negative_grad_clip(c):
    return ["train", "--data", str(c.data), "--out", str(c.folder("u") / "run"), "--grad-clip", "-1", *TRAIN], [
        "--grad-clip"]


@case("sizes")
def train_negative_time_limit(c):
    return ["train", "--data", str(c.data), "--out", str(c.folder("u") / "run"), "--time-limit", "-5", *TRAIN], [
        "--time-limit"]


@case("sizes")
def train_negative_weight_decay(c):
    return ["train", "--data", str(c.data), "--out", str(c.folder("u") / "run"), "--weight-decay", "-1", *TRAIN], [
        "--weight-decay"]


# 3. output paths: read-only folders, missing folders, folders where a file is expected
@case("outputs")
def simulate_png_readonly(c):
    return [*SIM, "--size", "64", "--png", str(c.ro() / "x.png")], ["x.png"]


@case("outputs")
def simulate_spots_readonly(c):
    return [*SIM, "--size", "64", "--spots", str(c.ro() / "s.csv")], ["s.csv"]


@case("outputs")
def predict_json_readonly(c):
    return ["predict", str(c.image), *PRED, "--json", str(c.ro() / "r.json")], ["r.json"]


@case("outputs")
def predict_overlay_readonly(c):
    return ["predict", str(c.image), *PRED, "--overlay", str(c.ro() / "o.png")], ["o.png"]


@case("outputs")
def reflections_csv_readonly(c):
    return ["reflections", "--dmin", "2", "--csv", str(c.ro() / "r.csv")], ["r.csv"]


@case("outputs")
def inspect_sheet_readonly(c):
    return ["inspect", str(c.data), "--sheet", str(c.ro() / "s.png")], ["s.png"]


@case("outputs")
def logfile_readonly(c):
    return ["--logfile", str(c.ro() / "x.log"), "reflections", "--dmin", "2"], ["x.log"]


@case("outputs")
def generate_out_readonly(c):
    out = c.ro() / "ds"
    return ["generate", "-n", "4", "--size", "32", "--out", str(out), "--no-progress"], [str(out)]


@case("outputs")
def train_out_readonly(c):
    out = c.ro() / "run"
    return ["train", "--data", str(c.data), "--out", str(out), *TRAIN], [str(out)]


@case("outputs")
def evaluate_out_readonly(c):
    out = c.ro() / "ev"
    return ["evaluate", "--run", str(c.run), "--data", str(c.data), "--out", str(out), "--stage2-max", "0",
            "--subsets", "1", "--no-progress"], [str(out)]


@case("outputs")
def cluster_out_readonly(c):
    d = c.copy(c.data, "d")
    out = c.ro() / "k"
    return ["cluster", "--data", str(d), "--out", str(out), "--kmax", "3", "--resize", "8", "--no-progress"], [str(out)]


@case("outputs")
def demo_out_readonly(c):
    out = c.ro() / "demo"
    return ["demo", "--tiny", "--out", str(out), "--no-progress"], [str(out)]


@case("outputs")
def reproduce_out_readonly(c):
    out = c.ro() / "rep"
    return ["reproduce", "--out", str(out), "--experiment", "3", "--no-progress"], [str(out)]


@case("outputs")
def logfile_missing_folder(c):
    path = c.folder("u") / "no" / "such" / "x.log"
    return ["--logfile", str(path), "reflections", "--dmin", "2"], [str(path.parent)]


@case("outputs")
def logfile_is_a_folder(c):
    u = c.folder("u")
    return ["--logfile", str(u), "reflections", "--dmin", "2"], [str(u)]


@case("outputs")
def simulate_png_is_a_folder(c):
    u = c.folder("u")
    return [*SIM, "--size", "64", "--png", str(u)], [str(u)]


@case("outputs")
def simulate_spots_is_a_folder(c):
    u = c.folder("u")
    return [*SIM, "--size", "64", "--spots", str(u)], [str(u)]


@case("outputs")
def predict_json_is_a_folder(c):
    u = c.folder("u")
    return ["predict", str(c.image), *PRED, "--json", str(u)], [str(u)]


@case("outputs")
def predict_overlay_is_a_folder(c):
    u = c.folder("u")
    return ["predict", str(c.image), *PRED, "--overlay", str(u)], [str(u)]


@case("outputs")
def reflections_csv_is_a_folder(c):
    u = c.folder("u")
    return ["reflections", "--dmin", "2", "--csv", str(u)], [str(u)]


@case("outputs")
def inspect_sheet_is_a_folder(c):
    u = c.folder("u")
    return ["inspect", str(c.data), "--sheet", str(u)], [str(u)]


# 4. damaged or lying inputs
def _predict_with(c, r):
    return ["predict", str(c.image), "--calibration", "0.02", "--grains", "2", "--run", str(r), "--json",
            str(c.folder("u") / "r.json")]


@case("damaged")
def checkpoint_truncated(c):
    r = c.copy(c.run, "r")
    data = (r / "best.pt").read_bytes()
    (r / "best.pt").write_bytes(data[: len(data) // 2])
    return _predict_with(c, r), [str(r / "best.pt")]


@case("damaged")
def checkpoint_not_a_checkpoint(c):
    r = c.copy(c.run, "r")
    (r / "best.pt").write_text("these are my notes, not weights\n")
    return _predict_with(c, r), [str(r / "best.pt")]


@case("damaged")
def checkpoint_pickled_module(c):
    import torch

    from edorient.models import build_model

    r = c.copy(c.run, "r")
    torch.save(build_model("compact-s", input_size=32, n_grains=2), r / "best.pt")
    return _predict_with(c, r), [str(r / "best.pt")]


@case("damaged")
def checkpoint_without_model(c):
    import torch

    r = c.copy(c.run, "r")
    torch.save({"weights": {"w": torch.zeros(2)}}, r / "best.pt")
    return _predict_with(c, r), [str(r / "best.pt")]


@case("damaged")
def checkpoint_architecture_lies(c):
    import torch

    r = c.copy(c.run, "r")
    ck = torch.load(r / "best.pt", weights_only=True)
    ck["model_config"]["widths"] = [48, 96, 192]  # says another architecture than its weights are
    torch.save(ck, r / "best.pt")
    return _predict_with(c, r), [str(r / "best.pt")]


@case("damaged")
def resume_truncated_last(c):
    r = c.copy(c.run, "r")
    data = (r / "last.pt").read_bytes()
    (r / "last.pt").write_bytes(data[: len(data) // 3])
    return ["train", "--data", str(c.data), "--out", str(r), "--resume", "--epochs", "2", "--no-progress"], [
        str(r / "last.pt")]


@case("damaged")
def resume_with_another_architecture(c):
    r = c.copy(c.run, "r")
    return ["train", "--data", str(c.data), "--out", str(r), "--resume", "--arch", "compact", "--epochs", "2",
            "--no-progress"], [str(r / "last.pt"), "compact-s"]


@case("damaged")
def meta_missing_keys(c):
    d = c.copy(c.data, "d")
    _edit_meta(d, n_shards=None, shards=None)
    return ["inspect", str(d), "--no-sheet"], [str(d / "meta.json"), "n_shards"]


@case("damaged")
def meta_lies_about_counts(c):
    d = c.copy(c.data, "d")
    _edit_meta(d, n_records=10, n_samples=45)
    return ["inspect", str(d), "--no-sheet"], [str(d)]


@case("damaged")
def meta_lies_about_dtype(c):
    d = c.copy(c.data, "d")
    _edit_meta(d, dtype="float16")
    return ["inspect", str(d), "--no-sheet"], [str(d), "float32"]


@case("damaged")
def meta_lies_about_mode(c):
    d = c.copy(c.data, "d")
    _edit_meta(d, mode="random", n_samples=8)
    return ["inspect", str(d), "--no-sheet"], [str(d), "mode"]


@case("damaged")
def meta_lies_about_image_size(c):
    d = c.copy(c.data, "d")
    _edit_meta(d, image_size=64)
    return ["inspect", str(d), "--no-sheet"], [str(d), "64"]


@case("damaged")
def cif_without_cell(c):
    cif = c.folder("u") / "nocell.cif"
    cif.write_text("\n".join(line for line in CIF.read_text().splitlines() if not line.startswith("_cell")) + "\n")
    return [*SIM, "--crystal", str(cif), "--size", "64"], ["nocell.cif", "cell"]


# -- the runner ---------------------------------------------------------------------------------
def _run_inprocess(argv, capsys):
    capsys.readouterr()
    exc = None
    try:
        rc = main(["-q", *argv])
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - what the user would see as a traceback
        rc, exc = 1, e
    captured = capsys.readouterr()
    err = captured.err
    if exc is not None:
        err += f"Traceback (most recent call last):\n  {type(exc).__name__}: {exc}\n"
    return rc, err


def _run_subprocess(argv, env):
    full = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", **env)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(STANDIN), os.environ.get("PYTHONPATH", "")) if p)
    p = subprocess.run([sys.executable, "-c", _STANDIN_MAIN, argv[0], "-q", *argv[1:]], env=full,
                       capture_output=True, text=True, timeout=120, check=False)
    return p.returncode, p.stderr


def classify(rc, err: str, changed: list) -> str:
    if changed:
        return "destroyed user file"
    if "Traceback" in err:
        return "traceback"
    if rc == 0:
        return "silent wrong result"
    if rc == 2 and len(err.strip().splitlines()) == 1:
        return "clear one-line error"
    return "unclear error"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_one_line_nothing_lost(name, shared, tmp_path, monkeypatch, capsys):
    c = Ctx(tmp=tmp_path / "case", shared=shared)
    c.tmp.mkdir()
    cwd = tmp_path / "cwd"  # commands with default output folders write here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    c.sentinel(cwd)
    try:
        built = CASES[name](c)
        argv, names = built[0], built[1]
        before = _snapshot(c.sentinels)
        if len(built) > 2 and built[2] == "subprocess":
            rc, err = _run_subprocess(argv, getattr(c, "env", {}))
        else:
            rc, err = _run_inprocess(argv, capsys)
        after = _snapshot(c.sentinels)
    finally:
        if getattr(c, "fd", None) is not None:
            os.close(c.fd)
        c.release()
    changed = [str(p) for p in c.sentinels if before[p] != after[p]]
    outcome = classify(rc, err, changed)
    lines = err.strip().splitlines()
    if os.environ.get("EDORIENT_FUZZ_TALLY"):
        with open(os.environ["EDORIENT_FUZZ_TALLY"], "a") as fh:
            fh.write(json.dumps({"case": name, "outcome": outcome, "rc": rc, "line": lines[-1] if lines else ""}) + "\n")
    assert outcome == "clear one-line error", (outcome, rc, err, changed)
    assert lines[0].startswith("edorient ") and ": error: " in lines[0], lines[0]
    for needle in names:
        assert needle in lines[0], (needle, lines[0])
    for needle in getattr(c, "forbid", []):
        assert needle not in lines[0], (needle, lines[0])
