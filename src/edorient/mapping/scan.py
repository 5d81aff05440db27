"""Reading a scan: a 4D-STEM file, a plain 4D array, or a folder / glob of single patterns.

:func:`open_scan` looks at the input once (shape, calibration) and returns a :class:`ScanSource`,
a small picklable description; :meth:`ScanSource.read` reads the patterns of one chunk of probe
positions (``start:stop`` in row-major order), opening the file lazily in the process that
calls it (a Dask worker), so no process ever holds more than a chunk of the scan.

Inputs
------
- 4D-STEM files through rosettasciio's readers, lazily (Dask arrays): ``.hspy`` (HyperSpy,
  HDF5), ``.zspy``, ``.mib`` (Quantum Detectors Merlin), ``.blo`` (blockfile), ``.dm4``/``.dm3``
  (Gatan), ``.emd``, ``.tvips``. The first signal with two navigation and two signal axes is
  used (else the first stack of patterns with one navigation axis: a line of probes, e.g. a
  Merlin .mib without its .hdr). Its calibration comes from the signal axes: ``1/nm`` (divided by 10), ``1/Å``, or
  ``mrad`` (converted with the beam energy of the metadata); uncalibrated axes (``px``, none)
  need ``--calibration``.
- ``.npy`` (4-D ``(rows, cols, H, W)`` or 3-D ``(n, H, W)``; memory-mapped) and ``.zarr``
  (a zarr array, or a group holding one 4-D array): ``--calibration`` required.
- ``--scan-shape ROWS COLS`` (``open_scan(scan_shape=)``) lays any of these files' patterns, in
  the order stored, out on that grid of probes.
- A folder, or a glob pattern (``'frames/*.tif'``), of single-pattern image files
  (:data:`edorient.io.images.READERS`): one row per file, in sorted name order; calibration
  required. With ``--scan-shape`` the files, in that order, are the probes of a scan (row-major):
  a 2-D map, its neighbour pass and each grain's support, as for a scan file.
"""

from __future__ import annotations

import functools
import glob as _glob
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edorient.errors import EdorientError, check_finite

__all__ = ["RSCIIO_FORMATS", "ScanSource", "calibration_from_axis", "open_scan"]

log = logging.getLogger(__name__)

#: extension -> rosettasciio plugin module of the 4D-STEM formats read lazily
RSCIIO_FORMATS = {
    ".hspy": "rsciio.hspy", ".zspy": "rsciio.zspy", ".mib": "rsciio.quantumdetector",
    ".blo": "rsciio.blockfile", ".dm4": "rsciio.digitalmicrograph", ".dm3": "rsciio.digitalmicrograph",
    ".emd": "rsciio.emd", ".tvips": "rsciio.tvips",
}
#: smallest and largest plausible calibration (1/Å per pixel)
CALIBRATION_RANGE = (1e-4, 1.0)

_INV_NM = {"1/nm", "nm^-1", "nm-1", "1 / nm", "nm⁻¹", "1/nanometer"}
_INV_A = {"1/å", "1/a", "å^-1", "a^-1", "å-1", "a-1", "1/angstrom", "1 / å", "å⁻¹", "1/Å".lower()}


