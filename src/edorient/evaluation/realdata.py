"""The table of real cases (``cases.tsv`` of ``../shared/realdata``): patterns of known zone axes.

One case a line, tab-separated (``#`` starts a comment line)::

    name  image  cif  zone [u v w]  calibration (1/Å per px)  kV  direct beam (row, col)

``image`` and ``cif`` are paths relative to the table. The zone axis is three integers, or four
(Miller-Bravais ``[U V T W]`` of a hexagonal cell, ``U + V + T = 0``), read as the three-index
``[U-T V-T W]``; the compact ``110`` / ``1-10`` (one signed digit an index) is read too. The
last two columns may be empty, ``?`` or missing: the voltage is then the file's or the default,
the direct beam unknown. A value marked uncertain with a trailing ``?``
(``200?``) is taken as given. The test of every case (``tests/realdata``) and its benchmark
(``benchmarks/bench_realdata.py``) read the table here, so a case table with fewer columns or a
hexagonal zone runs in both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from edorient.errors import EdorientError

__all__ = ["RealCase", "read_cases", "zone_indices"]


@dataclass(frozen=True)
class RealCase:
    name: str
    image: Path
    cif: Path
    zone: tuple[int, int, int]  #: three-index zone axis [u v w]
    calibration: float  #: 1/Å per pixel of the file
    kv: float | None  #: accelerating voltage, None where the table does not say
    centre: tuple[float, float] | None  #: direct beam (row, col) in the file, None where unknown


def zone_indices(text: str, where: str = "zone") -> tuple[int, int, int]:
    """``"u v w"`` (or ``"U V T W"``, Miller-Bravais) -> (u, v, w).

    >>> zone_indices("1 1 0")
    (1, 1, 0)
    >>> zone_indices("2 -1 -1 0")
    (3, 0, 0)
    >>> zone_indices("[1-10]")  # the compact form: one signed digit an index
    (1, -1, 0)
    """
    parts = text.replace(",", " ").strip("[] ").split()
    if len(parts) == 1 and re.fullmatch(r"(-?\d){3,4}", parts[0]):
        parts = re.findall(r"-?\d", parts[0])
    try:
        idx = [int(v) for v in parts]
    except ValueError:
        raise EdorientError(f"{where}: zone axis {text!r} is not integers; write it as 'u v w' or 'U V T W'") from None
    if len(idx) == 4:
        U, V, T, W = idx
        if U + V + T != 0:
            raise EdorientError(f"{where}: Miller-Bravais zone [{text}] needs U + V + T = 0; check the indices")
        idx = [U - T, V - T, W]
    if len(idx) != 3 or not any(idx):
        raise EdorientError(f"{where}: zone axis {text!r} must be three integers (or four, Miller-Bravais), not all 0")
    return tuple(idx)


def _numbers(text: str) -> tuple[float, ...] | None:
    """A column's numbers (``?``-marked values taken as given); None where it is empty or ``?``."""
    t = text.strip().rstrip("?").strip()
    return tuple(float(v) for v in t.replace(",", " ").split()) if t else None


def read_cases(table: str | Path) -> list[RealCase]:
    """Every case of a ``cases.tsv`` (see the module's docstring), in the table's order."""
    table = Path(table)
    if not table.is_file():
        raise EdorientError(f"no case table at {table}: give the folder of the real patterns (its cases.tsv)")
    out = []
    for no, line in enumerate(table.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{table}:{no}"
        cols = line.split("\t") + [""] * 7
        name, image, cif, zone, cal, kv, centre = (c.strip() for c in cols[:7])
        if not (name and image and cif and zone and cal):
            raise EdorientError(f"{where}: a case needs name, image, cif, zone and calibration (tab-separated)")
        try:
            cal_n, kv_n, rc = _numbers(cal), _numbers(kv), _numbers(centre)
        except ValueError as e:
            raise EdorientError(f"{where}: {e}; calibration, kV and centre must be numbers") from None
        if cal_n is None or len(cal_n) != 1 or not (math.isfinite(cal_n[0]) and cal_n[0] > 0):
            raise EdorientError(f"{where}: calibration {cal!r} must be a positive number of 1/Å per pixel")
        if kv_n is not None and len(kv_n) != 1:
            raise EdorientError(f"{where}: kV {kv!r} must be one number")
        if rc is not None and len(rc) != 2:
            raise EdorientError(f"{where}: direct beam {centre!r} must be 'row col'")
        out.append(RealCase(name, table.parent / image, table.parent / cif, zone_indices(zone, where), cal_n[0],
                            None if kv_n is None else kv_n[0], rc))
    return out
