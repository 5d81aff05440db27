"""Progress bars show on a terminal only: a log file or a pipe gets no carriage-return lines."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edorient._utils.progress import progress_bar, progress_enabled


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("EDORIENT_PROGRESS", raising=False)


def _draw(stream) -> str:
    for _ in progress_bar(range(5), desc="work", file=stream, mininterval=0):
        pass
    return stream.getvalue()


def test_bar_on_a_terminal_and_none_on_a_file():
    assert "\r" in _draw(_Terminal()) and "work" in _draw(_Terminal())
    assert _draw(io.StringIO()) == ""


def test_disable_wins_and_environment_overrides(monkeypatch):
    assert progress_bar(range(2), file=_Terminal(), disable=True).disable
    monkeypatch.setenv("EDORIENT_PROGRESS", "1")
    assert "work" in _draw(io.StringIO())
    monkeypatch.setenv("EDORIENT_PROGRESS", "0")
    assert not progress_enabled(_Terminal())


def test_default_stream_is_stderr(monkeypatch, capsys):
    # under pytest's capture stderr is not a terminal
    assert not progress_enabled()
    for _ in progress_bar(range(3), desc="quiet"):
        pass
    assert capsys.readouterr().err == ""


def test_kmeans_bars_stay_off_a_non_terminal_stderr(capsys):
    from edorient.data import kmeans as km

    imgs = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    km.compute_features(iter([imgs]), 6, 4, progress=True)
    km.cluster(imgs.reshape(6, -1), km.KMeansConfig(kmax=3), progress=True)
    err = capsys.readouterr().err  # (log records may land here: only the bars are checked)
    assert "\r" not in err and "features 4x4" not in err and "k-means (" not in err


#: Modules still calling tqdm themselves (owned elsewhere; to switch to progress_bar).
_NOT_YET: set[str] = set()


def test_no_module_draws_its_own_tqdm_bar():
    import re
    from pathlib import Path

    import edorient

    root = Path(edorient.__file__).parent
    direct = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(encoding="utf-8"), re.M)
    }
    assert direct == {"_utils/progress.py"} | _NOT_YET  # drop a module from _NOT_YET once it switches
