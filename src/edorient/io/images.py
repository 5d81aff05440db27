"""Reading diffraction images from microscope files: PNG/JPEG, TIFF, MRC, NumPy.

One contract per format (a reader function and its file extensions), chosen by extension.
Every reader returns a 2-D float32 array; a stack is refused with a message saying how to pick
a frame. Bad files raise :class:`edorient.errors.EdorientError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edorient.errors import EdorientError


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "I", "I;16", "F"):
                im = im.convert("L")
            return np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise EdorientError(f"cannot read image {path}: {exc} (is it a valid image file?)") from None


def _read_tiff(path: Path) -> np.ndarray:
    import logging

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)  # tifffile logs, rather than raises, on some corrupt files
    try:
        data = np.asarray(tifffile.imread(path), dtype=np.float32)
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise EdorientError(f"cannot read TIFF {path}: {str(exc).splitlines()[0]} (is the file complete?)") from None
    finally:
        log.setLevel(level)
    if data.size == 0:
        raise EdorientError(f"cannot read TIFF {path}: no image data (is the file complete?)")
    return data


def _read_mrc(path: Path) -> np.ndarray:
    import mrcfile

    try:
        with mrcfile.open(path, permissive=False) as mrc:
            return np.asarray(mrc.data, dtype=np.float32)
    except Exception as exc:
        raise EdorientError(f"cannot read MRC {path}: {str(exc).splitlines()[0]} (is the file complete?)") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        raw = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise EdorientError(f"cannot read NumPy file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "uif":
        kind = "an archive of several arrays" if not isinstance(raw, np.ndarray) else f"dtype {raw.dtype}"
        raise EdorientError(f"{path} holds {kind}, not real-valued intensities: save the pattern as a real "
                            "(integer or float) 2-D array, e.g. np.abs(x) of a complex one")
    return np.asarray(raw, dtype=np.float32)


#: extension -> reader
READERS: dict[str, Callable[[Path], np.ndarray]] = {
    ".png": _read_pillow, ".jpg": _read_pillow, ".jpeg": _read_pillow, ".bmp": _read_pillow,
    ".tif": _read_tiff, ".tiff": _read_tiff,
    ".mrc": _read_mrc, ".mrcs": _read_mrc,
    ".npy": _read_npy,
}


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read a diffraction image as a 2-D float32 array.

    Parameters
    ----------
    path
        File with one of the extensions of :data:`READERS`.
    frame
        Index of the frame to take from a stack (3-D data).
    """
    p = Path(path)
    if not p.is_file():
        raise EdorientError(f"image file not found: {p} (check the path)")
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise EdorientError(f"unsupported image format {p.suffix!r} of {p}: use one of {', '.join(sorted(READERS))}")
    data = reader(p)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        data = data[..., :3].mean(axis=-1)  # colour image of a pattern: average the channels
    if data.ndim == 3:
        if frame is None:
            raise EdorientError(f"{p} holds a stack of {data.shape[0]} frames; choose one with --frame K")
        if not 0 <= frame < data.shape[0]:
            raise EdorientError(f"--frame {frame} is outside the {data.shape[0]} frames of {p}")
        data = data[frame]
    if data.ndim != 2 or min(data.shape) < 16:
        raise EdorientError(f"{p} is not a 2-D image of at least 16 x 16 pixels (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise EdorientError(f"{p} contains NaN or infinite pixels; clean the file first")
    if float(data.max()) == float(data.min()):
        raise EdorientError(f"{p} has no pattern: every pixel is {float(data.min()):g}; check the file or --frame")
    return data


def find_direct_beam(image: np.ndarray, sigma: float = 3.0) -> tuple[float, float]:
    """(row, col) of the direct beam: the intensity-weighted centre of the brightest blob.

    The image is smoothed (Gaussian, ``sigma`` px), the maximum found, and the centre of mass
    of the pixels above half of it within 3 sigma of the maximum refines the position.
    """
    from scipy import ndimage

    sm = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma)
    r, c = np.unravel_index(np.argmax(sm), sm.shape)
    h = int(np.ceil(3 * sigma))
    r0, r1, c0, c1 = max(r - h, 0), min(r + h + 1, sm.shape[0]), max(c - h, 0), min(c + h + 1, sm.shape[1])
    win = sm[r0:r1, c0:c1]
    w = np.clip(win - 0.5 * win.max(), 0, None)
    rr, cc = np.mgrid[r0:r1, c0:c1]
    return float((w * rr).sum() / w.sum()), float((w * cc).sum() / w.sum())


def resample_to_model(
    image: np.ndarray,
    centre: tuple[float, float],
    calibration_in: float,
    size: int,
    calibration_out: float,
) -> np.ndarray:
    """Resample ``image`` so the direct beam is on the centre pixel of a ``size`` image whose
    calibration is ``calibration_out`` (Å⁻¹/px); pixels outside the input become 0."""
    from scipy import ndimage

    from edorient.conventions import centre_pixel

    scale = calibration_out / calibration_in  # input pixels per output pixel
    r0, c0 = centre_pixel(size)
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    coords = np.stack([centre[0] + (rr - r0) * scale, centre[1] + (cc - c0) * scale])
    src = np.asarray(image, dtype=np.float64)
    if scale > 1.5:  # shrinking: low-pass first so spots are not lost between samples
        src = ndimage.gaussian_filter(src, 0.5 * scale)
    return ndimage.map_coordinates(src, coords, order=1, cval=0.0).astype(np.float32)
