"""Reliability scenarios of issue 15: what a kill or a second process does to a run or a data set.

Each scenario prints one line per fact. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_reliability.py --work /tmp/rel [--only A B C D]

``--src DIR`` measures another copy of the package (e.g. ``git archive OLD src | tar -x -C DIR``
then ``--src DIR/src``); run the script itself with ``PYTHONPATH=DIR/src`` too (C and D run in
this process).

A  ``edorient train`` SIGKILLed between writing last.pt and best.pt of its final epoch (the last
   epoch that improved in an uninterrupted run of 3 epochs), then the same command with
   ``--resume``: the reported best epoch, best.pt's epoch, metrics.csv's rows.
B  ``edorient generate --workers 2`` with one worker SIGKILLed (as the OOM killer would): exit
   status, time to exit, the message; then the rerun.
C  Two ``generate`` runs with different seeds on one empty folder, interleaved deterministically
   (run 1 is held between its empty-folder check and writing meta.json while run 2 runs).
D  ``fit`` with 2 DataLoader workers: an uninterrupted run twice, and a run killed in its last
   epoch then resumed; the largest weight difference. Then stale temporaries (as a SIGKILL in
   ``atomic_path`` or ``atomic_save_npy`` leaves them) and whether a rerun removes them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))


def sh(argv, timeout=None, env=ENV):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or "", time.perf_counter() - t0


def last_line(text) -> str:
    text = text.decode() if isinstance(text, bytes) else (text or "")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# -- A -----------------------------------------------------------------------------------------
KILL_BEFORE_BEST = textwrap.dedent("""
    import os, signal, sys
    import edorient.training.loop as L
    real = L.save_checkpoint
    def save(path, ckpt):
        if path.name == "best.pt" and ckpt["epoch"] == int(os.environ["KILL_EPOCH"]):
            os.kill(os.getpid(), signal.SIGKILL)  # last.pt is on disk, best.pt not yet
        return real(path, ckpt)
    L.save_checkpoint = save
    from edorient.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def scenario_a(work: Path) -> None:
    import torch

    data, run = work / "a_data", work / "a_run"
    shutil.rmtree(work / "a_data", ignore_errors=True), shutil.rmtree(run, ignore_errors=True)
    sh([PY, "-m", "edorient", "-q", "generate", "--mode", "thesis", "-n", "24", "--size", "32",
        "--out", str(data), "--no-progress"])

    def argv(out, epochs):
        return ["-q", "train", "--data", str(data), "--out", str(out), "--arch", "compact-s", "--epochs",
                str(epochs), "--batch-size", "20", "--limit", "200", "--optimizer", "adamw", "--lr", "0.001",
                "--loss", "symmetry", "--select", "val_loss", "--no-progress"]

    shutil.rmtree(work / "a_ref", ignore_errors=True)
    sh([PY, "-m", "edorient"] + argv(work / "a_ref", 3))
    rows = list(csv.DictReader(open(work / "a_ref" / "metrics.csv")))
    epochs = max(int(r["epoch"]) for r in rows if r["best"] == "1")  # best.pt is due after its last.pt
    rc, out, err, _ = sh([PY, "-c", KILL_BEFORE_BEST] + argv(run, epochs), env=dict(ENV, KILL_EPOCH=str(epochs)))
    print(f"A killed run (--epochs {epochs}): exit {rc} (-9 = SIGKILL)")
    last = torch.load(run / "last.pt", weights_only=True)
    print(f"A after the kill: last.pt epoch {last['epoch']} (best epoch per last.pt: {last['best']['epoch']}), "
          f"best.pt epoch {torch.load(run / 'best.pt', weights_only=True)['epoch'] if (run / 'best.pt').is_file() else None}")
    rc, out, err, _ = sh([PY, "-m", "edorient"] + argv(run, epochs) + ["--resume"])
    best = torch.load(run / "best.pt", weights_only=True)
    rows = [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    side = json.loads((run / "best.json").read_text())
    print(f"A resume: exit {rc}; says: {last_line(out)[:70]}...")
    print(f"A resume: best.pt epoch {best['epoch']}, best.json epoch {side['epoch']}, metrics.csv epochs {rows}")
    same = all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    print(f"A best.pt weights == last.pt's (epoch {epochs} was the best): {same}")


# -- B -----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(fields[1]) == pid and "spawn_main" in cmd and "resource_tracker" not in cmd:
                kids.append(int(p.name))
    return kids


def scenario_b(work: Path) -> None:
    out = work / "b_data"
    shutil.rmtree(out, ignore_errors=True)
    argv = [PY, "-m", "edorient", "generate", "--mode", "random", "-n", "3000", "--size", "64",
            "--shard-size", "50", "--workers", "2", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and victim is None:
        if list((out / "images").glob("shard_*.json")):
            kids = _children(proc.pid)
            victim = kids[0] if kids else None
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    t0 = time.perf_counter()
    try:
        o, e = proc.communicate(timeout=60)
        print(f"B worker {victim} killed: generate exited {proc.returncode} after {time.perf_counter() - t0:.1f} s; "
              f"stderr: {last_line(e)}")
    except subprocess.TimeoutExpired:
        print("B worker killed: generate still running 60 s later, no message (hang); killing it")
        for k in _children(proc.pid):
            os.kill(k, signal.SIGKILL)
        proc.kill()
        proc.communicate()
    done = len(list((out / "images").glob("shard_*.json")))
    rc, o, e, dt = sh(argv, timeout=300)
    meta = json.loads((out / "meta.json").read_text())
    print(f"B rerun: {done} of 60 shards were kept; exit {rc} in {dt:.1f} s, complete: {meta['complete']}")


# -- C -----------------------------------------------------------------------------------------
def scenario_c(work: Path) -> None:
    import numpy as np

    from edorient.data import GenerateConfig, generate_dataset
    from edorient.data import generate as G
    from edorient.errors import EdorientError

    out = work / "c_data"
    shutil.rmtree(out, ignore_errors=True)
    common = dict(mode="single", n=40, image_size=32, shard_size=10)
    release, inside = threading.Event(), threading.Event()
    real = G.sample_labels

    def held(*a, **k):
        if threading.current_thread().name == "run1":
            inside.set()
            release.wait(60)
        return real(*a, **k)

    G.sample_labels = held
    result = {}

    def run1():
        try:
            generate_dataset(GenerateConfig(seed=1, **common), out, progress=False)
            result["run1"] = "exit 0"
        except EdorientError as exc:
            result["run1"] = f"error: {exc}"

    t = threading.Thread(target=run1, name="run1")
    t.start()
    inside.wait(60)
    try:
        generate_dataset(GenerateConfig(seed=2, **common), out, progress=False)
        result["run2"] = "exit 0"
    except EdorientError as exc:
        result["run2"] = f"error: {exc}"
    finally:
        release.set()
        t.join()
        G.sample_labels = real
    print(f"C run 1 (seed 1): {result['run1']}")
    print(f"C run 2 (seed 2): {result['run2']}")
    ref = {s: generate_dataset(GenerateConfig(seed=s, **common), work / f"c_ref{s}", progress=False) for s in (1, 2)}
    meta = json.loads((out / "meta.json").read_text())
    lab = np.load(out / "labels/rotations.npy")
    labels_of = [s for s in (1, 2) if np.array_equal(lab, np.load(ref[s] / "labels/rotations.npy"))]
    img = (out / "images/shard_00000.npy").read_bytes()
    images_of = [s for s in (1, 2) if img == (ref[s] / "images/shard_00000.npy").read_bytes()]
    print(f"C folder: meta seed {meta['config']['seed']}, complete {meta['complete']}; labels of seed {labels_of}, "
          f"images of seed {images_of}")


# -- D -----------------------------------------------------------------------------------------
def scenario_d(work: Path) -> None:
    import torch

    from edorient.data import GenerateConfig, InMemoryDataset, generate_dataset
    from edorient.models import build_model
    from edorient.training import TrainConfig, fit, load_checkpoint

    torch.set_num_threads(1)
    tr, va = InMemoryDataset(64, image_size=32, seed=1), InMemoryDataset(32, image_size=32, seed=2)
    cfg = TrainConfig(epochs=3, batch_size=16, loss="order-free", optimizer="adamw", lr=2e-3, eps=1e-8,
                      device="cpu", progress=False, plot=False, seed=3, workers=2)

    def run(name, **kw):
        torch.manual_seed(0)
        return fit(build_model("compact-s", input_size=32), tr, va, cfg, work / name, **kw)

    class Kill(Exception):
        pass

    def kill(epoch, step):
        if epoch == 3 and step % 4 == 2:
            raise Kill

    for name in ("d_a", "d_b", "d_c"):
        shutil.rmtree(work / name, ignore_errors=True)
    run("d_a"), run("d_b")
    try:
        run("d_c", step_hook=kill)
    except Kill:
        pass
    torch.manual_seed(123)
    fit(build_model("compact-s", input_size=32), tr, va, cfg, work / "d_c", resume=True)

    def diff(x, y):
        a, b = load_checkpoint(work / x / "last.pt")["model"], load_checkpoint(work / y / "last.pt")["model"]
        return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)

    print(f"D 2 workers: uninterrupted vs uninterrupted, largest weight difference {diff('d_a', 'd_b'):.3g}")
    print(f"D 2 workers: uninterrupted vs killed in epoch 3 + resumed, largest weight difference {diff('d_a', 'd_c'):.3g}")

    # stale temporaries: a run folder and a data set as a SIGKILL inside a write leaves them
    run_dir = work / "d_c"
    planted = [run_dir / ".metrics.csv.k1ll3d.tmp.csv", run_dir / ".best.pt.k1ll3d.tmp.pt",
               run_dir / ".last.json.k1ll3d.tmp.json"]
    cfg2 = TrainConfig(**{**cfg.to_dict(), "epochs": 4})
    for p in planted:
        p.write_bytes(b"half")
    torch.manual_seed(0)
    fit(build_model("compact-s", input_size=32), tr, va, cfg2, run_dir, resume=True)
    left = sorted(p.name for p in planted if p.exists())
    print(f"D run folder: {len(planted)} stale temporaries planted, {len(left)} left after the resume {left}")
    ds = work / "d_data"
    shutil.rmtree(ds, ignore_errors=True)
    gcfg = GenerateConfig(mode="single", n=20, image_size=32, shard_size=10, seed=1)
    generate_dataset(gcfg, ds, progress=False)
    planted = [ds / "splits/random/.train.npy.tmp-99999", ds / "splits/disjoint/.test.npy.tmp-99999",
               ds / "images/.shard_00001.npy.tmp-99999"]
    for p in planted:
        p.write_bytes(b"half")
    generate_dataset(gcfg, ds, progress=False)
    left = sorted(str(p.relative_to(ds)) for p in planted if p.exists())
    print(f"D data set: {len(planted)} stale temporaries planted, {len(left)} left after the rerun {left}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=["A", "B", "C", "D"])
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the package copy to measure")
    args = ap.parse_args()
    ENV["PYTHONPATH"] = str(args.src.resolve())
    args.work.mkdir(parents=True, exist_ok=True)
    import edorient

    print(f"edorient from {args.src} (this process: {Path(edorient.__file__).parents[1]}); "
          f"git {sh(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'])[1].strip()}")
    for name in args.only:
        t0 = time.perf_counter()
        {"A": scenario_a, "B": scenario_b, "C": scenario_c, "D": scenario_d}[name](args.work)
        print(f"   ({name}: {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
