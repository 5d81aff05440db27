"""Random interruptions of ``edorient generate`` and ``edorient train`` (issue 14, item 7).

For each scenario an uninterrupted reference run is timed; then each trial starts the same
command, sends a signal at a moment drawn uniformly over the reference's duration (seeded),
reruns the command to completion (``train`` with ``--resume``) and compares the result with the
reference, byte for byte:

``generate``  a tiny thesis set (16 orientations, 32 px, 8 shards of 2), ``--workers 2``; the
              sha256 of every file of the data set (meta.json, shards and sidecars, labels,
              split index files, the output marker).
``train-w0``, ``train-w2``  compact-s, 3 epochs on 48 samples of such a set, DataLoader
              ``--workers 0`` and ``2``; the model and optimizer tensors of best.pt and last.pt
              (``torch.equal``), their epoch and best epoch, metrics.csv without its timing columns
              (``epoch_time_s``, ``train_images_per_s``).

Signals: ``SIGINT`` goes to the command's process group (what Ctrl-C in a terminal does: the
workers get it too); ``SIGKILL`` goes to the main process only (``kill -9 PID``, the OOM
killer), so its workers are orphaned. Per trial: the exit status and stderr of the interrupted
run (SIGINT: one line, no "Traceback", status not 0; or status 0 and silent when the command had
finished and the signal came while the interpreter shut down), whether it was still running when
the signal came, processes of its group still alive 5 s after it ended (then killed by pid), temporaries
(``.*tmp*``) and the generate lock left by it and after the rerun, the rerun's status and
whether the result is bit-identical to the reference. A control run (uninterrupted, into a new
folder) checks that the reference is reproducible at all. Last, ``race``: two ``generate`` on
one new folder started together (the second 0-0.3 s later): one must be refused in one line and
the folder must equal the reference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_interrupt.py --work /tmp/intr --trials 10

``--markdown`` also prints the summary as a Markdown table; ``--src DIR/src`` measures another
copy of the package (``git archive OLD src | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDORIENT = [sys.executable, "-c", "import sys; from edorient.cli.main import main; sys.exit(main())"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
TIMING_COLUMNS = ("epoch_time_s", "train_images_per_s")
GEN_ARGS = ["--mode", "thesis", "-n", "16", "--size", "32", "--shard-size", "2", "--workers", "2"]


def _cli() -> list[str]:
    """The installed ``edorient`` script beside this interpreter, else ``python -c main()``."""
    script = Path(sys.executable).with_name("edorient")
    return [str(script)] if script.is_file() else EDORIENT


def generate_argv(out: Path) -> list[str]:
    return [*_cli(), "-q", "generate", *GEN_ARGS, "--no-progress", "--out", str(out)]


def train_argv(data: Path, out: Path, workers: int, epochs: int = 3, limit: int = 48) -> list[str]:
    return [*_cli(), "-q", "train", "--data", str(data), "--out", str(out), "--arch", "compact-s", "--epochs",
            str(epochs), "--batch-size", "16", "--limit", str(limit), "--optimizer", "adamw", "--lr", "0.001",
            "--loss", "symmetry", "--select", "val_loss", "--no-progress", "--device", "cpu",
            "--workers", str(workers)]


# -- what a folder holds -------------------------------------------------------------------------
def leftovers(folder: Path) -> list[str]:
    """Temporaries (names starting with '.' and containing 'tmp') and the generate lock."""
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.is_file() and ("tmp" in p.name or p.name == ".generate.lock"))


def dataset_fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every regular file of a data set but temporaries and the lock."""
    skip = set(leftovers(folder))
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and str(p.relative_to(folder)) not in skip}


def run_fingerprint(folder: Path) -> dict:
    """best.pt / last.pt tensors (model, optimizer), their epochs, metrics.csv without timing."""
    import torch

    fp: dict = {}
    for name in ("best.pt", "last.pt"):
        path = folder / name
        if not path.is_file():
            fp[name] = None
            continue
        ck = torch.load(path, map_location="cpu", weights_only=True)
        tensors = {"model." + k: v for k, v in ck["model"].items()}
        for sid, st in ck["optimizer"]["state"].items():
            tensors.update((f"optim.{sid}.{k}", v) for k, v in st.items() if torch.is_tensor(v))
        fp[name] = {"tensors": tensors, "epoch": ck["epoch"], "best": ck["best"]["epoch"], "step": ck["step"]}
    path = folder / "metrics.csv"
    fp["metrics.csv"] = None
    if path.is_file():
        with open(path, newline="") as f:
            fp["metrics.csv"] = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]
    return fp


