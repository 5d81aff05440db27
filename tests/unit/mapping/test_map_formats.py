"""4D-STEM files other than .hspy: a Quantum Detectors Merlin .mib (with its .hdr) and an NCEM
.emd, written here from a simulated scan, read by ``edorient map`` as the same patterns."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping import ComputeSettings, MapSettings, default_runs, run_map
from edorient.mapping.scan import open_scan
from edorient.mapping.simulate import ScanSimConfig, write_scan


def write_mib(path, counts: np.ndarray, header_file: bool = True) -> None:
    """A single-chip Merlin acquisition of ``counts`` (rows, cols, H, W) uint16: per frame a
    384-byte header (comma-separated: "MQ1", frame number, header size, chips, width, height,
    data type, chip layout, ..., timestamp, exposure in ns, bit depth, padding) and the frame's
    pixels big-endian; the .hdr beside it gives the frames per line (Merlin's "Frames per
    Trigger") and in all. rosettasciio flips each frame upside down when reading (its detector
    convention), so the frames are written flipped: the file reads back as ``counts``."""
    rows, cols, H, W = counts.shape
    with open(path, "wb") as fh:
        for i, frame in enumerate(counts.reshape(-1, H, W)):
            fields = ["MQ1", f"{i + 1:06d}", "00384", "01", f"{W:04d}", f"{H:04d}", "U16", "   1x1", "01",
                      "2026-12-05 00:00:00.000000", "0.001000", "0", "0", "0", "1.000000E+1", "5.110000E+2",
                      "2026-12-05T00:00:00.000000000Z", "1000000ns", "12", ""]
            head = ",".join(fields).encode()
            fh.write(head + b" " * (384 - len(head)))
            fh.write(np.ascontiguousarray(frame[::-1]).astype(">u2").tobytes())
    if header_file:
        path.with_suffix(".hdr").write_text(
            "HDR,\t\nTime and Date Stamp (day, mnth, yr, hr, min, s):\t05/12/2026 00:00:00\n"
            "Chip ID:\tW0_K0,-,-,-\nAssembly Size (NX1, 2X2):\t   1x1\n"
            f"Frames in Acquisition (Number):\t{rows * cols}\nFrames per Trigger (Number):\t{cols}\nEnd\t\n")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A 3 x 4 simulated scan (.hspy) and its counts."""
    d = tmp_path_factory.mktemp("formats")
    path, _ = write_scan(d / "scan.hspy", ScanSimConfig(probes=(3, 4), n_grains=2, seed=5, dose=20000.0))
    src = open_scan(path)
    return path, src, src.read(0, src.n_patterns).reshape(3, 4, *src.pattern_shape)


def test_a_merlin_mib_reads_as_the_same_scan_and_maps_the_same(scan, tmp_path):
    path, src, counts = scan
    mib = tmp_path / "scan.mib"
    write_mib(mib, counts.astype(np.uint16))
    with pytest.raises(EdorientError, match="--calibration"):  # a .mib holds no calibration
        open_scan(mib)
    m = open_scan(mib, calibration=src.calibration)
    assert m.shape == (3, 4) and m.pattern_shape == src.pattern_shape
    np.testing.assert_array_equal(m.read(0, 12), src.read(0, 12))
    single, bi = default_runs("anatase")
    settings = MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0, thickness=50.0)
    compute = ComputeSettings(workers=0, progress=False)
    a = run_map(path, tmp_path / "from_hspy", settings, compute, assemble=False)
    b = run_map(mib, tmp_path / "from_mib", settings, compute, assemble=False, calibration=src.calibration)
    np.testing.assert_array_equal(a.results["n_grains"], b.results["n_grains"])
    np.testing.assert_allclose(a.results["rotations"], b.results["rotations"], atol=1e-9, equal_nan=True)


def test_a_mib_without_its_hdr_is_a_line_of_probes_until_given_its_shape(scan, tmp_path):
    # without the .hdr (and with equal timestamps) nothing says where a scan line ends:
    # rosettasciio reads a stack of 12 frames, the map one line of 12 probes; --scan-shape 3 4
    # lays them out as stored, row by row, and maps what the .hspy maps
    path, src, counts = scan
    mib = tmp_path / "bare.mib"
    write_mib(mib, counts.astype(np.uint16), header_file=False)
    line = open_scan(mib, calibration=src.calibration)
    assert line.n_patterns == 12 and line.shape == (12, 1)
    np.testing.assert_array_equal(line.read(0, 12), src.read(0, 12))
    grid = open_scan(mib, calibration=src.calibration, scan_shape=(3, 4))
    assert grid.shape == (3, 4)
    np.testing.assert_array_equal(grid.read(5, 11), src.read(5, 11))
    for bad in ((5, 3), (0, 12)):
        with pytest.raises(EdorientError, match="--scan-shape"):
            open_scan(mib, calibration=src.calibration, scan_shape=bad)
    single, bi = default_runs("anatase")
    settings = MapSettings(run_single=single, run_bicrystal=bi, thickness=50.0)  # the neighbour pass reads 2-D
    compute = ComputeSettings(workers=0, progress=False)
    a = run_map(path, tmp_path / "from_hspy", settings, compute, assemble=False)
    b = run_map(mib, tmp_path / "from_mib", settings, compute, assemble=False, calibration=src.calibration,
                scan_shape=(3, 4))
    np.testing.assert_array_equal(a.results["n_grains"], b.results["n_grains"])
    np.testing.assert_allclose(a.results["rotations"], b.results["rotations"], atol=1e-9, equal_nan=True)


