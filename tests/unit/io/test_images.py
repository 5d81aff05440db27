"""Reading patterns: rosettasciio formats with their calibration, colour images, stacks."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from edorient.errors import EdorientError
from edorient.io.images import LUMINANCE, calibration_from_axes, read_image, read_pattern


def _signal(data, units="1/nm", scale=0.19, beam_energy=None):
    """A rosettasciio signal dict (what HyperSpy would hand to a writer)."""
    nav = [{"name": f"n{i}", "size": s, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}
           for i, s in enumerate(data.shape[:-2])]
    sig = [{"name": n, "size": s, "scale": scale, "offset": 0.0, "units": units, "navigate": False}
           for n, s in zip(("ky", "kx"), data.shape[-2:])]
    md = {"General": {"title": "t"}, "Signal": {"signal_type": "electron_diffraction"}}
    if beam_energy is not None:
        md["Acquisition_instrument"] = {"TEM": {"beam_energy": beam_energy}}
    return {"data": data, "axes": nav + sig, "metadata": md, "original_metadata": {}, "attributes": {"_lazy": False},
            "tmp_parameters": {}, "package_info": {"name": "edorient", "version": "0"}, "learning_results": {},
            "models": {}}


def _pattern(shape=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32)


def test_hspy_calibration_in_inverse_nm_and_frames(tmp_path):
    from rsciio.hspy import file_writer

    data = _pattern((3, 32, 32))
    path = tmp_path / "p.hspy"
    file_writer(str(path), _signal(data, "1/nm", 0.1901, beam_energy=300.0), show_progressbar=False)
    p = read_pattern(path, frame=2)
    np.testing.assert_array_equal(p.image, data[2])
    assert p.calibration == pytest.approx(0.01901)  # 1/nm -> 1/Å: divide by 10
    assert p.voltage_kv == 300.0
    assert "1/nm" in p.source_note and "frame 2 of 3" in p.source_note
    with pytest.raises(EdorientError, match="--frame"):
        read_pattern(path)
    with pytest.raises(EdorientError, match="outside the 3 frames"):
        read_pattern(path, frame=3)
    np.testing.assert_array_equal(read_image(path, 0), data[0])


def test_hspy_scan_frame_is_row_major(tmp_path):
    from rsciio.hspy import file_writer

    data = _pattern((2, 3, 20, 20), seed=1)
    path = tmp_path / "scan.hspy"
    file_writer(str(path), _signal(data, "1/Å", 0.02), show_progressbar=False)
    p = read_pattern(path, frame=4)
    np.testing.assert_array_equal(p.image, data[1, 1])
    assert p.calibration == pytest.approx(0.02)
    assert "scan of 2 x 3" in str(pytest.raises(EdorientError, read_pattern, path).value)


def test_emd_real_space_unit_is_ignored_with_a_note(tmp_path):
    from rsciio.emd import file_writer

    data = _pattern((24, 24), seed=2)
    path = tmp_path / "p.emd"
    file_writer(str(path), _signal(data, "nm", 0.05))
    p = read_pattern(path)
    np.testing.assert_array_equal(p.image, data)
    assert p.calibration is None and "real-space" in p.source_note


def test_emd_reciprocal_unit(tmp_path):
    from rsciio.emd import file_writer

    path = tmp_path / "q.emd"
    file_writer(str(path), _signal(_pattern((24, 24), seed=3), "1/nm", 0.25))
    assert read_pattern(path).calibration == pytest.approx(0.025)


@pytest.mark.parametrize("axes, voltage, expected, note", [
    ([{"scale": 0.2, "units": "1/nm"}] * 2, None, 0.02, "1/nm"),
    ([{"scale": 0.2, "units": "nm^-1"}] * 2, None, 0.02, ""),
    ([{"scale": 0.02, "units": "1 / Å"}] * 2, None, 0.02, ""),
    ([{"scale": 0.02, "units": "A^-1"}] * 2, None, 0.02, ""),
    ([{"scale": 0.02, "units": "1/angstrom"}] * 2, None, 0.02, ""),
    ([{"scale": 2e8, "units": "1/m"}] * 2, None, 0.02, ""),
    ([{"scale": 0.5, "units": "mrad"}] * 2, 200.0, 0.5e-3 / 0.0250793403, "200 kV"),
    ([{"scale": 0.5, "units": "mrad"}] * 2, None, None, "no beam"),
    ([{"scale": 0.05, "units": "nm"}] * 2, None, None, "real-space"),
    ([{"scale": 0.0046, "units": "cm"}] * 2, None, None, "real-space"),  # a blockfile's detector axes
    ([{"scale": 1.0, "units": "<undefined>"}] * 2, None, None, "without units"),
    ([{"scale": 1.0, "units": "furlong"}] * 2, None, None, "not understood"),
    ([{"scale": 0.02, "units": "1/Å"}, {"scale": 0.022, "units": "1/Å"}], None, 0.021, "differ"),
])
def test_calibration_from_axes(axes, voltage, expected, note):
    cal, text = calibration_from_axes(axes, voltage)
    if expected is None:
        assert cal is None
    else:
        assert cal == pytest.approx(expected, rel=1e-6)
    assert note in text


def test_rgb_png_to_luminance(tmp_path):
    rgb = np.zeros((20, 24, 3), dtype=np.uint8)
    rgb[5:10, 5:10] = (200, 100, 50)
    rgb[12:, :, 1] = 255
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    p = read_pattern(tmp_path / "c.png")
    np.testing.assert_allclose(p.image, rgb.astype(float) @ LUMINANCE, atol=1e-3)
    assert "luminance" in p.source_note and p.calibration is None
    rgba = np.dstack([rgb, np.full((20, 24), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), rgb.astype(float) @ LUMINANCE, atol=1e-3)
    Image.fromarray(rgb, "RGB").convert("P").save(tmp_path / "p.png")  # a palette image
    assert read_image(tmp_path / "p.png").shape == (20, 24)


def test_rgb16_png_and_tiff(tmp_path):
    rng = np.random.default_rng(4)
    a = (rng.random((20, 24, 3)) * 65535).astype(">u2")

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.tobytes() for row in a)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 24, 20, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (tmp_path / "c16.png").write_bytes(png)
    p = read_pattern(tmp_path / "c16.png")
    np.testing.assert_allclose(p.image, (a >> 8).astype(float) @ LUMINANCE, atol=1.0)  # 8 bits per channel
    assert "16-bit colour PNG" in p.source_note
    tifffile.imwrite(tmp_path / "c16.tif", a.astype(np.uint16), photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "c16.tif"), a.astype(float) @ LUMINANCE, rtol=1e-5)


def test_gray_formats_unchanged(tmp_path):
    img = _pattern((30, 30), seed=5) * 1000
    np.save(tmp_path / "g.npy", img)
    tifffile.imwrite(tmp_path / "g.tif", img)
    for f in ("g.npy", "g.tif"):
        p = read_pattern(tmp_path / f)
        np.testing.assert_array_equal(p.image, img)
        assert p.calibration is None and p.source_note.startswith(f.split(".")[1])


def test_frame_on_a_single_pattern_is_refused(tmp_path):
    np.save(tmp_path / "g.npy", _pattern())
    assert read_pattern(tmp_path / "g.npy", frame=0).image.shape == (32, 32)
    with pytest.raises(EdorientError, match="single pattern"):
        read_pattern(tmp_path / "g.npy", frame=3)


def test_unreadable_rsciio_file_is_one_line(tmp_path):
    for ext in ("dm3", "hspy", "emd", "mib"):
        path = tmp_path / f"bad.{ext}"
        path.write_bytes(b"not a microscope file" * 10)
        with pytest.raises(EdorientError) as info:
            read_pattern(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_blockfile_reader_dependency_or_read(tmp_path):
    """.blo needs scikit-image in rosettasciio: without it, a one-line error names the package."""
    path = tmp_path / "x.blo"
    path.write_bytes(b"\x00" * 600)
    with pytest.raises(EdorientError) as info:
        read_pattern(path)
    assert "\n" not in str(info.value)


def _write_mib(path, frames):
    """A Merlin .mib file (single-chip headers of 384 bytes, 16-bit big-endian frames), as the
    detector writes it; no .hdr beside it."""
    out = b""
    for i, f in enumerate(frames):
        fields = ["MQ1", f"{i + 1:06d}", "00384", "01", f"{f.shape[1]:04d}", f"{f.shape[0]:04d}", "U16", "   1x1", "01",
                  "2020-05-18 16:51:49.971626", "0.001000", "0", "0", "0", "2020-05-18T14:51:49.971626Z", "1000000ns",
                  "0", ""]
        head = ",".join(fields).encode()
        out += head + b" " * (384 - len(head)) + f.astype(">u2").tobytes()
    path.write_bytes(out)


def test_mib_frames(tmp_path):
    frames = [(np.random.default_rng(i).random((32, 32)) * 1000).astype(np.uint16) for i in range(3)]
    _write_mib(tmp_path / "s.mib", frames)
    p = read_pattern(tmp_path / "s.mib", frame=1)
    np.testing.assert_array_equal(p.image, frames[1][::-1])  # rosettasciio's row order for Merlin frames
    assert p.calibration is None and "frame 1 of 3" in p.source_note
    with pytest.raises(EdorientError, match="--frame"):
        read_pattern(tmp_path / "s.mib")


def test_resampling_to_the_model_is_bilinear_with_zero_outside():
    # the separable resampling gives what scipy's map_coordinates (order 1, mode "constant") gives
    # on the working grid: the definition it replaced, on detectors of any size, beams near or
    # beyond an edge, and shrinking (low-passed first)
    from scipy import ndimage

    from edorient.io.images import model_axes, resample_to_model

    rng = np.random.default_rng(11)
    for _ in range(40):
        H, W = (int(v) for v in rng.integers(24, 260, 2))
        centre = (rng.uniform(-4, H + 4), rng.uniform(-4, W + 4))
        cal_in = rng.uniform(0.006, 0.05)
        img = (rng.random((H, W)) * 1000).astype(np.float32)
        rows, cols = model_axes(centre, cal_in, 128, 0.0234)
        src = img.astype(np.float64)
        if 0.0234 / cal_in > 1.5:
            src = ndimage.gaussian_filter(src, 0.5 * 0.0234 / cal_in)
        want = ndimage.map_coordinates(src, np.stack(np.broadcast_arrays(rows[:, None], cols[None, :])), order=1,
                                       cval=0.0).astype(np.float32)
        np.testing.assert_allclose(resample_to_model(img, centre, cal_in, 128, 0.0234), want, rtol=1e-6, atol=1e-6)


def test_a_blockfile_is_read_with_its_frames(tmp_path):
    # NanoMegas blockfiles (.blo, the usual SPED format) open out of the box: rosettasciio's
    # reader imports scikit-image, a dependency of edorient for that reason
    from rsciio import blockfile

    from edorient.mapping.scan import open_scan

    rng = np.random.default_rng(0)
    data = rng.integers(0, 200, size=(2, 3, 32, 32)).astype(np.uint8)
    data[..., 16, 16] = 255  # a direct beam
    k = 0.02  # 1/Å per pixel, written as the signal axes' scale in 1/nm
    axes = [{"name": n, "size": s, "scale": sc, "offset": 0.0, "units": u, "navigate": nav}
            for n, s, sc, u, nav in (("y", 2, 1.0, "nm", True), ("x", 3, 1.0, "nm", True),
                                     ("ky", 32, 10 * k, "1/nm", False), ("kx", 32, 10 * k, "1/nm", False))]
    signal = {"data": data, "axes": axes, "metadata": {"General": {"title": "t"}}, "original_metadata": {},
              "attributes": {"_lazy": False}, "tmp_parameters": {}}
    path = tmp_path / "scan.blo"
    blockfile.file_writer(str(path), signal, show_progressbar=False)
    p = read_pattern(path, frame=4)
    assert p.image.shape == (32, 32) and p.image[16, 16] == p.image.max()
    np.testing.assert_array_equal(p.image, data[1, 1].astype(np.float32))
    src = open_scan(path, calibration=0.02)
    assert src.shape == (2, 3) and src.pattern_shape == (32, 32)


def test_a_blank_image_is_named_and_frame_mentioned_only_where_one_was_given(tmp_path):
    from edorient.errors import EdorientError
    from edorient.io.images import read_pattern

    np.save(tmp_path / "blank.npy", np.zeros((32, 32), np.float32))
    with pytest.raises(EdorientError) as e:
        read_pattern(tmp_path / "blank.npy")
    assert "has no pattern: every pixel is 0; check the file" in str(e.value) and "--frame" not in str(e.value)
    np.save(tmp_path / "stack.npy", np.zeros((2, 32, 32), np.float32))
    with pytest.raises(EdorientError, match="check the file or --frame"):
        read_pattern(tmp_path / "stack.npy", frame=1)


def test_a_boolean_npy_is_pointed_at_mask(tmp_path):
    """A boolean array is a mask, not a pattern: the hint names --mask (it named np.abs of a
    complex array)."""
    from edorient.errors import EdorientError
    from edorient.io.images import read_pattern

    path = tmp_path / "m.npy"
    np.save(path, np.zeros((32, 32), bool))
    with pytest.raises(EdorientError, match="give it as --mask"):
        read_pattern(path)
