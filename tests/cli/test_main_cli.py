"""``edorient`` itself: a reader that stops early (``| head``) ends the command quietly."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from edorient.cli.main import main

pytestmark = pytest.mark.cli


class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone: every write and flush raises BrokenPipeError."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize(
    "argv",
    [
        ["reflections", "--dmin", "2"],
        ["simulate", "--zone-axis", "0", "0", "1", "--size", "32"],
        ["--help"],
        ["reflections", "--help"],
    ],
)
def test_broken_stdout_ends_with_141_and_no_traceback(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["-q", *argv]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_reflections_piped_into_head_exits_quietly():
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edorient", "reflections", "--dmin", "0.3"],  # ~250 kB: more than a pipe holds
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout.readline().startswith(b"h,k,l")
    proc.stdout.close()  # what head does after its lines
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