def same_run(a: dict, b: dict) -> tuple[bool, str]:
    import torch

    for name in ("best.pt", "last.pt"):
        x, y = a[name], b[name]
        if x is None or y is None:
            return False, f"{name} missing"
        for key in ("epoch", "best", "step"):
            if x[key] != y[key]:
                return False, f"{name} {key} {y[key]} (reference {x[key]})"
        if x["tensors"].keys() != y["tensors"].keys():
            return False, f"{name} holds other tensors"
        for k, v in x["tensors"].items():
            if not torch.equal(v, y["tensors"][k]):
                diff = float((v.double() - y["tensors"][k].double()).abs().max())
                return False, f"{name} {k} differs (max {diff:.3g})"
    if a["metrics.csv"] != b["metrics.csv"]:
        return False, "metrics.csv differs"
    return True, ""


def same_dataset(a: dict, b: dict) -> tuple[bool, str]:
    if a == b:
        return True, ""
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return False, f"{len(differ)} file(s) differ: {', '.join(differ[:3])}"


# -- processes -----------------------------------------------------------------------------------
def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a command started with start_new_session=True)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(p.name))
    return found


def reap_session(sid: int, grace: float = 5.0) -> list[int]:
    """Processes of session ``sid`` still alive ``grace`` s from now; they are then SIGKILLed."""
    deadline = time.time() + grace
    while time.time() < deadline and session_members(sid):
        time.sleep(0.1)
    left = session_members(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def timed_run(argv: list[str], timeout: float = 600) -> tuple[int | None, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        reap_session(proc.pid, 0)
        return None, err, time.perf_counter() - t0
    reap_session(proc.pid, 0)
    return proc.returncode, err, time.perf_counter() - t0


def lines(text: str) -> list[str]:
    return [ln for ln in (text or "").splitlines() if ln.strip()]


# -- trials --------------------------------------------------------------------------------------
@dataclass
class Trial:
    scenario: str
    sig: str
    at_s: float
    running: bool = True  # still running when the signal came
    rc: int | None = None
    err_lines: list[str] = field(default_factory=list)
    exit_s: float = 0.0  # from the signal to the exit
    orphans: int = 0
    left_after_kill: list[str] = field(default_factory=list)
    rerun_rc: int | None = None
    rerun_err: str = ""
    identical: bool = False
    why: str = ""
    left_after_rerun: list[str] = field(default_factory=list)

    @property
    def traceback(self) -> bool:
        return any("Traceback" in ln for ln in self.err_lines)

    @property
    def one_line(self) -> bool:
        return len(self.err_lines) == 1 and not self.traceback

    @property
    def clean_sigint(self) -> bool:
        """Ctrl-C's rule: one line, no traceback, exit status not 0; or exit 0 without a word
        (the command had finished: the signal came while the interpreter shut down)."""
        return (self.rc != 0 and self.one_line) or (self.rc == 0 and not self.err_lines)

    def line(self) -> str:
        err = self.err_lines[-1][:90] if self.err_lines else ""
        return (f"{self.scenario:9s} {self.sig:7s} at {self.at_s:5.2f} s: "
                f"{'exit ' + str(self.rc) if self.running else 'finished first (exit ' + str(self.rc) + ')'}"
                f", {len(self.err_lines)} stderr line(s){' [Traceback]' if self.traceback else ''}"
                f", orphans {self.orphans}, left {len(self.left_after_kill)}; rerun exit {self.rerun_rc}, "
                f"identical {self.identical}{' (' + self.why + ')' if self.why else ''}, "
                f"left after rerun {len(self.left_after_rerun)}" + (f" | {err}" if err else ""))


def interrupt(argv: list[str], sig: int, at_s: float, logs: Path) -> tuple[bool, int | None, str, float, int]:
    """Start ``argv``, send ``sig`` at ``at_s`` s; (running, exit status, stderr, exit delay, orphans).

    Output goes to files, not pipes: orphaned workers of a SIGKILLed run would hold a pipe open.
    """
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as o, open(logs / "stderr", "w") as e:
        proc = subprocess.Popen(argv, stdout=o, stderr=e, text=True, env=ENV, start_new_session=True)
    try:
        proc.wait(timeout=at_s)
        running = False
    except subprocess.TimeoutExpired:
        running = True
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        else:
            os.kill(proc.pid, signal.SIGKILL)  # kill -9 PID: the main process only
    t0 = time.perf_counter()
    hang = ""
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:  # a hang: say so and end it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hang = "\n[bench: still running 120 s after the signal; killed]"
    delay = time.perf_counter() - t0
    orphans = reap_session(proc.pid)
    return running, proc.returncode, (logs / "stderr").read_text() + hang, delay, len(orphans)


class Scenario:
    def __init__(self, name: str, work: Path, argv_of, fingerprint, same, resume_flag: list[str]):
        self.name, self.work, self.argv_of = name, work, argv_of
        self.fingerprint, self.same, self.resume_flag = fingerprint, same, resume_flag
        self.ref_s = 0.0
        self.ref = None
        self.control = (False, "")

    def reference(self) -> None:
        ref = self.work / f"{self.name}_ref"
        shutil.rmtree(ref, ignore_errors=True)
        rc, err, self.ref_s = timed_run(self.argv_of(ref))
        if rc != 0:
            raise SystemExit(f"{self.name}: the reference run failed ({rc}): {err}")
        self.ref = self.fingerprint(ref)
        ctl = self.work / f"{self.name}_control"
        shutil.rmtree(ctl, ignore_errors=True)
        rc, err, _ = timed_run(self.argv_of(ctl))
        self.control = self.same(self.ref, self.fingerprint(ctl)) if rc == 0 else (False, f"exit {rc}")
        print(f"{self.name}: reference {self.ref_s:.1f} s; control run identical: {self.control[0]} {self.control[1]}",
              flush=True)

    def trial(self, k: int, sig: int, at_s: float) -> Trial:
        out = self.work / f"{self.name}_{signal.Signals(sig).name}_{k:02d}"
        shutil.rmtree(out, ignore_errors=True)
        t = Trial(self.name, signal.Signals(sig).name, at_s)
        logs = self.work / "logs" / out.name
        t.running, t.rc, err, t.exit_s, t.orphans = interrupt(self.argv_of(out), sig, at_s, logs)
        t.err_lines = lines(err)
        t.left_after_kill = leftovers(out)
        rc, err, _ = timed_run(self.argv_of(out) + self.resume_flag)
        t.rerun_rc, t.rerun_err = rc, (lines(err) or [""])[-1]
        if rc == 0:
            t.identical, t.why = self.same(self.ref, self.fingerprint(out))
        else:
            t.why = f"rerun: {t.rerun_err[:120]}"
        t.left_after_rerun = leftovers(out)
        shutil.rmtree(out, ignore_errors=True)
        return t


def race_ok(r: dict) -> bool:
    """One run exit 0, the other refused (exit not 0) in one line."""
    return r["rcs"].count(0) == 1 and r["refused_lines"] == [1]


def race(work: Path, ref: dict, k: int, delay: float) -> dict:
    """Two generate runs on one new folder, the second ``delay`` s after the first."""
    out = work / f"race_{k:02d}"
    shutil.rmtree(out, ignore_errors=True)
    procs = []
    for i in range(2):
        procs.append(subprocess.Popen(generate_argv(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=ENV, start_new_session=True))
        if i == 0:
            time.sleep(delay)
    errs = [lines(p.communicate(timeout=300)[1]) for p in procs]
    res = [(p.returncode, e) for p, e in zip(procs, errs)]
    for p in procs:
        reap_session(p.pid, 0)
    refused = [e for rc, e in res if rc != 0]
    same, why = same_dataset(ref, dataset_fingerprint(out))
    r = {"delay": delay, "rcs": [rc for rc, _ in res], "refused_lines": [len(e) for e in refused],
         "message": refused[0][0] if refused and refused[0] else "", "identical": same, "why": why,
         "left": leftovers(out)}
    shutil.rmtree(out, ignore_errors=True)
    return r


# -- summary -------------------------------------------------------------------------------------
def summarize(trials: list[Trial]) -> list[dict]:
    rows = []
    for (scen, sig) in dict.fromkeys((t.scenario, t.sig) for t in trials):
        ts = [t for t in trials if (t.scenario, t.sig) == (scen, sig)]
        hit = [t for t in ts if t.running]
        rcs = sorted({t.rc for t in hit}, key=lambda x: (x is None, x))
        rows.append({
            "scenario": scen, "signal": sig, "trials": len(ts), "interrupted": len(hit),
            "finished": sum(t.rc == 0 for t in hit),
            "exit": "/".join(str(r) for r in rcs),
            "clean": sum(t.clean_sigint for t in hit) if sig == "SIGINT" else None,
            "traceback": sum(t.traceback for t in hit),
            "exit_s": max((t.exit_s for t in hit), default=0.0),
            "orphans": sum(t.orphans > 0 for t in hit),
            "left_after_kill": sum(bool(t.left_after_kill) for t in ts),
            "rerun_ok": sum(t.rerun_rc == 0 for t in ts), "identical": sum(t.identical for t in ts),
            "left_after_rerun": sum(bool(t.left_after_rerun) for t in ts),
        })
    return rows


def print_table(rows: list[dict], markdown: bool) -> None:
    head = ["scenario", "signal", "trials", "signal sent while running", "exit status", "of them exit 0",
            "SIGINT: one line, no traceback", "tracebacks", "max s to exit", "orphans 5 s later",
            "temporaries/lock left by the kill", "rerun exit 0", "bit-identical", "temporaries/lock after rerun"]
    body = [[r["scenario"], r["signal"], r["trials"], r["interrupted"], r["exit"], r["finished"],
             "-" if r["clean"] is None else f"{r['clean']}/{r['interrupted']}", r["traceback"],
             f"{r['exit_s']:.1f}", r["orphans"], r["left_after_kill"], f"{r['rerun_ok']}/{r['trials']}",
             f"{r['identical']}/{r['trials']}", r["left_after_rerun"]] for r in rows]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for b in body:
            print("| " + " | ".join(str(x) for x in b) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        for b in [head, *body]:
            print("  ".join(str(x).ljust(w) for x, w in zip(b, widths)))


def run(work: Path, trials: int = 10, seed: int = 0, only=("generate", "train-w0", "train-w2", "race"),
        races: int = 5, markdown: bool = False) -> dict:
    """Run the benchmark; returns {"trials": [Trial], "races": [dict], "controls": {name: (ok, why)}}."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # started with `cmd &` from a script (or nohup): SIGINT is ignored and the commands would
        # inherit that, so no SIGINT trial would interrupt anything
        signal.signal(signal.SIGINT, signal.default_int_handler)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    data = work / "train_data"
    if not (data / "meta.json").is_file() and any(s.startswith("train") for s in only):
        shutil.rmtree(data, ignore_errors=True)
        rc, err, _ = timed_run(generate_argv(data))
        assert rc == 0, err
    scenarios = {
        "generate": lambda: Scenario("generate", work, generate_argv, dataset_fingerprint, same_dataset, []),
        "train-w0": lambda: Scenario("train-w0", work, lambda out: train_argv(data, out, 0), run_fingerprint,
                                     same_run, ["--resume"]),
        "train-w2": lambda: Scenario("train-w2", work, lambda out: train_argv(data, out, 2), run_fingerprint,
                                     same_run, ["--resume"]),
    }
    done: list[Trial] = []
    controls, gen_ref = {}, None
    for name in only:
        if name not in scenarios:
            continue
        sc = scenarios[name]()
        sc.reference()
        controls[name] = sc.control
        if name == "generate":
            gen_ref = sc.ref
        plan = [(sig, rng.uniform(0.0, sc.ref_s)) for sig in (signal.SIGKILL, signal.SIGINT) for _ in range(trials)]
        for k, (sig, at) in enumerate(plan):
            t = sc.trial(k, sig, at)
            print(t.line(), flush=True)
            done.append(t)
    races_done = []
    if "race" in only:
        if gen_ref is None:
            sc = scenarios["generate"]()
            sc.reference()
            gen_ref = sc.ref
        for k in range(races):
            r = race(work, gen_ref, k, 0.0 if k == 0 else rng.uniform(0.0, 0.3))
            print(f"race      second started {r['delay']:.2f} s later: exits {r['rcs']}, refused run's stderr "
                  f"lines {r['refused_lines']}, identical {r['identical']} {r['why']}, left {r['left']} | "
                  f"{r['message'][:110]}", flush=True)
            races_done.append(r)
    print()
    print_table(summarize(done), markdown=False)
    if markdown:
        print()
        print_table(summarize(done), markdown=True)
    if races_done:
        ok = sum(race_ok(r) for r in races_done)
        print(f"\nrace: {ok}/{len(races_done)} with one run exit 0 and the other refused in one line; data set "
              f"identical to the reference {sum(r['identical'] for r in races_done)}/{len(races_done)}; "
              f"leftovers {sum(bool(r['left']) for r in races_done)}")
    return {"trials": done, "races": races_done, "controls": controls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--trials", type=int, default=10, help="trials per scenario and signal (default 10)")
    ap.add_argument("--races", type=int, default=5, help="two-process races (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=["generate", "train-w0", "train-w2", "race"])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the package copy to measure (default ./src)")
    args = ap.parse_args()
    ENV["PYTHONPATH"] = str(args.src.resolve())
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False)
    print(f"edorient from {args.src} (git {git.stdout.strip()}); {platform.platform()}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    run(args.work, args.trials, args.seed, args.only, args.races, args.markdown)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
