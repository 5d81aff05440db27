"""Shared by the benchmark workers and bench_simulator.py (stdlib only: it runs in every venv).

``pin_threads`` sets the CPU affinity of every thread of this process (BLAS/numba pools
included; ``os.sched_setaffinity(0, ...)`` alone moves only the calling thread), like
``taskset -c`` for a running process. ``serve`` is the worker side of the interleaved protocol:
the parent writes one JSON command a line on stdin, the worker answers one JSON line on the
protocol stream (stdout as it was at start; anything a library prints goes to stderr).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ALL_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def pin_threads(cpus) -> None:
    """Affinity of all threads of this process to ``cpus`` (None: the CPUs it started with)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = set(ALL_CPUS if cpus is None else cpus)
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):  # thread gone meanwhile
            pass


def protocol_stream():
    """The real stdout for answers; sys.stdout becomes stderr (libraries print banners)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    return out


def serve(out, meta: dict, run_pass) -> None:
    """Announce ``meta``, then answer {"pin": [cpus] | null} commands with run_pass()'s dict."""
    print(json.dumps({"ready": True, **meta}), file=out, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        pin_threads(cmd.get("pin"))
        try:
            res = run_pass()
        finally:
            pin_threads(None)
        print(json.dumps(res), file=out, flush=True)