@dataclass(frozen=True)
class ScanSource:
    """What :func:`open_scan` found: enough to read any chunk again in another process."""

    path: str
    """The file, folder or glob as given."""
    kind: str
    """``rsciio``, ``npy``, ``zarr`` or ``files``."""
    shape: tuple[int, int]
    """Probe positions (rows, cols); a list of files is (n, 1)."""
    pattern_shape: tuple[int, int]
    """Detector pixels (H, W) (for files: those of the first file)."""
    calibration: float
    """1/Å per detector pixel."""
    calibration_source: str
    """Where the calibration came from (the file's axes, or --calibration)."""
    plugin: str | None = None
    """rosettasciio module (kind ``rsciio``)."""
    signal_index: int = 0
    """Index of the 4D signal among those the reader returns."""
    dataset: str | None = None
    """Array inside a zarr group."""
    files: tuple[str, ...] = field(default=(), repr=False)
    """The pattern files (kind ``files``)."""
    distortion: tuple[float, float] | None = None
    """The detector's elliptical distortion (ellipticity, major-axis angle in degrees) of a
    calibration file (``edorient calibrate``), undone in every pattern about its direct beam; None: none."""
    voltage_kv: float | None = None
    """The accelerating voltage (kV) the file states (its beam energy), or None."""
    step_nm: float | None = None
    """The probe step (nm) between scan positions: ``--step``, else the file's scan axes where they
    carry a length unit; None: unknown (the orientation files then count in probe steps)."""
    step_source: str = ""
    """Where ``step_nm`` came from (``--step``, the file's scan axes), empty where unknown."""

    @property
    def n_patterns(self) -> int:
        return int(self.shape[0] * self.shape[1])

    @property
    def layout(self) -> str:
        """``files`` for a list of pattern files mapped file by file (no 2-D neighbourhood), else
        the kind; a list of files laid out on a grid (``open_scan``'s ``scan_shape``) is ``grid``."""
        if self.kind == "files":
            return "files" if tuple(self.shape) == (len(self.files), 1) else "grid"
        return self.kind

    def read(self, start: int, stop: int) -> np.ndarray:
        """Patterns ``start:stop`` (row-major probe index) as float32 (n, H, W)."""
        if self.kind == "files":
            from edorient.io.images import read_image

            out = [read_image(f) for f in self.files[start:stop]]
            shapes = {a.shape for a in out}
            if len(shapes) > 1 or (out and out[0].shape != tuple(self.pattern_shape)):
                bad = next(f for f, a in zip(self.files[start:stop], out) if a.shape != tuple(self.pattern_shape))
                raise EdorientError(f"{bad} is {read_image(bad).shape[0]} x {read_image(bad).shape[1]} px but the "
                                    f"first file is {self.pattern_shape[0]} x {self.pattern_shape[1]}; a folder must "
                                    "hold patterns of one detector size")
            return np.stack(out).astype(np.float32)
        arr = _open_array(self)
        nx = self.shape[1]
        out = np.empty((stop - start,) + tuple(self.pattern_shape), dtype=np.float32)
        # read whole scan rows (contiguous in every format), keep the probes asked for
        k = 0
        for row, c0, c1 in _row_spans(start, stop, nx):
            block = arr[row, c0:c1]
            if hasattr(block, "compute"):  # a lazy rosettasciio array: read here, not on the cluster
                block = block.compute(scheduler="synchronous")
            out[k : k + c1 - c0] = np.asarray(block, dtype=np.float32)
            k += c1 - c0
        return out


@functools.lru_cache(maxsize=4)
def _open_array(src: ScanSource):
    """The scan as a 4-D array-like (lazy), opened once per process."""
    if src.kind == "rsciio":
        a = _rsciio_signals(src.path, src.plugin)[src.signal_index]["data"]
        if a.ndim == 4 and tuple(a.shape[:2]) == tuple(src.shape):
            return a
        # a stack of patterns, or a scan laid out anew (open_scan's scan_shape): row-major probes
        return _Reshaped(a.reshape((-1,) + tuple(a.shape[-2:])), src.shape)
    if src.kind == "npy":
        a = np.load(src.path, mmap_mode="r")
        return a.reshape(src.shape + a.shape[-2:])
    if src.kind == "zarr":
        import zarr

        z = zarr.open(src.path, mode="r")
        a = z[src.dataset] if src.dataset else z
        if a.ndim == 4 and tuple(a.shape[:2]) == tuple(src.shape):
            return a
        return _Reshaped(a if a.ndim == 3 else _Flat(a), src.shape)
    raise ValueError(src.kind)


class _Flat:
    """A 4-D (rows, cols, H, W) array-like sliced as the 3-D stack (rows x cols, H, W) of its
    probes in row-major order (for a scan laid out anew; reads whole stored rows)."""

    def __init__(self, a):
        self.a, self.nx = a, a.shape[1]

    def __getitem__(self, key: slice):
        return np.concatenate([np.asarray(self.a[row, c0:c1]) for row, c0, c1 in _row_spans(key.start, key.stop, self.nx)])


