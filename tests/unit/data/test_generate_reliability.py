"""Issue 15: a dead worker ends generation with one line, one run per folder, stale files removed."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edorient.data import GenerateConfig, generate_dataset, open_dataset
from edorient.data import generate as G
from edorient.errors import EdorientError

HERE = Path(__file__).parent
SIZE = 32


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _env(**kw):
    return dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **kw)


DIE = dict(mode="single", n=24, image_size=SIZE, shard_size=3, seed=9, image_source="_standin_source:images_die_once")


def test_killed_worker_is_a_one_line_error_and_the_rerun_resumes(tmp_path, monkeypatch):
    out, marker = tmp_path / "ds", tmp_path / "died"
    script = (
        "import sys\n"
        "from edorient.data import GenerateConfig, generate_dataset\n"
        "from edorient.errors import EdorientError\n"
        f"try:\n    generate_dataset(GenerateConfig(**{DIE!r}), sys.argv[1], workers=2, progress=False)\n"
        "except EdorientError as exc:\n    print(exc)\n    sys.exit(3)\n"
    )
    t0 = time.perf_counter()
    try:  # before issue 15 this hung for ever (the pool waited for the lost shard)
        p = subprocess.run([sys.executable, "-c", script, str(out)], env=_env(EDORIENT_TEST_DIE_ONCE=str(marker)),
                           capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("generate hung after a worker was killed")
    assert marker.is_file(), "no worker was killed"
    assert p.returncode == 3, p.stderr[-2000:]
    msg = p.stdout.strip()
    assert "\n" not in msg and str(out) in msg and "rerun" in msg and "died" in msg
    assert time.perf_counter() - t0 < 90
    assert not (out / G.LOCK).exists()  # released on the way out
    assert not json.loads((out / "meta.json").read_text())["complete"]
    # the rerun (same arguments; the marker exists now, nobody dies) resumes and finishes
    monkeypatch.setenv("EDORIENT_TEST_DIE_ONCE", str(marker))
    monkeypatch.syspath_prepend(str(HERE))
    generate_dataset(GenerateConfig(**DIE), out, workers=2, progress=False)
    ref = generate_dataset(GenerateConfig(**DIE), tmp_path / "ref", workers=1, progress=False)
    a, b = folder_bytes(ref), folder_bytes(out)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_second_run_on_the_same_empty_folder_is_refused(tmp_path, monkeypatch):
    """Run 1 is held between its empty-folder check and meta.json while run 2 (another seed)
    runs: before issue 15 both finished, leaving run 1's labels beside run 2's images."""
    out = tmp_path / "ds"
    common = dict(mode="single", n=20, image_size=SIZE, shard_size=10)
    inside, release = threading.Event(), threading.Event()
    real = G.sample_labels

    def held(*a, **k):
        if threading.current_thread().name == "run1":
            inside.set()
            release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(G, "sample_labels", held)
    errors = []

    def run1():
        try:
            generate_dataset(GenerateConfig(seed=1, **common), out, progress=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=run1, name="run1")
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(EdorientError, match=rf"is being written by another edorient generate \(pid {os.getpid()}\)") as e:
            generate_dataset(GenerateConfig(seed=2, **common), out, progress=False)
        assert "\n" not in str(e.value) and str(out) in str(e.value)
    finally:
        release.set()
        t.join(60)
    assert not errors
    monkeypatch.undo()
    ref = generate_dataset(GenerateConfig(seed=1, **common), tmp_path / "ref", progress=False)
    a, b = folder_bytes(ref), folder_bytes(out)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)  # run 1's set alone, no lock left


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    cfg = dict(mode="single", n=24, image_size=SIZE, shard_size=3, seed=9, image_source="_standin_source:images")
    out = tmp_path / "ds"
    script = ("import sys; from edorient.data import GenerateConfig, generate_dataset;"
              f"generate_dataset(GenerateConfig(**{cfg!r}), sys.argv[1], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=_env(EDORIENT_TEST_SLEEP="0.5"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((out / "images").glob("*.json")):
            time.sleep(0.05)
        assert (out / G.LOCK).read_text().strip() == str(proc.pid)
        with pytest.raises(EdorientError, match=rf"being written by another edorient generate \(pid {proc.pid}\)"):
            generate_dataset(GenerateConfig(**cfg), out, progress=False)  # the same arguments too
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert (out / G.LOCK).is_file()  # left behind by the killed run, its pid dead
    # stale temporaries as killed writers leave them, the split index files' among them
    stale = [out / "splits/random/.train.npy.tmp-999999", out / "images/.shard_00007.npy.tmp-999999",
             out / ".meta.json.tmp-999999"]
    for p in stale:
        p.write_bytes(b"half written")
    generate_dataset(GenerateConfig(**cfg), out, progress=False)
    assert not (out / G.LOCK).exists() and not any(p.exists() for p in stale)
    open_dataset(out, verify="full")


def test_killed_first_run_leaving_only_temporaries_is_not_a_foreign_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / ".meta.json.tmp-999999").write_text("{")  # killed while writing meta.json the first time
    generate_dataset(GenerateConfig(mode="single", n=10, image_size=SIZE, shard_size=5, seed=1), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".edorient-output.json", "images", "labels", "meta.json", "splits"]
