"""Crystals: the built-in anatase TiO2, and any crystal from a CIF (read with gemmi).

Both go through one symmetry expansion (gemmi's space-group operations), so the built-in
anatase and an anatase CIF give the same atoms.
"""

from __future__ import annotations

import functools

import logging
from pathlib import Path

import gemmi
import numpy as np

from edorient.errors import EdorientError
from edorient.physics.crystal import Crystal, direct_matrix
from edorient.physics.scattering import atomic_number, element_symbol
from edorient.physics.symmetry import LaueGroup

log = logging.getLogger(__name__)

#: B factor (Å²) assumed for a CIF site that gives neither U nor B (stated in the crystal's notes).
DEFAULT_B_ISO = 0.5

#: Built-in crystals by name.
BUILTIN = ("anatase",)

#: Anatase TiO2, I4_1/amd (No. 141, origin choice 1): Horn, Schwerdtfeger & Meagher,
#: Z. Kristallogr. 136 (1972) 273-281: a = 3.7845 Å, c = 9.5143 Å, Ti 4a (0, 0, 0),
#: O 8e (0, 0, z) with z = 0.2081. The B factors (Å²) are representative room-temperature
#: values (the refinement's are anisotropic); give a CIF to use others.
ANATASE = {
    "cell": (3.7845, 3.7845, 9.5143, 90.0, 90.0, 90.0),
    "space_group": "I 41/a m d :1",
    "sites": [("Ti", (0.0, 0.0, 0.0), 1.0, 0.40), ("O", (0.0, 0.0, 0.2081), 1.0, 0.60)],
}


def anatase() -> Crystal:
    """Built-in anatase TiO2 (12 atoms in the conventional cell).

    Examples
    --------
    >>> xtal = anatase()
    >>> len(xtal), xtal.laue.name
    (12, '4/mmm')
    """
    sg = gemmi.find_spacegroup_by_name(ANATASE["space_group"])
    return _expand("anatase", ANATASE["cell"], sg, ANATASE["sites"])