def _row_spans(start: int, stop: int, nx: int):
    """(row, first col, end col) of each scan row that probes ``start:stop`` (row-major, rows of
    ``nx``) touch."""
    for row in range(start // nx, (stop - 1) // nx + 1):
        yield row, max(start - row * nx, 0), min(stop - row * nx, nx)


class _Reshaped:
    """A 3-D (n, H, W) array-like indexed as (rows, cols, H, W)."""

    def __init__(self, a, shape):
        self.a, self.nx = a, shape[1]

    def __getitem__(self, key):
        row, cols = key
        return self.a[row * self.nx + cols.start : row * self.nx + cols.stop]


def _rsciio_signals(path: str, plugin: str) -> list[dict]:
    import importlib

    try:
        mod = importlib.import_module(plugin)
    except ImportError as exc:  # a reader's optional dependency (blockfile: scikit-image)
        pip = {"skimage": "scikit-image"}.get(exc.name, exc.name)
        raise EdorientError(f"reading {Path(path).suffix} files needs the package {exc.name!r}, which is not "
                            f"installed: pip install {pip}") from None
    try:
        return mod.file_reader(path, lazy=True)
    except EdorientError:
        raise
    except Exception as exc:  # noqa: BLE001 - readers raise many types on corrupt files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdorientError(f"cannot read {path} with rosettasciio ({plugin.split('.')[-1]}): {first} "
                            "(is the file complete and a 4D-STEM data set?)") from None


def calibration_from_axis(axis: dict, beam_energy_kev: float | None = None) -> float | None:
    """1/Å per pixel of a rosettasciio signal axis dict, or None when it has no reciprocal
    calibration (``px``, no units). ``mrad`` needs the beam energy (keV)."""
    units = str(axis.get("units") or "").strip()
    scale = axis.get("scale")
    if scale is None or units.lower() in ("", "<undefined>", "px", "pixel", "pixels", "none"):
        return None
    scale = abs(float(scale))
    u = units.lower().replace(" ", "")
    if u in {x.replace(" ", "") for x in _INV_NM}:
        return scale / 10.0
    if u in {x.replace(" ", "").lower() for x in _INV_A}:
        return scale
    if u == "mrad":
        if not beam_energy_kev:
            raise EdorientError("the detector axes are in mrad but the file gives no beam energy; give "
                                "--calibration in 1/Å per pixel")
        from edorient.physics.wavelength import electron_wavelength

        return scale * 1e-3 / electron_wavelength(float(beam_energy_kev))
    raise EdorientError(f"the detector axes are in {units!r}, which edorient cannot turn into 1/Å; give "
                        "--calibration in 1/Å per pixel (1/nm is 10x 1/Å: divide by 10)")


#: Length units of a scan axis, in nanometres.
_LENGTH_NM = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3, "mm": 1e6, "m": 1e9,
              "å": 0.1, "a": 0.1, "angstrom": 0.1, "pm": 1e-3}


def step_from_axes(axes: list[dict]) -> float | None:
    """The probe step (nm) of a scan's navigation axes (rosettasciio axis dicts), or None where an
    axis has no length unit (``px``, none) or the rows' and columns' steps differ by more than
    0.1 % (the orientation files hold one step)."""
    steps = []
    for a in axes:
        factor = _LENGTH_NM.get(str(a.get("units") or "").strip().lower())
        scale = a.get("scale")
        if factor is None or scale is None or not np.isfinite(float(scale)) or float(scale) == 0:
            return None
        steps.append(abs(float(scale)) * factor)
    if not steps or max(steps) - min(steps) > 1e-3 * max(steps):
        return None
    return float(steps[0])


def _check_calibration(cal: float, where: str) -> float:
    check_finite("calibration", cal)
    lo, hi = CALIBRATION_RANGE
    if not lo <= cal <= hi:
        raise EdorientError(f"calibration {cal:g} 1/Å per pixel ({where}) is implausible (outside {lo:g}-{hi:g}); "
                            "typical values are 0.002-0.05 1/Å per pixel (1/nm is 10x 1/Å: divide by 10); "
                            "give --calibration")
    return float(cal)


def _beam_energy(md: dict) -> float | None:
    try:
        return float(md["Acquisition_instrument"]["TEM"]["beam_energy"])
    except (KeyError, TypeError, ValueError):
        return None


