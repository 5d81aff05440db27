"""Progress bars: every tqdm bar of the package goes through :func:`progress_bar`.

A bar redraws itself with carriage returns, which reads well on a terminal and floods a log file
or a CI log with one line per redraw. So a bar shows only where its stream is a terminal (or in a
Jupyter kernel, where tqdm draws a widget); elsewhere it is disabled. ``EDORIENT_PROGRESS=1``
forces bars on, ``EDORIENT_PROGRESS=0`` off.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["progress_bar", "progress_enabled"]

ENV = "EDORIENT_PROGRESS"


def progress_enabled(stream: Any = None) -> bool:
    """Whether a bar drawn on ``stream`` (default: stderr) should show.

    Examples
    --------
    >>> import io
    >>> progress_enabled(io.StringIO())  # a file, a pipe: no bar
    False
    """
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("1", "true", "yes", "on", "always"):
        return True
    if env in ("0", "false", "no", "off", "never"):
        return False
    if "ipykernel" in sys.modules:  # Jupyter: tqdm.auto draws a widget, not carriage returns
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no stream, or a closed one
        return False


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """A ``tqdm.auto.tqdm`` bar, with tqdm's arguments, disabled off a terminal.

    ``disable=True`` turns it off as in tqdm; otherwise it shows only where
    :func:`progress_enabled` says so for its ``file`` (default stderr).

    Examples
    --------
    >>> sum(progress_bar(range(4), desc="quiet in a doctest"))
    6
    """
    from tqdm.auto import tqdm

    show = not disable and progress_enabled(kwargs.get("file"))
    return tqdm(iterable, disable=not show, **kwargs)