def read_cif(path: str | Path) -> Crystal:
    """Read a crystal from a CIF file, symmetry-expanded to the conventional cell.

    Raises
    ------
    EdorientError
        If the file is missing or unreadable, has no cell or atoms, or its space group cannot
        be determined (a bare asymmetric unit is never used silently).
    """
    p = Path(path)
    if not p.is_file():
        raise EdorientError(f"CIF file not found: {p} (give the path to a .cif file)")
    try:
        doc = gemmi.cif.read(str(p))  # (parsed once: the checks below read its tags)
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with parser messages
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdorientError(f"cannot read CIF {p}: {msg} (check that it is a valid CIF)") from None
    if len(doc) == 0:  # (gemmi's own error here is a C++ index message)
        raise EdorientError(f"CIF {p} holds no data block (an empty file?); give a CIF with data_, cell and atoms")
    if len(doc) > 1:
        raise EdorientError(f"CIF {p} holds {len(doc)} data blocks; give a CIF with one (its cell, symmetry and atoms)")
    block = doc.sole_block()
    try:
        st = gemmi.make_small_structure_from_block(block)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdorientError(f"cannot read CIF {p}: {msg} (check that it is a valid CIF)") from None
    cell = st.cell
    missing = _missing_cell_lengths(block)  # gemmi puts a 1 x 1 x 1 Å cell in their place
    if missing or not (cell.a > 0 and cell.b > 0 and cell.c > 0):
        raise EdorientError(f"CIF {p} has no unit cell ({', '.join(missing) or '_cell_length_a/b/c'} missing or "
                            "not a positive number); add the cell lengths in Å")
    sg = _space_group(st)
    if sg is not None:
        sg = _stated_setting(block, sg)
    if sg is None:
        raise EdorientError(
            f"CIF {p} has no readable space group (add _space_group_name_H-M_alt or "
            "_space_group_symop_operation_xyz); refusing to use the asymmetric unit alone"
        )
    if len(st.sites) == 0:
        raise EdorientError(f"CIF {p} lists no atom sites (_atom_site_fract_x/y/z missing)")
    given = _displacements_given(block)
    sites, defaulted = [], []
    for site in st.sites:
        symbol = site.element.name if site.element.name != "X" else site.type_symbol
        xyz = (site.fract.x, site.fract.y, site.fract.z)
        if not np.all(np.isfinite(xyz)):
            raise EdorientError(f"CIF {p}: site {site.label} has non-numeric fractional coordinates {xyz}; fix the atom_site loop")
        if given.get(site.label, False):  # an explicit U or B, 0 included (gemmi stores B as U)
            if not (np.isfinite(site.u_iso) and site.u_iso >= 0):
                raise EdorientError(f"CIF {p}: site {site.label} has a negative or non-numeric U/B; fix it")
            b = 8.0 * np.pi**2 * site.u_iso
        else:
            b = DEFAULT_B_ISO
            defaulted.append(site.label)
        occ = site.occ if np.isfinite(site.occ) else 1.0
        sites.append((symbol, xyz, occ, b))
    notes = ()
    if defaulted:
        notes = (f"no U or B in the CIF for site(s) {', '.join(defaulted)}: B = {DEFAULT_B_ISO} Å² assumed",)
        log.warning("CIF %s: %s", p, notes[0])
    name = st.name or p.stem
    cell6 = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    other = _other_origin(block, sg)
    if other is not None:  # the symbol alone, and the two origin choices give different structures
        ours, theirs = _expand(name, cell6, sg, sites), _expand(name, cell6, other, sites)
        if len(ours.symbols) != len(theirs.symbols) or not np.isclose(_shortest(ours), _shortest(theirs), atol=0.01):
            note = (f"space group {sg.hm} has two origin choices and the CIF gives no symmetry operations: read in "
                    f"origin choice {sg.ext} ({_describe(ours)}); in origin choice {other.ext} it would be "
                    f"{_describe(theirs)}. If its coordinates are in origin choice {other.ext}, write "
                    f"'{other.hm} :{other.ext}' in _symmetry_space_group_name_H-M")
            notes = notes + (note,)
            log.warning("CIF %s: %s", p, note)
    return _expand(name, cell6, sg, sites, notes)


_SYMOP_TAGS = ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz", "_space_group_symop.operation_xyz")
_HALL_TAGS = ("_space_group_name_Hall", "_symmetry_space_group_name_Hall", "_space_group.name_Hall")
_CODE_TAGS = ("_space_group_IT_coordinate_system_code", "_space_group.IT_coordinate_system_code")


def _stated_setting(block: "gemmi.cif.Block", sg: "gemmi.SpaceGroup") -> "gemmi.SpaceGroup":
    """``sg`` in the setting the CIF states other than by its symmetry operations (which gemmi
    reads first) or its H-M symbol: a Hall symbol, or the IT coordinate-system code '1' / '2' of a
    group with two origin choices (gemmi reads a bare 'F d -3 m' in choice 2 whatever they say)."""
    if any(block.find_values(t) for t in _SYMOP_TAGS):
        return sg
    for tag in _HALL_TAGS:
        value = block.find_value(tag)
        if value is not None and gemmi.cif.as_string(value).strip() not in ("", "?", "."):
            try:
                found = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(gemmi.cif.as_string(value)))
            except (RuntimeError, ValueError):
                found = None
            if found is not None:
                return found
    for tag in _CODE_TAGS:
        value = block.find_value(tag)
        code = None if value is None else gemmi.cif.as_string(value).strip()
        if code in ("1", "2") and sg.ext in ("1", "2") and code != sg.ext:
            other = gemmi.find_spacegroup_by_name(f"{sg.hm}:{code}")
            if other is not None:
                return other
    return sg


