"""read_cif: explicit displacement parameters (0 included) are kept; only missing ones default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.structures import DEFAULT_B_ISO, read_cif

CIF = Path(__file__).resolve().parents[1] / "data" / "anatase.cif"
U_TI, U_O = "0.005066059", "0.007599089"


def _variant(tmp_path, old, new, name="x.cif"):
    text = CIF.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return read_cif(path)


def test_explicit_zero_u_is_zero_not_the_default(tmp_path):
    x = _variant(tmp_path, f"1.0 {U_TI}", "1.0 0")
    ti = np.array(x.symbols) == "Ti"
    assert np.all(x.b_iso[ti] == 0.0)
    np.testing.assert_allclose(x.b_iso[~ti], 0.6, rtol=1e-6)  # B = 8 pi^2 U
    assert x.notes == ()


def test_explicit_zero_b_is_zero(tmp_path):
    x = _variant(tmp_path, "_atom_site_U_iso_or_equiv", "_atom_site_B_iso_or_equiv")
    text = (tmp_path / "x.cif").read_text().replace(f"1.0 {U_TI}", "1.0 0.0")
    (tmp_path / "y.cif").write_text(text)
    y = read_cif(tmp_path / "y.cif")
    ti = np.array(y.symbols) == "Ti"
    assert np.all(y.b_iso[ti] == 0.0) and np.all(y.b_iso[~ti] > 0)
    assert x.notes == () and y.notes == ()


def test_missing_u_gets_the_stated_default(tmp_path):
    x = _variant(tmp_path, f"1.0 {U_TI}", "1.0 ?")
    ti = np.array(x.symbols) == "Ti"
    assert np.all(x.b_iso[ti] == DEFAULT_B_ISO)
    assert len(x.notes) == 1 and "Ti1" in x.notes[0] and "O1" not in x.notes[0]
    assert x.summary()["notes"] == list(x.notes)  # reaches every output that shows the crystal


def test_nan_coordinates_are_refused(tmp_path):
    with pytest.raises(EdorientError, match="O1 has non-numeric fractional coordinates"):
        _variant(tmp_path, "O1 O 0.0 0.0 0.2081", "O1 O nan 0.0 0.2081")


SI = """data_Si
_cell_length_a 5.431
_cell_length_b 5.431
_cell_length_c 5.431
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M '{sg}'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_B_iso_or_equiv
Si1 Si {xyz} 0.5
"""


@pytest.mark.parametrize("xyz, atoms", [("0 0 0", 16), ("0.125 0.125 0.125", 8)])
def test_a_symbol_with_two_origin_choices_and_no_operations_is_flagged(tmp_path, xyz, atoms):
    """'F d -3 m' with neither ':1'/':2' nor symmetry operations is read in origin choice 2 (gemmi);
    diamond Si written in choice 1 (Si at 0,0,0) then has 16 atoms 1.92 Å apart, not 8 at the known
    2.35 Å (a sqrt(3)/4): the note says what each choice gives and how to say which is meant."""
    path = tmp_path / "si.cif"
    path.write_text(SI.format(sg="F d -3 m", xyz=xyz))
    x = read_cif(path)
    assert x.space_group == "F d -3 m:2" and len(x.symbols) == atoms
    (note,) = x.notes
    assert "origin choice 1" in note and "'F d -3 m :1'" in note
    assert "8 atoms in the cell, shortest distance 2.35 Å" in note and "16 atoms" in note
    explicit = tmp_path / "si1.cif"
    explicit.write_text(SI.format(sg="F d -3 m :1", xyz="0 0 0"))
    y = read_cif(explicit)
    assert y.space_group == "F d -3 m:1" and len(y.symbols) == 8 and y.notes == ()
    from edorient.structures import _shortest

    assert _shortest(y) == pytest.approx(5.431 * np.sqrt(3) / 4, abs=1e-6)  # the Si-Si bond, a sqrt(3)/4


@pytest.mark.parametrize("extra", ["_space_group_IT_coordinate_system_code 1",
                                   "_symmetry_space_group_name_Hall 'F 4d 2 3 -1d'"])
def test_an_origin_choice_stated_otherwise_is_read_so(tmp_path, extra):
    """The origin choice stated by the IT coordinate-system code or a Hall symbol (no ':1', no
    operations): gemmi read the bare symbol in choice 2 whatever they said."""
    path = tmp_path / "si.cif"
    path.write_text(SI.format(sg="F d -3 m", xyz="0 0 0").replace("loop_", extra + "\nloop_", 1))
    x = read_cif(path)
    assert x.space_group == "F d -3 m:1" and len(x.symbols) == 8 and x.notes == ()


def test_an_empty_cif_is_named_without_a_cpp_message(tmp_path):
    path = tmp_path / "empty.cif"
    path.write_text("")
    with pytest.raises(EdorientError, match="holds no data block") as err:
        read_cif(path)
    assert "vector" not in str(err.value)


def test_a_cif_of_two_blocks_is_named(tmp_path):
    path = tmp_path / "two.cif"
    path.write_text(SI.format(sg="F d -3 m :1", xyz="0 0 0") + "\n" + SI.format(sg="F d -3 m :1", xyz="0 0 0").replace(
        "data_Si", "data_Si2"))
    with pytest.raises(EdorientError, match="holds 2 data blocks; give a CIF with one"):
        read_cif(path)
