"""Data-set files written atomically get the mode a plain open() would."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from edorient.data._storage import atomic_save_npy, atomic_write_bytes, atomic_write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_files_are_0644_under_umask_022(tmp_path, umask_022):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "meta.json", {"a": 1})
    atomic_save_npy(tmp_path / "s.npy", np.zeros(3))
    assert [_mode(tmp_path / n) for n in ("a.bin", "meta.json", "s.npy")] == [0o644] * 3


def test_rewriting_keeps_an_existing_files_mode(tmp_path, umask_022):
    path = tmp_path / "meta.json"
    atomic_write_json(path, {"a": 1})
    os.chmod(path, 0o600)
    atomic_write_json(path, {"a": 2})
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]