def _other_origin(block: "gemmi.cif.Block", sg: "gemmi.SpaceGroup") -> "gemmi.SpaceGroup | None":
    """The space group's other origin choice where the CIF names the group by its symbol only, with
    no ':1'/':2' and no symmetry operations, and the group has two (gemmi reads such a symbol in
    origin choice 2: a CIF written in choice 1 gets the wrong structure); None otherwise."""
    if sg.ext not in ("1", "2"):
        return None
    for tag in _SYMOP_TAGS + _HALL_TAGS + _CODE_TAGS:  # (the setting stated: :func:`_stated_setting` read it)
        if block.find_values(tag) or block.find_value(tag) is not None:
            return None
    for tag in ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M", "_space_group.name_H-M_alt"):
        value = block.find_value(tag)
        if value is not None and ":" in gemmi.cif.as_string(value):
            return None
    return gemmi.find_spacegroup_by_name(f"{sg.hm}:{'1' if sg.ext == '2' else '2'}")


def _shortest(crystal: Crystal) -> float:
    """The shortest distance between two atoms of the crystal, in Å (periodic images included)."""
    A = direct_matrix(*crystal.cell)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    f = np.asarray(crystal.frac, dtype=float)
    best = float("inf")
    for p in f:  # (one atom at a time: memory n x 27, not n^2 x 27, for cells of thousands of atoms)
        r = np.linalg.norm((f[:, None, :] - p + shifts[None]) @ A.T, axis=-1)
        r = r[r > 1e-6]  # (an atom and itself)
        if r.size:
            best = min(best, float(r.min()))
    return best


def _describe(crystal: Crystal) -> str:
    return f"{len(crystal.symbols)} atoms in the cell, shortest distance {_shortest(crystal):.2f} Å"


def _missing_cell_lengths(block: "gemmi.cif.Block") -> list[str]:
    """The tags of _cell_length_a/b/c that the CIF lacks or gives as no positive number."""
    missing = []
    for tag in ("_cell_length_a", "_cell_length_b", "_cell_length_c"):
        value = block.find_value(tag)
        number = gemmi.cif.as_number(value) if value is not None else float("nan")
        if not (np.isfinite(number) and number > 0):
            missing.append(tag)
    return missing


def _displacements_given(block: "gemmi.cif.Block") -> dict[str, bool]:
    """Site label -> whether the CIF gives an isotropic U or B for it (``?`` and ``.`` do not)."""
    table = block.find("_atom_site_", ["label", "?U_iso_or_equiv", "?B_iso_or_equiv"])
    out = {}
    for row in table:
        vals = [row[i] for i in (1, 2) if row.has(i)]
        out[gemmi.cif.as_string(row[0])] = any(v not in ("?", ".") for v in vals)
    return out


@functools.lru_cache(maxsize=1)
def _anatase_shared() -> Crystal:
    return anatase()


def get_crystal(name_or_path: str | Path) -> Crystal:
    """A built-in crystal by name (``"anatase"``) or a crystal from a CIF path."""
    key = str(name_or_path)
    if key.lower() == "anatase":
        return _anatase_shared()  # one instance, as a CIF's: caches keyed by the crystal hit
    if key.lower().endswith(".cif") or Path(key).exists():
        try:
            st = Path(key).stat()
        except OSError:
            return read_cif(key)  # its own one-line error
        return _read_cif_cached(str(Path(key).resolve()), st.st_mtime_ns, st.st_size)
    raise EdorientError(
        f"unknown crystal {key!r}: give one of {', '.join(BUILTIN)} or the path to a .cif file"
    )


