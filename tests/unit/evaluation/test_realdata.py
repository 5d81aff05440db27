"""The real-case table: every column form a case table may hold (edorient.evaluation.realdata)."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.evaluation.realdata import read_cases, zone_indices

HEADER = "# name\timage\tcif\tzone\tcalibration\tkV\tcentre\n"


def test_reads_the_development_table_form(tmp_path):
    t = tmp_path / "cases.tsv"
    t.write_text(HEADER + "a\timages/a.npy\tcif/Al.cif\t0 0 1\t0.01901\t200\t43.5 43.5\n"
                 "\n"
                 "b\timages/b.png\tcif/CuNi.cif\t1 1 0\t0.00979\t200?\t208.5 152.0\n")
    a, b = read_cases(t)
    assert a.name == "a" and a.image == tmp_path / "images" / "a.npy" and a.cif == tmp_path / "cif" / "Al.cif"
    assert a.zone == (0, 0, 1) and a.calibration == pytest.approx(0.01901) and a.kv == 200.0
    assert a.centre == (43.5, 43.5)
    assert b.kv == 200.0 and b.centre == (208.5, 152.0)  # "200?": uncertain, taken as given


def test_unknown_voltage_and_centre_and_missing_columns(tmp_path):
    t = tmp_path / "cases.tsv"
    t.write_text(HEADER + "c\tc.tif\tx.cif\t1 0 0\t0.02\t?\t\n"
                 "d\td.tif\tx.cif\t1 1 1\t0.02\n")
    c, d = read_cases(t)
    assert c.kv is None and c.centre is None
    assert d.kv is None and d.centre is None and d.zone == (1, 1, 1)


def test_miller_bravais_zone_is_the_same_direction():
    # [2 -1 -1 0] is a1 (three-index [1 0 0], the indices' common factor 3 divided out); [0 0 0 1]
    # is c; [1 0 -1 0] is [2 1 0]
    assert zone_indices("2 -1 -1 0") == (1, 0, 0)
    assert zone_indices("0 0 0 1") == (0, 0, 1)
    assert zone_indices("1 0 -1 0") == (2, 1, 0)
    # the three-index [2 1 0] of a hexagonal cell is perpendicular to c and 30° from a1
    a1, a2 = np.array([1.0, 0.0]), np.array([-0.5, np.sqrt(3) / 2])
    v = 2 * a1 + 1 * a2
    assert np.degrees(np.arctan2(v[1], v[0])) == pytest.approx(30.0)


def test_compact_zone_notation():
    assert zone_indices("110") == (1, 1, 0)
    assert zone_indices("[1-12]") == (1, -1, 2)
    assert zone_indices("2-1-10") == (1, 0, 0)  # Miller-Bravais, compact
    assert zone_indices("[1, 1, 2]") == (1, 1, 2)


@pytest.mark.parametrize("zone", ["1 1", "0 0 0", "1 1 1 1", "a b c", "1 0 0 0 1", "12", "000", "11211"])
def test_bad_zone_is_refused_with_its_line(tmp_path, zone):
    t = tmp_path / "cases.tsv"
    t.write_text(HEADER + f"e\te.tif\tx.cif\t{zone}\t0.02\t200\t\n")
    with pytest.raises(EdorientError, match=r"cases.tsv:2"):
        read_cases(t)


@pytest.mark.parametrize("line", ["f\tf.tif\tx.cif\t0 0 1\t-0.02", "f\tf.tif\tx.cif\t0 0 1\tnan",
                                  "f\tf.tif\tx.cif\t0 0 1\t0.02\t200\t1 2 3", "f\tf.tif\tx.cif\t0 0 1"])
def test_bad_numbers_are_refused_with_their_line(tmp_path, line):
    t = tmp_path / "cases.tsv"
    t.write_text(HEADER + line + "\n")
    with pytest.raises(EdorientError, match=r"cases.tsv:2"):
        read_cases(t)


def test_a_missing_table_names_the_path(tmp_path):
    with pytest.raises(EdorientError, match="no case table"):
        read_cases(tmp_path / "cases.tsv")
