"""Memory and disk a job would need, checked before anything is allocated.

A command asked for something far beyond the machine (``generate -n 10^12``, a template
dictionary of 10^9 directions) should say so in one line with the figure, instead of dying in
a MemoryError or filling the disk. The estimates are rough lower bounds: a refusal means the
job cannot fit, never that it merely might not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edorient.errors import EdorientError


def format_bytes(n: float) -> str:
    """``1.5 GB``, ``48 TB``: decimal units, at least 2 significant figures.

    Examples
    --------
    >>> format_bytes(3.2e9), format_bytes(5.12e14), format_bytes(900)
    ('3.2 GB', '512 TB', '900 B')
    """
    n = float(n)
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:,.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
    return f"{n:.0f} B"


def physical_memory_bytes() -> int | None:
    """Total RAM of this machine (``os.sysconf``), None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def free_disk_bytes(path: str | os.PathLike) -> tuple[int, Path] | None:
    """(free bytes, folder measured) of the file system that will hold ``path`` (its nearest
    existing folder); None if none can be measured."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        if folder.is_dir():
            try:
                return int(shutil.disk_usage(folder).free), folder
            except OSError:
                return None
    return None


def require_memory(needed: float, what: str, fix: str) -> None:
    """EdorientError if ``needed`` bytes exceed this machine's RAM: ``WHAT needs about N of
    memory, more than this machine's M; FIX``."""
    total = physical_memory_bytes()
    if total is not None and needed > total:
        raise EdorientError(f"{what} needs about {format_bytes(needed)} of memory, more than this machine's "
                            f"{format_bytes(total)}; {fix}")


def require_disk(needed: float, path: str | os.PathLike, what: str, fix: str) -> None:
    """EdorientError if ``needed`` bytes exceed the free space where ``path`` will be written."""
    free = free_disk_bytes(path)
    if free is not None and needed > free[0]:
        raise EdorientError(f"{what} needs about {format_bytes(needed)} of disk, but {free[1]} has "
                            f"{format_bytes(free[0])} free; {fix}")


def template_dictionary_bytes(n_directions: int, n_r: int = 48, n_phi: int = 360) -> float:
    """Memory of :class:`edorient.indexing.matching.TemplateMatcher`'s dictionary: the
    directions of the sector grid (``n x |G|`` sphere points, 48 for 4/mmm), then 2 x n templates
    (both orientation families) held as float64 polar images and their complex FFT along phi."""
    n = float(n_directions)
    grid = n * 48 * 8 * 5  # the Fibonacci sphere: index, z, phi and the (x, y, z) points
    templates = 2 * n * n_r * (n_phi * 8 + (n_phi // 2 + 1) * 16)
    return grid + templates


def check_matcher_directions(n: int, flag: str = "--matcher-directions") -> None:
    """EdorientError if a template dictionary of ``n`` directions cannot fit in memory."""
    require_memory(template_dictionary_bytes(n), f"{flag} {n} (a template dictionary of {2 * int(n):,} patterns)",
                   f"use a few hundred directions ({flag} 400 is the default)")