def centring_lattice(crystal: Crystal) -> Crystal:
    """The crystal's lattice: one atom of its heaviest element on each centring point of its
    space group. Its reflections are every one the centring allows, so also those the structure
    forbids (glide planes, screw axes), where double diffraction puts intensity in a real
    pattern; ``benchmarks/bench_dynamical.py`` draws them so.

    >>> lat = centring_lattice(anatase())  # I4_1/amd: body-centred
    >>> lat.frac.tolist(), lat.symbols
    ([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], ('Ti', 'Ti'))
    """
    import dataclasses

    cen = np.array(gemmi.SpaceGroup(crystal.space_group).operations().cen_ops, dtype=float) / 24.0
    z = int(np.argmax(crystal.numbers))
    n = len(cen)
    return dataclasses.replace(crystal, name=f"{crystal.name} lattice", symbols=(crystal.symbols[z],) * n,
                               numbers=np.full(n, crystal.numbers[z]), frac=cen % 1.0, occupancy=np.ones(n),
                               b_iso=np.full(n, crystal.b_iso[z]), notes=())


def crystal_digest(name_or_path: str | Path) -> str | None:
    """SHA-256 of a CIF's bytes (None for a built-in crystal): what a resumable output records
    beside the path, so that a CIF edited in place is not taken for the one its results came from."""
    key = str(name_or_path)
    if key.lower() in BUILTIN:
        return None
    import hashlib

    try:
        return hashlib.sha256(Path(key).read_bytes()).hexdigest()
    except OSError as exc:
        raise EdorientError(f"cannot read the crystal file {key} ({exc.strerror or exc}); give an existing .cif path") from None


@functools.lru_cache(maxsize=32)
def _read_cif_cached(path: str, mtime_ns: int, size: int) -> Crystal:
    """:func:`read_cif` once per file version (the symmetry closure alone takes ~0.08 s, a
    tenth of a predict call on a real pattern); a changed file (time or size) is read again.
    A :class:`Crystal` is immutable, so sharing it is safe."""
    return read_cif(path)


def _expand(name, cell, sg: gemmi.SpaceGroup, sites, notes: tuple[str, ...] = ()) -> Crystal:
    """Apply every operation of ``sg`` to each site; merge copies closer than 0.01 Å."""
    A = direct_matrix(*cell)
    ops = list(sg.operations())
    rot = np.array([np.array(op.rot, dtype=float) / gemmi.Op.DEN for op in ops])
    tra = np.array([np.array(op.tran, dtype=float) / gemmi.Op.DEN for op in ops])
    symbols, numbers, frac, occ, bis = [], [], [], [], []
    for symbol, xyz, o, b in sites:
        z = atomic_number(symbol)
        pos = (rot @ np.asarray(xyz, dtype=float) + tra) % 1.0
        kept: list[np.ndarray] = []
        for p in pos:
            if any(_frac_distance(A, p, q) < 0.01 for q in kept):
                continue
            kept.append(p)
        for p in kept:
            symbols.append(element_symbol(z))
            numbers.append(z)
            frac.append(np.where(np.isclose(p, 1.0), 0.0, p))
            occ.append(o)
            bis.append(b)
    laue = LaueGroup.from_operations(rot, A)
    return Crystal(
        name=name,
        cell=tuple(float(x) for x in cell),
        symbols=tuple(symbols),
        numbers=np.array(numbers, dtype=int),
        frac=np.array(frac, dtype=float),
        occupancy=np.array(occ, dtype=float),
        b_iso=np.array(bis, dtype=float),
        space_group=sg.xhm(),
        laue=laue,
        notes=tuple(notes),
    )


def _space_group(st: "gemmi.SmallStructure") -> "gemmi.SpaceGroup | None":
    """The structure's space group from its symmetry operations, H-M symbol or number."""
    if getattr(st, "spacegroup", None) is not None:
        return st.spacegroup
    try:  # gemmi >= 0.7: symops first, then the H-M symbol, then the number
        st.determine_and_set_spacegroup("SHn")
        return st.spacegroup
    except Exception:
        pass
    for text in (getattr(st, "spacegroup_hm", ""),):
        if text:
            found = gemmi.find_spacegroup_by_name(text)
            if found is not None:
                return found
    return None


def _frac_distance(A: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    d = p - q
    d -= np.round(d)
    return float(np.linalg.norm(A @ d))