def open_scan(path: str | Path, calibration: float | None = None, scan_shape: tuple[int, int] | None = None,
              step_nm: float | None = None) -> ScanSource:
    """Look at ``path`` once and describe it (see the module docstring).

    ``calibration`` (1/Å per pixel) overrides the file's; it is required where the file has
    none. ``scan_shape`` (rows, cols) lays the patterns, in the order stored, out on that grid of
    probes (a stack of patterns, a Merlin .mib without its .hdr, a scan stored as one line); it
    must hold every pattern. Bad input (missing file, wrong dimensions, no calibration, an
    implausible one, a scan shape that does not fit) raises :class:`EdorientError` with one line
    naming the fix. ``step_nm`` (the probe step in nm) overrides the file's scan axes.
    """
    src = _open_scan(path, calibration)
    if step_nm is not None:
        check_finite("--step", step_nm)
        if step_nm <= 0:
            raise EdorientError(f"--step must be a positive probe step in nm, got {step_nm:g}")
        src = replace(src, step_nm=float(step_nm), step_source="--step")
    if scan_shape is None:
        return src
    rows, cols = (int(v) for v in scan_shape)
    if rows < 1 or cols < 1 or rows * cols != src.n_patterns:
        raise EdorientError(f"--scan-shape {rows} {cols} lays out {rows * cols} probes but {path} holds "
                            f"{src.n_patterns} patterns; give ROWS COLS whose product is {src.n_patterns}")
    return replace(src, shape=(rows, cols))  # (a list of files: laid out row-major in their sorted order)


def _open_scan(path, calibration: float | None = None) -> ScanSource:
    """:func:`open_scan` without a scan shape: the file's own."""
    from edorient.io.images import READERS

    if calibration is not None:
        _check_calibration(float(calibration), "--calibration")
    if isinstance(path, (list, tuple)):  # several pattern files (a glob the shell expanded): in the order given
        files = [str(f) for f in path]
        for f in files:
            if not Path(f).is_file():
                raise EdorientError(f"pattern file not found: {f} (check the path)")
            if Path(f).suffix.lower() not in READERS:
                raise EdorientError(f"{f} is not a pattern file edorient reads ({', '.join(sorted(READERS))}); give "
                                    "one scan file, or pattern files only")
        return _files_source(f"{files[0]} .. {files[-1]} ({len(files)} files)", files, calibration)
    text = str(path)
    p = Path(text)
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(f for f in _glob.glob(text) if Path(f).suffix.lower() in READERS and Path(f).is_file())
        if not files:
            raise EdorientError(f"no pattern files match {text} (readable: {', '.join(sorted(READERS))})")
        return _files_source(text, files, calibration)
    if not p.exists():
        raise EdorientError(f"scan not found: {p} (check the path)")
    if p.is_dir() and p.suffix.lower() not in (".zarr", ".zspy"):
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in READERS and f.is_file())
        if not files:
            raise EdorientError(f"folder {p} holds no pattern files ({', '.join(sorted(READERS))})")
        return _files_source(text, files, calibration)
    ext = p.suffix.lower()
    if ext in RSCIIO_FORMATS:
        return _rsciio_source(text, RSCIIO_FORMATS[ext], calibration)
    if ext == ".npy":
        try:
            a = np.load(p, mmap_mode="r")
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
            raise EdorientError(f"cannot read NumPy file {p}: {str(exc).splitlines()[0]}") from None
        return _array_source(text, "npy", a.shape, a.dtype, calibration, None)
    if ext == ".zarr":
        import zarr

        try:
            z = zarr.open(str(p), mode="r")
        except Exception as exc:  # noqa: BLE001 - any unreadable store: one line
            raise EdorientError(f"cannot open zarr store {p}: {str(exc).splitlines()[0]}") from None
        dataset = None
        if not hasattr(z, "shape"):  # a group: its one 4-D (or 3-D) array
            arrays = [(k, a) for k, a in z.arrays() if a.ndim in (3, 4)]
            if len(arrays) != 1:
                raise EdorientError(f"zarr group {p} holds {len(arrays)} arrays of 3 or 4 dimensions; give the "
                                    "array itself (PATH.zarr/NAME)")
            dataset, z = arrays[0]
        return _array_source(text, "zarr", z.shape, z.dtype, calibration, dataset)
    raise EdorientError(f"unsupported scan format {ext!r} of {p}: use a 4D-STEM file "
                        f"({', '.join(sorted(RSCIIO_FORMATS))}), .npy, .zarr, or a folder / glob of pattern files")