def test_a_folder_of_one_file_a_probe_is_a_scan_given_its_shape(scan, tmp_path):
    # a scan saved as one .npy a probe (sorted names): without --scan-shape one row per file,
    # mapped file by file; with it the probes of a 3 x 4 scan, mapped as the .hspy is (2-D
    # neighbourhood, anchors, maps)
    path, src, counts = scan
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(counts.reshape(12, *counts.shape[2:])):
        np.save(folder / f"p{i:03d}.npy", frame.astype(np.float32))
    files = open_scan(folder, calibration=src.calibration)
    assert files.shape == (12, 1) and files.layout == "files"
    grid = open_scan(folder, calibration=src.calibration, scan_shape=(3, 4))
    assert grid.shape == (3, 4) and grid.layout == "grid"
    np.testing.assert_array_equal(grid.read(5, 11), src.read(5, 11))
    single, bi = default_runs("anatase")
    settings = MapSettings(run_single=single, run_bicrystal=bi, thickness=50.0)
    compute = ComputeSettings(workers=0, progress=False)
    a = run_map(path, tmp_path / "from_hspy", settings, compute, assemble=False)
    b = run_map(folder, tmp_path / "from_files", settings, compute, calibration=src.calibration, scan_shape=(3, 4))
    np.testing.assert_array_equal(a.results["n_grains"], b.results["n_grains"])
    np.testing.assert_allclose(a.results["rotations"], b.results["rotations"], atol=1e-9, equal_nan=True)
    assert "support" in b.results and (tmp_path / "from_files" / "maps" / "overview.png").is_file()
    assert "p000.npy" in (tmp_path / "from_files" / "results.csv").read_text()  # each probe's file named
    # the same files listed one by one (an unquoted glob the shell expanded): the same scan
    listed = open_scan(sorted(folder.glob("*.npy")), calibration=src.calibration, scan_shape=(3, 4))
    assert listed.shape == (3, 4) and listed.files == grid.files
    np.testing.assert_array_equal(listed.read(0, 12), grid.read(0, 12))
    with pytest.raises(EdorientError, match="pattern file not found"):
        open_scan([folder / "p000.npy", folder / "nope.npy"], calibration=src.calibration)
    from edorient.cli.main import main

    files = [str(f) for f in sorted(folder.glob("*.npy"))]
    assert main(["-q", "map", *files, "--calibration", str(src.calibration), "--scan-shape", "3", "4", "--grains", "1",
                 "--out", str(tmp_path / "from_list"), "--workers", "0", "--no-progress"]) == 0


def test_a_scan_of_any_layout_is_laid_out_anew(tmp_path):
    # a 4-D .npy, zarr and .hspy stored as 2 x 6 read as 3 x 4 in row-major probe order
    import zarr

    a = np.random.default_rng(0).poisson(5.0, size=(2, 6, 32, 32)).astype(np.uint16)
    np.save(tmp_path / "s.npy", a)
    zarr.save_array(str(tmp_path / "s.zarr"), a)
    flat = a.reshape(12, 32, 32).astype(np.float32)
    for f in ("s.npy", "s.zarr"):
        s = open_scan(tmp_path / f, calibration=0.02, scan_shape=(3, 4))
        assert s.shape == (3, 4)
        np.testing.assert_array_equal(s.read(0, 12), flat)
        np.testing.assert_array_equal(s.read(3, 9), flat[3:9])


def test_an_ncem_emd_reads_as_the_same_scan_with_its_calibration(scan, tmp_path):
    from rsciio.emd import file_writer

    _, src, counts = scan
    cal_nm = src.calibration * 10.0  # the file's axes in 1/nm
    axes = [{"name": n, "units": u, "index_in_array": i, "size": counts.shape[i], "offset": 0.0, "scale": s,
             "navigate": i < 2}
            for i, (n, u, s) in enumerate((("y", "nm", 2.0), ("x", "nm", 2.0), ("ky", "1/nm", cal_nm),
                                           ("kx", "1/nm", cal_nm)))]
    emd = tmp_path / "scan.emd"
    file_writer(str(emd), {"data": counts.astype(np.uint16), "axes": axes, "metadata": {"General": {"title": "scan"}, "Signal": {}},
                 "original_metadata": {}})
    e = open_scan(emd)
    assert e.shape == (3, 4) and e.calibration == pytest.approx(src.calibration, rel=1e-6)
    np.testing.assert_array_equal(e.read(0, 12), src.read(0, 12))


def test_the_cli_takes_a_scan_shape_and_names_a_wrong_one(scan, tmp_path, capsys):
    from edorient.cli.main import main

    _, src, counts = scan
    mib = tmp_path / "bare.mib"
    write_mib(mib, counts.astype(np.uint16), header_file=False)
    rc = main(["-q", "map", str(mib), "--calibration", str(src.calibration), "--scan-shape", "5", "3",
               "--out", str(tmp_path / "m"), "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "--scan-shape 5 3 lays out 15 probes" in err and "holds 12 patterns" in err
