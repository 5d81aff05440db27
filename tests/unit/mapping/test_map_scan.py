"""Reading scans: rosettasciio 4D files, .npy/.zarr, folders and globs; calibrations; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping.scan import calibration_from_axis, open_scan


def test_calibration_units():
    assert calibration_from_axis({"units": "1/nm", "scale": 0.2}) == pytest.approx(0.02)
    assert calibration_from_axis({"units": "1/Å", "scale": 0.02}) == pytest.approx(0.02)
    assert calibration_from_axis({"units": "nm^-1", "scale": -0.2}) == pytest.approx(0.02)
    assert calibration_from_axis({"units": "px", "scale": 1.0}) is None
    assert calibration_from_axis({"units": "<undefined>", "scale": 1.0}) is None
    # 1 mrad at 200 kV: 1e-3 / 0.0250793 Å = 0.03987 1/Å
    assert calibration_from_axis({"units": "mrad", "scale": 1.0}, 200.0) == pytest.approx(0.039874, rel=1e-4)
    with pytest.raises(EdorientError, match="beam energy"):
        calibration_from_axis({"units": "mrad", "scale": 1.0})
    with pytest.raises(EdorientError, match="--calibration"):
        calibration_from_axis({"units": "eV", "scale": 1.0})


def test_hspy_lazy_with_calibration(tiny_scan):
    path, _ = tiny_scan
    src = open_scan(path)
    assert src.kind == "rsciio" and src.shape == (4, 4) and src.pattern_shape == (128, 128)
    assert src.calibration == pytest.approx(0.02) and "axes" in src.calibration_source
    from rsciio import hspy

    full = np.asarray(hspy.file_reader(str(path))[0]["data"], dtype=np.float32).reshape(16, 128, 128)
    np.testing.assert_array_equal(src.read(3, 11), full[3:11])  # across scan rows
    assert open_scan(path, calibration=0.03).calibration == 0.03  # --calibration overrides


def test_hspy_implausible_calibration(tiny_scan):
    with pytest.raises(EdorientError, match="implausible"):
        open_scan(tiny_scan[0], calibration=2.0)


def test_npy_and_zarr(tmp_path):
    import zarr

    a = np.random.default_rng(0).poisson(2, (2, 3, 32, 32)).astype(np.uint16)
    np.save(tmp_path / "s.npy", a)
    with pytest.raises(EdorientError, match="--calibration"):
        open_scan(tmp_path / "s.npy")
    src = open_scan(tmp_path / "s.npy", calibration=0.02)
    assert src.shape == (2, 3)
    np.testing.assert_array_equal(src.read(1, 5), a.reshape(6, 32, 32)[1:5])
    np.save(tmp_path / "stack.npy", a.reshape(6, 32, 32))
    assert open_scan(tmp_path / "stack.npy", calibration=0.02).shape == (6, 1)
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=a.shape, dtype=a.dtype, chunks=(1, 3, 32, 32))
    z[...] = a
    src = open_scan(tmp_path / "s.zarr", calibration=0.02)
    np.testing.assert_array_equal(src.read(2, 6), a.reshape(6, 32, 32)[2:6])


@pytest.mark.parametrize("shape, match", [((32, 32), "edorient predict"), ((2, 2, 2, 8, 8), "dimensions"),
                                          ((2, 2, 8, 8), "too small")])
def test_wrong_dims(tmp_path, shape, match):
    np.save(tmp_path / "bad.npy", np.ones(shape, np.float32))
    with pytest.raises(EdorientError, match=match):
        open_scan(tmp_path / "bad.npy", calibration=0.02)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(EdorientError, match="not found"):
        open_scan(tmp_path / "nope.hspy")
    (tmp_path / "x.foo").write_text("x")
    with pytest.raises(EdorientError, match="unsupported"):
        open_scan(tmp_path / "x.foo")
    with pytest.raises(EdorientError, match="no pattern files"):
        open_scan(str(tmp_path / "*.png"), calibration=0.02)


def test_folder_and_glob(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray((np.arange(1600).reshape(40, 40) % (50 + i)).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    src = open_scan(tmp_path, calibration=0.02)
    assert src.kind == "files" and src.shape == (3, 1) and [f[-6:] for f in src.files] == ["p0.png", "p1.png", "p2.png"]
    assert open_scan(str(tmp_path / "p[12].png"), calibration=0.02).shape == (2, 1)
    with pytest.raises(EdorientError, match="--calibration"):
        open_scan(tmp_path)


def test_reader_without_its_optional_dependency(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "rsciio.blockfile" or name.startswith("rsciio.blockfile."):
            raise ModuleNotFoundError("No module named 'skimage'", name="skimage")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "rsciio.blockfile", raising=False)
    monkeypatch.setattr(importlib, "import_module", lambda n: fake(n))
    (tmp_path / "s.blo").write_bytes(b"\0" * 64)
    with pytest.raises(EdorientError, match="pip install scikit-image"):
        open_scan(tmp_path / "s.blo")


def test_the_scan_files_beam_energy_sets_the_models_voltage(tiny_scan, tmp_path):
    from rsciio import hspy

    from edorient.mapping.index import Indexer, MapSettings
    from edorient.mapping.simulate import write_hspy

    path, _ = tiny_scan
    assert open_scan(path).voltage_kv == pytest.approx(200.0)  # simulated at 200 kV, and says so
    data = np.asarray(hspy.file_reader(str(path))[0]["data"])
    write_hspy(tmp_path / "at300.hspy", data, 0.02, voltage_kv=300.0)
    assert open_scan(tmp_path / "at300.hspy").voltage_kv == pytest.approx(300.0)
    write_hspy(tmp_path / "unstated.hspy", data, 0.02)
    assert open_scan(tmp_path / "unstated.hspy").voltage_kv is None
    assert Indexer(MapSettings(voltage_kv=300.0, refine=False)).sim.config.voltage_kv == 300.0
    assert Indexer(MapSettings(refine=False)).sim.config.voltage_kv == 200.0
    with pytest.raises(EdorientError, match="--kv"):
        MapSettings(voltage_kv=0.0)