def _shape_of(text: str, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    if len(shape) == 4:
        nav, sig = (shape[0], shape[1]), (shape[2], shape[3])
    elif len(shape) == 3:
        nav, sig = (shape[0], 1), (shape[1], shape[2])
    else:
        hint = "; map one pattern with edorient predict" if len(shape) == 2 else ""
        raise EdorientError(f"{text} has {len(shape)} dimensions {tuple(shape)}; a scan is 4-D (rows, cols, H, W) "
                            f"or 3-D (n, H, W){hint}")
    if min(sig) < 16:
        raise EdorientError(f"{text}: patterns of {sig[0]} x {sig[1]} px are too small (at least 16 x 16); "
                            "are the axes in the order (rows, cols, H, W)?")
    if min(nav) < 1:
        raise EdorientError(f"{text} holds no patterns (shape {tuple(shape)})")
    return nav, sig


def _array_source(text, kind, shape, dtype, calibration, dataset) -> ScanSource:
    if np.dtype(dtype).kind not in "uif":
        raise EdorientError(f"{text} holds {np.dtype(dtype)}, not real-valued intensities")
    nav, sig = _shape_of(text, tuple(shape))
    if calibration is None:
        raise EdorientError(f"{text} carries no calibration; give --calibration in 1/Å per pixel")
    return ScanSource(text, kind, nav, sig, float(calibration), "--calibration", dataset=dataset)


def _files_source(text, files, calibration) -> ScanSource:
    from edorient.io.images import read_image

    if calibration is None:
        raise EdorientError(f"pattern files carry no calibration; give --calibration in 1/Å per pixel ({text})")
    first = read_image(files[0])
    return ScanSource(text, "files", (len(files), 1), tuple(first.shape), float(calibration), "--calibration",
                      files=tuple(files))


def _rsciio_source(text: str, plugin: str, calibration: float | None) -> ScanSource:
    signals = _rsciio_signals(text, plugin)
    found = None
    for i, s in enumerate(signals):
        axes = s.get("axes", [])
        nav = [a for a in axes if a.get("navigate")]
        sig = [a for a in axes if not a.get("navigate")]
        if not nav and len(axes) in (3, 4) and np.ndim(s["data"]) == len(axes):
            # a format that does not mark its scan axes (NCEM .emd): (scan..., detector row, col)
            order = sorted(axes, key=lambda a: a.get("index_in_array", 0))
            nav, sig = order[:-2], order[-2:]
        if np.ndim(s["data"]) == len(nav) + 2 and len(nav) in (1, 2) and len(sig) == 2:
            found = i, s, sig  # (a stack of patterns, one scan axis: a line of probes, or --scan-shape)
            if len(nav) == 2:
                break
    if found is None:
        shapes = ", ".join(str(tuple(np.shape(s["data"]))) for s in signals) or "none"
        raise EdorientError(f"{text} holds no 4D-STEM signal (2 scan and 2 detector axes, or a stack of patterns); "
                            f"found {shapes}")
    i, s, sig = found
    nav_shape, sig_shape = _shape_of(text, tuple(np.shape(s["data"])))
    if np.dtype(s["data"].dtype).kind not in "uif":
        raise EdorientError(f"{text} holds {s['data'].dtype}, not real-valued intensities")
    kev = _beam_energy(s.get("metadata", {}))
    if calibration is not None:
        cal, where = float(calibration), "--calibration"
    else:
        cals = [calibration_from_axis(a, kev) for a in sig]
        if cals[0] is None or cals[1] is None:
            raise EdorientError(f"{text} has no reciprocal-space calibration in its detector axes (units "
                                f"{sig[0].get('units')!r}); give --calibration in 1/Å per pixel")
        if abs(cals[0] - cals[1]) > 1e-3 * max(cals):
            raise EdorientError(f"{text} has different calibrations along the two detector axes ({cals[0]:g}, "
                                f"{cals[1]:g} 1/Å per pixel); give --calibration")
        cal, where = float(cals[0]), f"axes metadata ({sig[0].get('units')})"
        _check_calibration(cal, f"read from the file's {where}")
    step = step_from_axes([a for a in s.get("axes", []) if a.get("navigate")])
    return ScanSource(text, "rsciio", nav_shape, sig_shape, cal, where, plugin=plugin, signal_index=i,
                      voltage_kv=float(kev) if kev and np.isfinite(kev) and kev > 0 else None,
                      step_nm=step, step_source="the file's scan axes" if step else "")
