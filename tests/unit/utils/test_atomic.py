"""Atomic writers give the file the mode a plain open() would (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from edorient._utils.atomic import atomic_path, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it after."""
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_new_file_gets_0666_minus_umask(tmp_path, umask, mask, want):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"png")
    with open(tmp_path / "plain.txt", "w") as fh:  # what a plain open() gives, for comparison
        fh.write("x")
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.png") == _mode(tmp_path / "plain.txt") == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.png", "plain.txt"]


def test_rewriting_keeps_an_existing_files_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640
