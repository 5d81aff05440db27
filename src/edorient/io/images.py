"""Reading diffraction patterns from microscope files, with their calibration where the file has one.

Formats (chosen by extension; one reader per format, the contract :data:`READERS`):

- PNG/JPEG/BMP (Pillow), TIFF (tifffile), MRC (mrcfile), NumPy ``.npy``: the pixels only. A
  colour image (RGB, RGBA, a palette; 8 or 16 bits per channel) becomes gray by its luminance
  ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, as Pillow's ``convert("L")``). Pillow reads a
  16-bit-per-channel PNG at 8 bits per channel; a 16-bit TIFF keeps its depth.
- Through rosettasciio (:mod:`rsciio`): Gatan DigitalMicrograph ``.dm3``/``.dm4``, EMD
  (``.emd``, NCEM and Velox), HyperSpy ``.hspy``/``.zspy``, Quantum Detectors Merlin ``.mib``,
  NanoMegas blockfile ``.blo``. Their two signal axes carry a scale and a unit; a reciprocal
  unit (``1/nm``, ``1/Å``, ``nm^-1`` ...) becomes the calibration in Å⁻¹ per pixel (``g = 1/d``,
  no 2π: 1 nm⁻¹ = 0.1 Å⁻¹), an angle (``mrad``) too when the file gives the beam energy
  (``g = θ/λ``); a real-space unit (nm, Å, cm of a blockfile's detector) on a diffraction
  pattern is not a calibration and is ignored, with a note (:func:`calibration_from_axes`).

:func:`read_pattern` returns a :class:`Pattern` (the image, the calibration or ``None``, the
beam energy when the file states it, and a note on where they came from); :func:`read_image`
returns the image alone. Every image is a 2-D float32 array; a stack (or a 4-D scan) needs a
frame index (row-major over the scan positions). Bad files raise
:class:`edorient.errors.EdorientError` naming the file and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edorient.errors import EdorientError


@dataclass(frozen=True, eq=False)
class Pattern:
    """A diffraction pattern read from a file.

    Attributes
    ----------
    image
        2-D float32 intensities (rows, cols) in the file's pixels.
    calibration
        Å⁻¹ per pixel from the file's metadata, or ``None`` when the file has none (or only a
        real-space or unknown unit).
    source_note
        One line: the format, the frame, and where the calibration came from (or why none).
    voltage_kv
        Accelerating voltage (kV) stated in the file, or ``None``.
    bad
        (rows, cols) True at the file's NaN or infinite pixels (the usual mark of a gap or a
        dead pixel), which ``image`` holds as 0; ``None`` where every pixel is finite.
    """

    image: np.ndarray
    calibration: float | None = None
    source_note: str = ""
    voltage_kv: float | None = None
    bad: np.ndarray | None = None


@dataclass
class _Raw:
    """What a format reader returns: the array (any dimensionality) and its metadata."""

    data: Any
    calibration: float | None = None
    notes: list[str] = field(default_factory=list)
    voltage_kv: float | None = None
    colour_last_axis: bool = False  # a trailing axis of 3/4 is colour, not a frame axis
    nav_shape: tuple[int, ...] | None = None  # leading (scan) dims of a rsciio signal


#: ITU-R BT.601 luma weights (R, G, B), as Pillow's ``convert("L")``.
LUMINANCE = np.array([0.299, 0.587, 0.114])


def to_gray(data: np.ndarray) -> np.ndarray:
    """Luminance of an (..., 3) RGB or (..., 4) RGBA array (alpha dropped), float32.

    Examples
    --------
    >>> to_gray(np.array([[[255, 255, 255], [255, 0, 0]]], dtype=np.uint8)).round(2).tolist()
    [[255.0, 76.25]]
    """
    arr = np.asarray(data)
    if arr.shape[-1] not in (3, 4):
        raise EdorientError(f"to_gray: expected a last axis of 3 (RGB) or 4 (RGBA) channels, got shape {arr.shape}")
    return (arr[..., :3].astype(np.float64) @ LUMINANCE).astype(np.float32)


def _read_pillow(path: Path) -> _Raw:
    from PIL import Image, UnidentifiedImageError

    notes = []
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                return _Raw(np.asarray(im, dtype=np.float32))
            if im.mode in ("1", "LA", "La"):
                return _Raw(np.asarray(im.convert("L"), dtype=np.float32))
            if im.mode not in ("RGB", "RGBA"):  # palette, CMYK, YCbCr, HSV, LAB ...
                im = im.convert("RGB")
            depth = im.info.get("bitdepth") or _png_bit_depth(path)
            if depth == 16:
                notes.append("16-bit colour PNG read at 8 bits per channel")
            notes.append(f"colour ({im.mode}) converted to gray by luminance")
            return _Raw(to_gray(np.asarray(im)), notes=notes)
    except (UnidentifiedImageError, OSError) as exc:
        raise EdorientError(f"cannot read image {path}: {exc} (is it a valid image file?)") from None


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth per channel from a PNG's IHDR chunk, or None for another format."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_tiff(path: Path) -> _Raw:
    import logging

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)  # tifffile logs, rather than raises, on some corrupt files
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            rgb = getattr(page, "photometric", None) in (tifffile.PHOTOMETRIC.RGB,) or (
                getattr(page, "samplesperpixel", 1) in (3, 4) and getattr(page, "photometric", None) != 1
            )
            data = tif.asarray()
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise EdorientError(f"cannot read TIFF {path}: {str(exc).splitlines()[0]} (is the file complete?)") from None
    finally:
        log.setLevel(level)
    if data.size == 0:
        raise EdorientError(f"cannot read TIFF {path}: no image data (is the file complete?)")
    return _Raw(data, colour_last_axis=bool(rgb))


def _read_mrc(path: Path) -> _Raw:
    import mrcfile

    try:
        with mrcfile.open(path, permissive=False) as mrc:
            return _Raw(np.asarray(mrc.data, dtype=np.float32))
    except Exception as exc:
        raise EdorientError(f"cannot read MRC {path}: {str(exc).splitlines()[0]} (is the file complete?)") from None


def _read_npy(path: Path) -> _Raw:
    try:
        raw = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        raise EdorientError(f"cannot read NumPy file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "uif":
        kind = "an archive of several arrays" if not isinstance(raw, np.ndarray) else f"dtype {raw.dtype}"
        how = {"c": ", e.g. np.abs(x) of a complex one", "b": " (a boolean array is a mask: give it as --mask)"}.get(
            getattr(getattr(raw, "dtype", None), "kind", ""), "")
        raise EdorientError(f"{path} holds {kind}, not real-valued intensities: save the pattern as a real "
                            f"(integer or float) 2-D array{how}")
    return _Raw(raw)


# -- calibration from axis metadata --------------------------------------------------------

#: Length units -> Å.
_LENGTHS = {
    "m": 1e10, "cm": 1e8, "mm": 1e7, "um": 1e4, "µm": 1e4, "μm": 1e4, "micron": 1e4, "nm": 10.0,
    "a": 1.0, "å": 1.0, "Å": 1.0, "angstrom": 1.0, "ang": 1.0, "pm": 0.01,
}
_ANGLES = {"rad": 1.0, "mrad": 1e-3, "urad": 1e-6, "µrad": 1e-6, "μrad": 1e-6, "deg": math.pi / 180}


def _parse_unit(units: str) -> tuple[str, float] | None:
    """``("reciprocal", Å per unit)``, ``("length", Å per unit)``, ``("angle", rad per unit)``
    or None for a unit not understood."""
    u = str(units).strip().replace(" ", "").replace("Å", "a").replace("Å", "a").lower()
    u = u.replace("⁻¹", "^-1").replace("**", "^").replace("{", "").replace("}", "")
    for pat in (r"^1/(?P<l>[a-zµμå]+)$", r"^(?P<l>[a-zµμå]+)\^?-1$", r"^/(?P<l>[a-zµμå]+)$"):
        m = re.match(pat, u)
        if m and m.group("l") in _LENGTHS:
            return "reciprocal", _LENGTHS[m.group("l")]
    if u in _LENGTHS:
        return "length", _LENGTHS[u]
    if u in _ANGLES:
        return "angle", _ANGLES[u]
    return None


def calibration_from_axes(axes: list[dict], voltage_kv: float | None = None) -> tuple[float | None, str]:
    """Calibration (Å⁻¹ per pixel) of a pattern from its two signal axes, and a one-line note.

    ``axes`` are rosettasciio axis dicts (``scale``, ``units``, optionally ``name``) of the
    pattern's two signal axes (rows, cols). A reciprocal length unit gives ``scale / length``
    (1/nm -> ÷10); an angle gives ``θ / λ`` when ``voltage_kv`` is known; a real-space length
    or an unknown unit gives ``None``. Different row and column scales are averaged (noted).

    Examples
    --------
    >>> calibration_from_axes([{"scale": 0.1901, "units": "1/nm"}] * 2)
    (0.01901, 'calibration 0.1901 1/nm per px from the file = 0.01901 1/Å per px')
    >>> calibration_from_axes([{"scale": 0.5, "units": "nm"}] * 2)[0] is None
    True
    """
    if len(axes) != 2:
        return None, f"no calibration read: expected 2 signal axes, got {len(axes)}"
    parsed, scales = [], []
    for ax in axes:
        units = ax.get("units")
        scale = ax.get("scale")
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            return None, f"no calibration read: axis scale {scale!r} is not a number"
        if units in (None, "", "<undefined>", "[]", "px", "pixel", "pixels"):
            return None, "no calibration in the file (axes without units)"
        kind = _parse_unit(units)
        if kind is None:
            return None, f"calibration unit {units!r} not understood: ignored (give --calibration in 1/Å per px)"
        parsed.append((kind, str(units)))
        scales.append(scale)
    kinds = {k[0][0] for k in parsed}
    units = parsed[0][1]
    if len(kinds) != 1 or not all(np.isfinite(scales)) or min(scales) <= 0:
        return None, f"no calibration read: axis scales {scales} / units {[p[1] for p in parsed]} are not usable"
    kind = kinds.pop()
    if kind == "length":
        return None, (f"the file's pixel size is a real-space length ({scales[0]:g} {units}), not a reciprocal one: "
                      "ignored for a diffraction pattern (give --calibration in 1/Å per px)")
    values = [s / k[0][1] for s, k in zip(scales, parsed)] if kind == "reciprocal" else None
    if kind == "angle":
        if voltage_kv is None or not np.isfinite(voltage_kv) or voltage_kv <= 0:
            return None, (f"the file's calibration is an angle ({scales[0]:g} {units} per px) and it states no beam "
                          "energy: ignored (give --calibration in 1/Å per px)")
        from edorient.physics.wavelength import electron_wavelength

        lam = electron_wavelength(float(voltage_kv))
        values = [s * k[0][1] / lam for s, k in zip(scales, parsed)]
    cal = float(np.mean(values))
    note = f"calibration {scales[0]:g} {units} per px from the file = {cal:.4g} 1/Å per px"
    if kind == "angle":
        note += f" (at {voltage_kv:g} kV)"
    if abs(values[0] - values[1]) > 1e-3 * cal:
        note += f"; rows {values[0]:.4g} and cols {values[1]:.4g} differ: their mean is used"
    return round(cal, 10), note


def _voltage_from_metadata(metadata: dict | None) -> float | None:
    try:
        value = float(metadata["Acquisition_instrument"]["TEM"]["beam_energy"])  # keV
    except (KeyError, TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


#: extension -> (rsciio module, needs an extra package, reader keyword arguments)
_RSCIIO = {
    ".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd", ".hspy": "hspy",
    ".zspy": "zspy", ".mib": "quantumdetector", ".blo": "blockfile",
}


def _read_rsciio(path: Path) -> _Raw:
    import importlib

    module = _RSCIIO[path.suffix.lower()]
    try:
        reader = importlib.import_module(f"rsciio.{module}").file_reader
    except ImportError as exc:
        raise EdorientError(f"reading {path.suffix} files needs the Python package {exc.name!r} "
                            f"(pip install {'scikit-image' if exc.name == 'skimage' else exc.name})") from None
    try:
        signals = reader(str(path), lazy=True)
    except Exception as exc:  # each format raises its own types on a bad file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdorientError(f"cannot read {path}: {msg} (is it a complete {path.suffix} file?)") from None
    images = [s for s in signals if getattr(s.get("data"), "ndim", 0) >= 2]
    if not images:
        raise EdorientError(f"{path} holds no image data (only {len(signals)} 0-D/1-D signal(s))")
    sig = images[0]
    notes = [f"first of {len(images)} images"] if len(images) > 1 else []
    axes = list(sig.get("axes") or [])
    if axes and all("index_in_array" in a for a in axes):
        axes = sorted(axes, key=lambda a: int(a["index_in_array"]))
    voltage = _voltage_from_metadata(sig.get("metadata"))
    cal, note = calibration_from_axes(axes[-2:], voltage) if len(axes) >= 2 else (None, "no axes in the file")
    notes.append(note)
    data = sig["data"]
    return _Raw(data, calibration=cal, notes=notes, voltage_kv=voltage, nav_shape=tuple(data.shape[:-2]))


#: extension -> reader
READERS: dict[str, Callable[[Path], _Raw]] = {
    ".png": _read_pillow, ".jpg": _read_pillow, ".jpeg": _read_pillow, ".bmp": _read_pillow,
    ".tif": _read_tiff, ".tiff": _read_tiff,
    ".mrc": _read_mrc, ".mrcs": _read_mrc,
    ".npy": _read_npy,
    **{ext: _read_rsciio for ext in _RSCIIO},
}


def _read_raw(p: Path, what: str, kind: str, check: str):
    """(the reader's raw result, its data with colour turned gray) of the file ``p``; a missing
    file or an unknown format is one line naming ``what`` / ``kind`` and what to ``check``."""
    if p.is_dir():
        raise EdorientError(f"{p} is a folder; give one {kind} file (a folder of patterns is for `edorient map`)")
    if not p.is_file():
        raise EdorientError(f"{what} not found: {p} (check {check})")
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise EdorientError(f"unsupported {kind} format {p.suffix!r} of {p}: use one of {', '.join(sorted(READERS))}")
    raw = reader(p)
    data = raw.data
    if raw.colour_last_axis and data.ndim >= 3 and data.shape[-1] in (3, 4):
        data = to_gray(np.asarray(data))
    return raw, data


def read_pattern(path: str | Path, frame: int | None = None) -> Pattern:
    """Read a diffraction pattern and, where the file has one, its calibration.

    Parameters
    ----------
    path
        File with one of the extensions of :data:`READERS`.
    frame
        Index of the frame to take from a stack or a scan (row-major over the scan positions).

    Returns
    -------
    Pattern
        The 2-D float32 image, the calibration in Å⁻¹ per pixel or ``None``, a note, the
        voltage (kV) if stated.
    """
    p = Path(path)
    raw, data = _read_raw(p, "image file", "image", "the path")
    notes = list(raw.notes)
    if data is not raw.data:
        notes.append("colour converted to gray by luminance")
    nav = tuple(data.shape[:-2]) if data.ndim > 2 else ()
    if nav:
        n = int(np.prod(nav))
        what = f"a scan of {' x '.join(map(str, nav))} patterns" if len(nav) > 1 else f"a stack of {n} frames"
        if frame is None:
            raise EdorientError(f"{p} holds {what}; choose one with --frame K (0 to {n - 1})")
        if not 0 <= frame < n:
            raise EdorientError(f"--frame {frame} is outside the {n} frames of {p} (0 to {n - 1})")
        data = data[np.unravel_index(int(frame), nav)]
        notes.append(f"frame {frame} of {n}")
    elif frame not in (None, 0):
        raise EdorientError(f"--frame {frame} given but {p} holds a single pattern; leave --frame out")
    if hasattr(data, "compute"):  # a lazy (dask) array of rsciio
        data = data.compute()
    data = np.asarray(data)
    if data.dtype.kind not in "uifb":
        raise EdorientError(f"{p} holds {data.dtype} data, not real intensities; save the pattern as real numbers")
    data = np.array(data, dtype=np.float32)
    if data.ndim != 2 or min(data.shape) < 16:
        raise EdorientError(f"{p} is not a 2-D image of at least 16 x 16 pixels (shape {data.shape})")
    finite = np.isfinite(data)
    bad = None
    check = "check the file" + (" or --frame" if frame is not None else "")  # (--frame only where one was given)
    if not finite.all():  # NaN marks gaps and dead pixels: ignored, unless they are most of the image
        if finite.sum() < 0.2 * finite.size:
            raise EdorientError(f"{p}: {int((~finite).sum())} of its {finite.size} pixels are NaN or infinite; {check}")
        bad = ~finite
        data[bad] = 0.0
        notes.append(f"{int(bad.sum())} NaN or infinite pixels ignored")
    if float(data[finite].max()) == float(data[finite].min()):
        raise EdorientError(f"{p} has no pattern: every pixel is {float(data[finite].min()):g}; {check}")
    notes.insert(0, f"{p.suffix.lower().lstrip('.')} file")
    if raw.calibration is None and not any("calibration" in n for n in notes):
        notes.append("no calibration in the file")
    return Pattern(image=data, calibration=raw.calibration, source_note="; ".join(notes), voltage_kv=raw.voltage_kv,
                   bad=bad)


def _bool_npy(p: Path) -> np.ndarray | None:
    """A .npy of booleans as uint8; None for anything else (read the usual way)."""
    if p.suffix.lower() != ".npy" or not p.is_file():
        return None
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    except Exception:  # noqa: BLE001 - unreadable: the usual reader says so in one line
        return None
    return np.asarray(arr, dtype=np.uint8) if isinstance(arr, np.ndarray) and arr.dtype.kind == "b" else None


def read_detector_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """The pixels to ignore of a detector of ``shape`` (H, W), from an image file of that size
    (any format of :data:`READERS`): (H, W) bool, True where the file is nonzero (or NaN), i.e. a
    dead, hot or gap pixel, a beam stop, an annotation.

    A mask marking more than half of the detector is refused: it almost surely marks the good
    pixels instead (the other convention, e.g. py4DSTEM's), and would leave too little to index.
    """
    p = Path(path)
    data = _bool_npy(p)  # (a mask saved as booleans; a pattern of them is refused)
    if data is None:
        data = _read_raw(p, "detector mask", "mask", "--mask")[1]
    data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    if data.ndim != 2:
        raise EdorientError(f"the mask {p} is not one 2-D image (shape {data.shape}); give the detector's mask")
    if tuple(data.shape) != tuple(shape):
        raise EdorientError(f"the mask {p} is {data.shape[0]} x {data.shape[1]} px but the detector is "
                            f"{shape[0]} x {shape[1]}; give a mask of the detector's size")
    bad = ~np.isfinite(data) | (np.nan_to_num(data) != 0) if data.dtype.kind == "f" else data != 0
    if bad.mean() > 0.5:
        raise EdorientError(f"the mask {p} marks {bad.mean():.0%} of the detector to be ignored; a mask is nonzero "
                            "at the pixels to ignore: if yours marks the good pixels, invert it")
    return bad


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read a diffraction image as a 2-D float32 array (:func:`read_pattern` without its metadata).

    Parameters
    ----------
    path
        File with one of the extensions of :data:`READERS`.
    frame
        Index of the frame to take from a stack (3-D data) or scan.
    """
    return read_pattern(path, frame).image


def find_direct_beam(image: np.ndarray, sigma: float = 3.0) -> tuple[float, float]:
    """(row, col) of the direct beam: the intensity-weighted centre of the brightest blob.

    The image is smoothed (Gaussian, ``sigma`` px), the maximum found, and the centre of mass
    of the pixels above half of it within 3 sigma of the maximum refines the position.
    """
    from edorient._filter_kernels import gaussian_filter

    sm = gaussian_filter(image, sigma)  # (scipy.ndimage's, compiled: the same bits, 2.7x faster)
    r, c = np.unravel_index(np.argmax(sm), sm.shape)
    h = int(np.ceil(3 * sigma))
    r0, r1, c0, c1 = max(r - h, 0), min(r + h + 1, sm.shape[0]), max(c - h, 0), min(c + h + 1, sm.shape[1])
    win = sm[r0:r1, c0:c1]
    w = np.clip(win - 0.5 * win.max(), 0, None)
    rr, cc = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :]  # (broadcast: np.mgrid's products)
    return float((w * rr).sum() / w.sum()), float((w * cc).sum() / w.sum())


def model_axes(centre: tuple[float, float], calibration_in: float, size: int,
               calibration_out: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols), each (size,): where the rows and columns of a ``size`` working image whose
    calibration is ``calibration_out`` (the direct beam on its centre pixel) fall in an input image
    of calibration ``calibration_in`` whose beam is at ``centre`` (input pixels, float64)."""
    from edorient.conventions import centre_pixel

    scale = calibration_out / calibration_in  # input pixels per output pixel
    r0, c0 = centre_pixel(size)
    k = np.arange(size, dtype=np.float64)
    return centre[0] + (k - r0) * scale, centre[1] + (k - c0) * scale


#: :func:`shrink_sigma`: an image shrunk by more than this (input pixels per output pixel) is
#: low-passed before it is sampled; less, not at all.
LOWPASS_SHRINK = 1.5


def shrink_sigma(scale: float, spot_sigma_px: float | None = None) -> float:
    """Gaussian sigma (input pixels) of the low-pass before an image is sampled at ``scale``
    input pixels per output pixel (0: none).

    Shrinking more than :data:`LOWPASS_SHRINK` (1.5x; less: none): at least half an output
    pixel, so that spots are not lost between samples. With the input's spot width
    ``spot_sigma_px`` (Gaussian sigma, input pixels) known, the spots are also brought to the
    width of the search's templates,
    :data:`edorient.conventions.DEFAULT_SPOT_SIGMA_PX` output pixels, where they would be
    narrower: a spot much narrower than one output pixel is read at its peak or its flank
    depending on where it falls between samples, and the whole-image fit then reads intensities
    (and so the beam's tilt) wrong. Measured (docs/results.md, session 29): eight simulated
    anatase patterns of 1.6 px spots over a 2.56 1/Å field at 512 px, onto the 150 px frame (3.5x):
    4 of 8 more than 5° off with half a pixel, all within 0.75° with the templates' width.

    >>> shrink_sigma(1.2), shrink_sigma(2.0), round(shrink_sigma(3.5, 1.6), 2), shrink_sigma(2.0, 3.0)
    (0.0, 1.0, 3.88, 1.0)
    """
    from edorient.conventions import DEFAULT_SPOT_SIGMA_PX

    if not scale > LOWPASS_SHRINK:
        return 0.0
    sigma = 0.5 * scale
    if spot_sigma_px is not None:
        sigma = max(sigma, math.sqrt(max((DEFAULT_SPOT_SIGMA_PX * scale) ** 2 - float(spot_sigma_px) ** 2, 0.0)))
    return sigma


def resample_to_model(
    image: np.ndarray,
    centre: tuple[float, float],
    calibration_in: float,
    size: int,
    calibration_out: float,
    spot_sigma_px: float | None = None,
) -> np.ndarray:
    """Resample ``image`` so the direct beam is on the centre pixel of a ``size`` image whose
    calibration is ``calibration_out`` (Å⁻¹/px); pixels outside the input become 0. Shrinking,
    the image is low-passed first (:func:`shrink_sigma`; ``spot_sigma_px``: its spots' Gaussian
    sigma in input pixels, where measured)."""
    return resample_lowpassed(image, centre, calibration_in, size, calibration_out,
                              shrink_sigma(calibration_out / calibration_in, spot_sigma_px))


def resample_lowpassed(image: np.ndarray, centre: tuple[float, float], calibration_in: float, size: int,
                       calibration_out: float, sigma: float) -> np.ndarray:
    """(size, size) float32: :func:`resample_to_model`'s grid of ``image`` after a Gaussian
    low-pass of ``sigma`` input pixels (0: none), the blur computed only where the grid reads it
    (a 2048 px frame onto 150 px: 7 against 120 ms for the whole image blurred; the same float32
    values in the tests)."""
    from edorient._prep_kernels import bilinear_grid, blurred_bilinear_grid
    from edorient._utils.jit import kernel_array

    rows, cols = model_axes(centre, calibration_in, size, calibration_out)
    src = kernel_array(np.asarray(image, dtype=np.float64), np.float64)
    # bilinear, separable (the rows, then the columns): ndimage.map_coordinates(order=1,
    # mode="constant") at the grid's points; compiled, 5x faster than the two numpy passes
    weights = (*_linear_weights(rows, src.shape[0]), *_linear_weights(cols, src.shape[1]))
    if sigma > 0:
        from edorient._filter_kernels import gaussian_kernel_half

        return blurred_bilinear_grid(src, gaussian_kernel_half(sigma), *weights)
    return bilinear_grid(src, *weights)


def _linear_weights(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower sample, its weight, the next sample's weight) of linear interpolation at the
    positions ``pos`` (pixels) on ``n`` samples; both weights 0 outside [0, n - 1], as
    ``scipy.ndimage.map_coordinates`` with ``mode="constant"`` gives."""
    inside = (pos >= 0) & (pos <= n - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    f = np.where(inside, pos - lo, 0.0)
    w = np.where(inside, 1.0 - f, 0.0)
    return lo, w, f
