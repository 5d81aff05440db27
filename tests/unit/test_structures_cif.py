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
