"""Ctrl-C outside a subcommand's work, and generate's workers under Ctrl-C and kill -9 (issue 14,
item 7; the random-moment measurement is tests/integration/test_interrupt.py, marked slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import edorient.cli.main as M
from edorient.cli.main import main

pytestmark = pytest.mark.cli


def test_ctrl_c_while_the_subcommand_is_imported_is_one_line(monkeypatch, capsys):
    def slow_import(argv=None):  # Ctrl-C while build_parser imports torch
        raise KeyboardInterrupt

    monkeypatch.setattr(M, "build_parser", slow_import)
    assert main(["-q", "train", "--data", "x"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ["edorient train: interrupted"]


def test_ctrl_c_is_ignored_once_the_program_has_finished(monkeypatch, capsys):
    old = signal.getsignal(signal.SIGINT)
    try:
        assert main(["inspect", "/nonexistent/folder"]) == 2  # with argv (a caller's process): untouched
        assert signal.getsignal(signal.SIGINT) is old
        monkeypatch.setattr(sys, "argv", ["edorient", "inspect", "/nonexistent/folder"])
        assert main() == 2  # the program itself: the interpreter's shutdown ignores Ctrl-C
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
    assert len(capsys.readouterr().err.splitlines()) == 2


def _blocked(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(ln for ln in f if ln.startswith("SigBlk:")).split()[1], 16)


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not hasattr(signal, "pthread_sigmask"), reason="Linux only")
def test_generate_workers_start_with_ctrl_c_blocked(monkeypatch):
    import edorient.data.generate as G

    futures = []

    class Pool(G.ProcessPoolExecutor):  # generate's executor, its workers reporting their blocked signals
        def __init__(self, n, mp_context, initializer, initargs):
            super().__init__(n, mp_context=mp_context)

        def submit(self, fn, *args):
            futures.append(super().submit(_blocked_here))
            return futures[-1]

    monkeypatch.setattr(G, "ProcessPoolExecutor", Pool)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    handler = signal.getsignal(signal.SIGINT)
    G._render_in_pool(None, None, [0, 1], 2, type("Bar", (), {"update": lambda self: None})())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before  # restored here
    assert signal.getsignal(signal.SIGINT) is handler
    assert len(futures) == 2 and all(f.result() & (1 << (signal.SIGINT - 1)) for f in futures)


def _blocked_here() -> int:
    return _blocked(os.getpid())


def test_ctrl_c_while_workers_start_is_held_until_they_have_started():
    from edorient.data.generate import _interrupts_held

    reached = False
    # Python's own Ctrl-C handler, whatever this process inherited (a shell that starts a
    # background job without job control makes it ignore SIGINT, and Python keeps that)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), _interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            sum(range(10_000))  # calls and loops: where Python would raise it
            reached = True
    finally:
        signal.signal(signal.SIGINT, old)
    assert reached


def test_a_worker_exits_once_its_parent_is_gone():
    code = "import os; from edorient.data.generate import _exit_with_parent; _exit_with_parent(os.getppid() + 10**6)"
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode
    assert rc == 1 and time.perf_counter() - t0 < 30


def test_dataloader_workers_ignore_ctrl_c_and_a_dropped_connection(monkeypatch):
    from edorient.training import loop as L

    seen = []

    def default(t, e, tb):
        seen.append(t)

    for exc in (ConnectionResetError, BrokenPipeError, EOFError, ValueError):
        L._quiet_if_main_gone(default, exc, exc(), None)
    assert seen == [ValueError]  # only the main process going away is quiet
    old = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(sys, "excepthook", default)
    try:
        L._seed_worker(0, 1, 0)  # as worker_init_fn does in a worker
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        sys.excepthook(BrokenPipeError, BrokenPipeError(), None)
        sys.excepthook(KeyError, KeyError(), None)
        assert seen == [ValueError, KeyError]
    finally:
        signal.signal(signal.SIGINT, old)
