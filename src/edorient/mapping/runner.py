"""The map runner: the scan cut into chunks of probe positions, each indexed by a Dask worker,
each chunk's result written atomically as soon as it finishes; a rerun skips finished chunks.

Layout of the output folder (``--out``)::

    .edorient-output.json   marker (kind "map")
    config.json             the resolved settings, the scan's description, the seed
    detector_mask.npy       the detector's pixels the map ignored (the defects found, the user's
                            --mask), where there were any
    discs.json              the probe's disc radius measured on the direct beam (reused on resume)
    thickness.json          the effective thickness fitted on a sample of the scan (reused on resume)
    chunks/chunk_00000.npz  one per chunk (written atomically: a killed map leaves none half-written)
    results.csv, results.zarr, maps/*.png, orientations.ang, orientations.h5, report.md
                            assembled from the chunks when all are done (:mod:`.outputs`)

Compute: ``workers=0`` runs the chunks in this process (no Dask); otherwise a
``dask.distributed`` ``LocalCluster`` of ``workers`` processes (default: every core) with one
thread each, or the scheduler at ``scheduler`` (``tcp://HOST:PORT``; its workers must see the
scan and have edorient installed). Tasks are submitted per chunk (:func:`index_chunk`: the
worker reads its own probes from the file, so no process holds more than a chunk of patterns
plus the estimators) and gathered as they complete. Memory: a chunk of ``chunk`` patterns in a
worker (raw + working images + the refinement's tensors), independent of the scan size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edorient.errors import EdorientError
from edorient.mapping.index import (MapSettings, index_chunk, index_neighbours, merge_neighbours, neighbour_candidates,
                                    neighbour_support)
from edorient.mapping.scan import ScanSource, open_scan

__all__ = ["ComputeSettings", "MapRun", "chunk_ranges", "run_map"]

log = logging.getLogger(__name__)

#: Test hook: after this many chunks written in one call, raise (a map killed midway).
FAIL_AFTER_ENV = "EDORIENT_MAP_FAIL_AFTER"
KIND = "map"


@dataclass(frozen=True)
class ComputeSettings:
    """Where and how the chunks run (the workers and the scheduler change nothing in the results;
    the chunk sets where a chunk's anchors lie, :func:`resolve_chunk`)."""

    workers: int | None = None
    """Dask worker processes of the local cluster (None: every core; 0: no Dask, this process)."""
    scheduler: str | None = None
    """Address of an existing dask.distributed scheduler (then ``workers`` is ignored)."""
    chunk: int | None = None
    """Patterns per chunk (bounds each worker's memory; the unit of resuming); None:
    :data:`DEFAULT_CHUNK`, at most a quarter of the scan (:func:`resolve_chunk`)."""
    progress: bool = True
    """A progress bar (only on a terminal: :mod:`edorient._utils.progress`)."""


@dataclass
class MapRun:
    """What :func:`run_map` did."""

    out: Path
    source: ScanSource
    results: dict
    n_chunks: int
    chunks_done_before: int
    compute_s: float
    patterns_computed: int
    workers: int
    timings: dict
    neighbours: dict = field(default_factory=dict)
    """The neighbour pass: candidates, patterns refined, patterns given a second grain."""
    detector: dict = field(default_factory=dict)
    """The detector's pixels ignored (:func:`_detector_mask`'s report)."""
    thickness: dict = field(default_factory=dict)
    """The effective thickness used (:func:`_fit_thickness`'s report; ``used_A`` None: the models')."""
    discs: dict = field(default_factory=dict)
    """The probe's diffraction discs (:func:`_fit_disc`'s report; ``used_px`` 0: none deconvolved)."""
    calibration: dict = field(default_factory=dict)
    """The calibration checked on a sample of the scan (:func:`_check_calibration`'s report)."""


#: The detector's defects are looked for (:attr:`MapSettings.find_defects`) in at most this many
#: patterns, in four stretches spread over the scan ...
DEFECT_SAMPLE = 128
#: ... where the scan has at least this many.
DEFECT_MIN_PATTERNS = 16


#: Effective thicknesses (Å) the map tries (:func:`_fit_thickness`) ...
THICKNESS_CANDIDATES = (15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0, 100.0, 120.0)
#: ... on this many patterns spread over the scan (where it has at least ``THICKNESS_MIN_PATTERNS``).
THICKNESS_SAMPLE = 32
THICKNESS_MIN_PATTERNS = 8
#: ... then at most this many thicknesses between them (the best's parabola, :func:`_parabola_vertex`).
THICKNESS_REFINE_STEPS = 2


def _fit_thickness(source: ScanSource, settings: MapSettings, sample=None) -> tuple[MapSettings, dict]:
    """The specimen's effective thickness (the models' relrod length) where ``settings`` leave it
    open (``thickness`` None, refinement on): :data:`THICKNESS_SAMPLE` patterns spread over the
    scan are indexed (one grain) at the models' thickness, refined again at each of
    :data:`THICKNESS_CANDIDATES` and fitted to their whole images; the thickness with the best
    median fit is used for the whole map (:meth:`~edorient.mapping.index.Indexer.thickness_fits`).
    A thin specimen's long relrods excite many more spots than the models' 50 Å predict, a thick
    one's fewer, and the refinement tilts the answer to match their intensities: on a simulated
    scan at 20 Å the map's inside-grain median was 1.04° at 50 Å, 0.05° at 20 Å (docs/mapping.md).
    ``sample()``, where given, returns those patterns already read (:func:`_spread_sample`).
    Returns the settings with the thickness set, and a report."""
    from edorient.mapping.index import get_indexer

    if settings.thickness is not None or not settings.refine:
        return settings, {"fitted": False}
    n = source.n_patterns
    if n < THICKNESS_MIN_PATTERNS:
        return settings, {"fitted": False, "why": f"fewer than {THICKNESS_MIN_PATTERNS} patterns"}
    raw = _spread_sample(source, THICKNESS_SAMPLE) if sample is None else sample()
    ix = get_indexer(replace(settings, grains="1"))
    xs, area, ok = ix.prepare(raw, source.calibration, distortion=source.distortion)
    if ok.sum() < THICKNESS_MIN_PATTERNS:
        return settings, {"fitted": False, "why": "too few patterns with a direct beam in the sample"}
    valid = area[ok] if not area[ok].all() else None
    fits = ix.thickness_fits(xs[ok], valid, THICKNESS_CANDIDATES)
    for _ in range(THICKNESS_REFINE_STEPS):  # between the grid's values: the vertex of a parabola in log t
        t = _parabola_vertex(fits)
        if t is None or any(abs(t - u) < 0.5 for u in fits):
            break
        fits.update(ix.thickness_fits(xs[ok], valid, (t,)))
    best = max(fits, key=lambda t: fits[t])
    return replace(settings, thickness=best), {"fitted": True, "thickness_A": best, "patterns": int(ok.sum()),
                                               "median_fit": {f"{t:g}": round(f, 4) for t, f in sorted(fits.items())}}


#: The probe's discs are measured (:func:`_fit_disc`) on the direct beam of this many patterns
#: spread over the scan.
DISC_SAMPLE = 32

#: The calibration is checked (:func:`_check_calibration`) on this many patterns spread over the
#: scan, at least :data:`CALIBRATION_MIN_PATTERNS` of them with an answer, ...
CALIBRATION_SAMPLE = 8
CALIBRATION_MIN_PATTERNS = 3
#: ... and their median fitted scale is used where it lies more than this far from the given one
#: and at least :data:`CALIBRATION_MIN_GRAINS` answers more than :data:`CALIBRATION_DISTINCT_DEG`
#: apart lie within :data:`CALIBRATION_AGREE` of it (else the given one is kept, report.md saying why).
CALIBRATION_ADOPT = 0.03
CALIBRATION_MIN_GRAINS = 2
CALIBRATION_DISTINCT_DEG = 5.0
CALIBRATION_AGREE = 0.02


def _sample_scales(raw, ignore, calibration: float, search, crystal, cache: dict) -> list[tuple[float, np.ndarray]]:
    """(scale, beam direction) that ``edorient predict``'s search and one-grain fit give each
    pattern of ``raw`` that they do not call ``no match`` (:func:`_check_calibration`)."""
    from edorient.indexing.pipeline import IndexConfig, index_pattern
    from edorient.indexing.spots import find_centre

    scales = []
    for p in raw:
        img = np.asarray(p, dtype=np.float64)
        if ignore is not None:
            img = np.where(ignore, 0.0, img)
        try:
            c = find_centre(img, None if ignore is None else ~ignore)
            res = index_pattern(img, IndexConfig(calibration, (float(c.row), float(c.col)), refine=False,
                                                 search=search), crystal, cache=cache)
        except EdorientError:
            continue
        if res.grains and res.grains[0].verdict != "no match":
            scales.append((float(res.calibration_scale), res.grains[0].rotation[2]))
    return scales


def _check_calibration(source: ScanSource, settings: MapSettings, sample, mask_path: str | None = None
                       ) -> tuple[ScanSource, dict]:
    """The calibration checked as ``edorient predict`` fits it: its template search (the scale
    within ±15 %, no refinement, the centre by Friedel symmetry) on :data:`CALIBRATION_SAMPLE`
    patterns spread over the scan (``sample()``); the median fitted scale of those it does not
    call ``no match`` is used, with a warning, where it lies more than :data:`CALIBRATION_ADOPT`
    from 1 and answers of at least :data:`CALIBRATION_MIN_GRAINS` distinct grains agree on it.
    The map's own fits take the calibration as given, and 10 % off it put a simulated map's grains
    45° off with nothing to tell (a microscopist's calibration of the camera length is often that
    uncertain). One grain is not enough: a 2 x 4 test scan at the right calibration, seven of its
    eight patterns one sparse zone, fitted 0.894 on all seven (another zone at another scale; with
    the refinement too, 0.90); on the 16 x 16 scan five grains agreed. Returns the source (its
    calibration replaced where adopted) and a report."""
    from edorient.indexing.search import SearchConfig
    from edorient.structures import get_crystal

    raw = sample()
    raw = raw[np.unique(np.linspace(0, len(raw) - 1, min(len(raw), CALIBRATION_SAMPLE)).astype(int))]
    ignore = None if mask_path is None else np.load(mask_path).astype(bool)
    crystal = get_crystal(settings.crystal)
    search = SearchConfig(voltage_kv=settings.voltage_kv or 200.0, scale_tolerance=0.15)
    quiet = logging.getLogger("edorient.indexing.spots")  # (a centre's doubts are predict's to print, not the map's)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        scales = _sample_scales(raw, ignore, source.calibration, search, crystal, {})
    finally:
        quiet.setLevel(level)
    report = {"given": source.calibration, "patterns": int(len(raw)), "answered": len(scales)}
    if len(scales) < CALIBRATION_MIN_PATTERNS:
        report.update(adopted=False, why=f"fewer than {CALIBRATION_MIN_PATTERNS} patterns answered")
        return source, report
    k = float(np.median([v for v, _ in scales]))
    # the grains behind that scale: one sparse zone can fit another zone at another scale, the
    # same on every pattern of its grain; several grains agreeing cannot all be that
    dirs = [d for v, d in scales if abs(v - k) <= CALIBRATION_AGREE]
    grains: list = []
    for d in dirs:
        if all(float(crystal.laue.angle(d[None], g[None])[0]) > CALIBRATION_DISTINCT_DEG for g in grains):
            grains.append(d)
    report.update(median_scale=round(k, 4), scales=[round(v, 4) for v, _ in scales], grains_agreeing=len(grains),
                  fitted=float(source.calibration * k))  # (unrounded: a resumed map reads back the same)
    if abs(k - 1.0) <= CALIBRATION_ADOPT:
        report["adopted"] = False
        return source, report
    if len(grains) < CALIBRATION_MIN_GRAINS:
        log.debug("the sampled patterns fit best at a calibration %.4g 1/Å per px, %+.1f %% off the given %.4g, but "
                  "all as one grain (a sparse zone can fit another zone at another scale), so the map keeps the "
                  "given one (report.md says so)", source.calibration * k, 100 * (k - 1), source.calibration)
        report.update(adopted=False, why=f"fewer than {CALIBRATION_MIN_GRAINS} distinct grains agree on the scale")
        return source, report
    log.warning("the patterns fit best at a calibration %.4g 1/Å per px, %+.1f %% off the given %.4g (median of %d "
                "patterns, %d grains); the map uses it (give the right --calibration, or a calibration file of "
                "edorient calibrate, to be sure)", source.calibration * k, 100 * (k - 1), source.calibration,
                len(scales), len(grains))
    report["adopted"] = True
    return replace(source, calibration=report["fitted"]), report


def _spread_sample(source: ScanSource, k: int) -> np.ndarray:
    """(m, H, W) float32: ``k`` patterns (or all, where fewer) spread evenly over the scan."""
    n = source.n_patterns
    idx = np.unique(np.linspace(0, n - 1, min(n, k)).astype(int))
    return np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])


def _fit_disc(source: ScanSource, settings: MapSettings, sample=None) -> tuple[MapSettings, dict]:
    """The radius of the probe's diffraction discs where ``settings`` leave it open (``disc_px``
    None): the direct beams of :data:`DISC_SAMPLE` patterns spread over the scan (``sample()``,
    where given, returns them already read: :func:`_spread_sample`), averaged about each one's centre and fitted by a disc blurred by a Gaussian
    (:func:`~edorient.indexing.discs.measure_disc`). A disc (at least 1.5 px and at least its
    blur) is deconvolved from every pattern (the returned settings' ``disc_px``; else 0).
    Returns the settings and a report."""
    from edorient.indexing.discs import measure_disc
    from edorient.io.images import find_direct_beam

    if settings.disc_px is not None:
        return settings, {"measured": False, "radius_px": float(settings.disc_px)}
    raw = (_spread_sample(source, DISC_SAMPLE) if sample is None else sample()).astype(np.float64)
    if settings.detector_mask is not None:
        from edorient.io.images import read_detector_mask

        raw[:, read_detector_mask(settings.detector_mask, raw.shape[1:])] = 0.0
    raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    patterns, centres = [], []
    for x in raw:
        try:
            centres.append(find_direct_beam(x))
            patterns.append(x)
        except EdorientError:  # no direct beam (vacuum, a blank frame)
            continue
    radius, report = measure_disc(patterns, centres, "patterns sampled")
    return replace(settings, disc_px=radius), report


def _parabola_vertex(fits: dict[float, float]) -> float | None:
    """The thickness (rounded to 0.5 Å) at the vertex of the parabola in log thickness through the
    best fit of ``fits`` (thickness -> median fit) and its two neighbours; None where the best
    lies at an end of the thicknesses tried or the three do not bend down."""
    ts = sorted(fits)
    k = max(range(len(ts)), key=lambda i: fits[ts[i]])
    if k == 0 or k == len(ts) - 1:
        return None
    x = np.log(ts[k - 1 : k + 2])
    a, b, _ = np.polyfit(x, [fits[t] for t in ts[k - 1 : k + 2]], 2)
    if a >= 0:
        return None
    return float(np.round(2 * np.exp(np.clip(-b / (2 * a), x[0], x[2]))) / 2)


def _detector_mask(out: Path, source: ScanSource, settings: MapSettings) -> tuple[MapSettings, dict]:
    """The pixels of the detector the map ignores: the user's ``detector_mask`` and, with
    ``find_defects``, the dead and hot pixels of a sample of the scan
    (:func:`~edorient.indexing.preprocess.detector_defects`). Where there are any they are written
    to ``out/detector_mask.npy`` (atomically; 1 = ignored) and the returned settings point there
    (what the chunks use); else the returned settings have no mask. Either way the search is done
    (``find_defects`` off in them). Also a report (JSON-friendly)."""
    from edorient._utils.atomic import atomic_path

    shape = tuple(source.pattern_shape)
    bad = np.zeros(shape, dtype=bool)
    report: dict = {}
    if settings.detector_mask is not None:
        from edorient.io.images import read_detector_mask

        user = read_detector_mask(settings.detector_mask, shape)
        bad |= user
        report.update(mask_file=str(settings.detector_mask), mask_px=int(user.sum()))
    n = source.n_patterns
    if settings.find_defects and n >= DEFECT_MIN_PATTERNS:
        from edorient.indexing.preprocess import detector_defects

        if n <= DEFECT_SAMPLE:
            sample = source.read(0, n)
        else:
            size = DEFECT_SAMPLE // 4
            starts = np.linspace(0, n - size, 4).astype(int)
            sample = np.concatenate([source.read(int(a), int(a) + size) for a in starts])
        found, rep = detector_defects(sample)
        bad |= found
        report.update(rep)
    elif settings.find_defects:
        report["defects"] = f"not looked for (fewer than {DEFECT_MIN_PATTERNS} patterns)"
    report["ignored_px"] = int(bad.sum())
    if not bad.any():
        return replace(settings, detector_mask=None, find_defects=False), report
    path = out / "detector_mask.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, bad.astype(np.uint8))
    report["written"] = str(path)
    return replace(settings, detector_mask=str(path), find_defects=False), report


#: Patterns per chunk by default (:func:`resolve_chunk`): eight rows of a 64-wide scan, whose
#: anchors then form a 2-D lattice (:attr:`MapSettings.anchor_rows`; docs/mapping.md).
DEFAULT_CHUNK = 512
#: The neighbour pass refines its candidates in parts of at most this many.
NEIGHBOUR_PART = 64


#: ... and at most this many bytes of raw float32 patterns (larger detectors: fewer patterns).
CHUNK_RAW_BYTES = 256 * 2**20


def resolve_chunk(chunk: int | None, shape: tuple[int, int], kind: str = "rsciio",
                  pattern_shape: tuple[int, int] = (128, 128)) -> int:
    """The patterns per chunk of a map of a scan of ``shape`` (rows, cols): ``chunk``, or (None)
    :data:`DEFAULT_CHUNK` but at most a quarter of the scan and :data:`CHUNK_RAW_BYTES` of
    ``pattern_shape`` patterns (not below 64: every worker gets work); rounded down to whole
    scan rows where that holds two rows or more (then each chunk's anchors form a 2-D lattice).
    A folder of files is not rounded.

    >>> resolve_chunk(None, (64, 64)), resolve_chunk(None, (16, 16)), resolve_chunk(64, (64, 64)), resolve_chunk(200, (10, 64))
    (512, 64, 64, 192)
    >>> resolve_chunk(None, (256, 256), pattern_shape=(512, 512))
    256
    """
    rows, cols = (int(v) for v in shape)
    fits = CHUNK_RAW_BYTES // (4 * int(pattern_shape[0]) * int(pattern_shape[1]))
    c = int(chunk) if chunk is not None else max(64, min(DEFAULT_CHUNK, -(-rows * cols // 4), fits))
    if kind != "files" and c >= 2 * cols:
        c -= c % cols
    return c


def chunk_ranges(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of ``chunk``.

    Examples
    --------
    >>> chunk_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


def _chunk_path(out: Path, k: int) -> Path:
    return out / "chunks" / f"chunk_{k:05d}.npz"


def _write_chunk(path: Path, res: dict) -> None:
    from edorient._utils.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **res)


def _load_chunk(path: Path) -> dict | None:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - unreadable (should not happen with atomic writes): recompute it
        return None


def _identity(source: ScanSource, settings: MapSettings, chunk: int, seed: int) -> dict:
    """What a finished chunk depends on: a rerun resumes only when this is unchanged."""
    s = {k: v for k, v in settings.to_dict().items() if v is not None}  # None: absent (options added later)
    s.pop("torch_threads", None)
    src = asdict(source)
    src.pop("files", None)
    for k in ("step_nm", "step_source"):  # (the outputs' coordinates only: no answer depends on them)
        src.pop(k, None)
    if source.kind != "files" or Path(source.path).exists():
        src["path"] = str(Path(source.path).resolve())
    src["n_files"] = len(source.files)
    from edorient.structures import crystal_digest

    digest = crystal_digest(settings.crystal)  # (a CIF edited in place is another crystal)
    if digest is not None:
        s["crystal_sha256"] = digest
    return {"scan": src, "settings": s, "chunk": int(chunk), "seed": int(seed)}


#: How long a map waits for a Dask scheduler given by address (``--scheduler``) before it says
#: it cannot reach it.
SCHEDULER_TIMEOUT = "10s"


def _client(compute: ComputeSettings):
    import dask
    from dask.distributed import Client, LocalCluster

    if compute.scheduler:
        try:
            return Client(compute.scheduler, timeout=SCHEDULER_TIMEOUT), None
        except (OSError, TimeoutError) as exc:
            raise EdorientError(f"cannot reach the Dask scheduler {compute.scheduler} ({exc}); check the "
                                "address (tcp://HOST:PORT) and that the scheduler runs") from None
    for name in ("distributed", "tornado"):  # the cluster's INFO chatter is not the map's
        logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.WARNING))
    n = compute.workers or os.cpu_count() or 1
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}), _workers_ignore_sigint():
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster


@contextlib.contextmanager
def _workers_ignore_sigint():
    """SIGINT ignored while the LocalCluster spawns its worker processes, which inherit it: a
    Ctrl-C then reaches the map alone, which keeps its finished chunks and closes the cluster
    (the workers had each printed a KeyboardInterrupt traceback above the map's one line)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (only the main thread may set a handler; a map run from a thread keeps Dask's behaviour)
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _run_on_cluster(client, fn, tasks: dict, key: str, finish) -> None:
    """Submit ``fn(*tasks[k])`` for every k to the Dask ``client`` and ``finish(k, result)`` each as
    it completes (its result released then: the driver holds one at a time)."""
    from dask.distributed import as_completed

    futures = {client.submit(fn, *args, key=f"{key}-{k}-{os.getpid()}", pure=False): k for k, args in tasks.items()}
    for fut in as_completed(futures):
        finish(futures[fut], fut.result())
        fut.release()


def _neighbour_path(out: Path, k: int) -> Path:
    return out / "chunks" / f"neighbours_{k:05d}.npz"


def _neighbour_pass(out: Path, source: ScanSource, settings: MapSettings, compute: ComputeSettings, results: dict,
                    client, proper: np.ndarray) -> dict:
    """The neighbour pass (:attr:`MapSettings.neighbour_radius`) over the finished chunks'
    ``results``, in place: candidates planned here, refined in parts of ``NEIGHBOUR_PART``
    candidates (on the cluster's workers where there is one), each part written atomically
    (``chunks/neighbours_NNNNN.npz``, with its candidates: a rerun reuses the parts whose
    candidates are unchanged), then merged (:func:`merge_neighbours`)."""
    idx, pools = neighbour_candidates(results, source.shape, settings, proper)
    step = min(int(compute.chunk), NEIGHBOUR_PART)
    parts = [(a, min(a + step, len(idx))) for a in range(0, len(idx), step)]

    def args(a: int, b: int, on_cluster: bool) -> tuple:
        # the same settings as the chunks' (a worker's, or this process's): the Indexer is reused
        s = replace(settings, torch_threads=1) if on_cluster else settings
        return source, idx[a:b], pools[a:b], results["spots_working_px"][idx[a:b]], s

    found: dict[int, dict] = {}
    for k, (a, b) in enumerate(parts):
        old = _load_chunk(_neighbour_path(out, k)) if _neighbour_path(out, k).is_file() else None
        if old is not None and np.array_equal(old.get("candidates"), idx[a:b]):
            found[k] = old
    todo = [k for k in range(len(parts)) if k not in found]

    def finish(k: int, res: dict) -> None:
        res["candidates"] = idx[parts[k][0] : parts[k][1]]
        _write_chunk(_neighbour_path(out, k), res)
        found[k] = res

    if client is None and todo and not (compute.workers == 0 and not compute.scheduler):
        client_, cluster_ = _client(compute)
    else:
        client_, cluster_ = client, None
    try:
        if client_ is None:
            for k in todo:
                finish(k, index_neighbours(*args(*parts[k], False)))
        elif todo:
            _run_on_cluster(client_, index_neighbours, {k: args(*parts[k], True) for k in todo}, "edorient-neighbours", finish)
    finally:
        if cluster_ is not None:
            client_.close()
            cluster_.close()
    taken = sum(merge_neighbours(results, found[k]) for k in range(len(parts)))
    return {"radius": int(settings.neighbour_radius), "candidates": int(len(idx)),
            "refined": int(sum(len(found[k]["index"]) for k in found)), "second_grains_added": taken}


def worker_environ() -> dict:
    """The environment Dask's nannies set before starting a local worker: Dask's own
    (``distributed.nanny.pre-spawn-environ``: one OpenMP/MKL/OpenBLAS thread) without its
    ``MALLOC_TRIM_THRESHOLD_`` of 64 KiB. That fixed threshold turns off glibc's adaptive mmap
    threshold, so every array above 128 KiB is a fresh mmap, page-faulted again on each use: the
    map's workers indexed at half the speed of the same code in one process (measured: 256
    patterns, 28.0 s with it, 14.5 s without, in one process with and without the variable)."""
    import dask
    import distributed  # noqa: F401 - loads Dask's distributed defaults into dask.config

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def run_map(scan: str | Path, out: str | Path, settings: MapSettings, compute: ComputeSettings | None = None,
            calibration: float | None = None, seed: int = 0, assemble: bool = True,
            distortion: tuple[float, float] | None = None, scan_shape: tuple[int, int] | None = None,
            step_nm: float | None = None) -> MapRun:
    """Index every pattern of ``scan`` into ``out`` (see the module docstring); resumable.
    ``distortion``: the detector's (ellipticity, major-axis angle in degrees), e.g. of a
    calibration file of ``edorient calibrate``, undone in every pattern. ``scan_shape``: (rows,
    cols) of the probes where the file does not say (:func:`~edorient.mapping.scan.open_scan`).
    ``step_nm``: the probe step (nm) for the orientation files' coordinates, where the file's scan
    axes do not say (or say otherwise); it changes no answer, so a rerun may set it."""
    from edorient import __version__
    from edorient._utils.atomic import atomic_write_text
    from edorient._utils.outputs import check_same_settings, claim_output_dir
    from edorient._utils.progress import progress_bar

    compute = compute or ComputeSettings()
    if compute.chunk is not None and compute.chunk < 1:
        raise EdorientError(f"--chunk must be >= 1 pattern, got {compute.chunk}")
    if compute.workers is not None and compute.workers < 0:
        raise EdorientError(f"--workers must be >= 0, got {compute.workers}")
    source = open_scan(scan, calibration, scan_shape, step_nm)
    if distortion is not None and float(distortion[0]) != 1.0:
        if not 1.0 <= float(distortion[0]) <= 1.5:
            raise EdorientError(f"the calibration's ellipticity {distortion[0]} lies outside 1-1.5; check the calibration file")
        source = replace(source, distortion=(float(distortion[0]), float(distortion[1])))
    if settings.voltage_kv is None and source.voltage_kv is not None:  # the file's beam energy
        settings = replace(settings, voltage_kv=float(source.voltage_kv))
    # the inputs' own checks before the folder is claimed: a refused input leaves no config.json
    # behind to refuse the corrected command
    from edorient.indexing.calibration import check_calibration_units
    from edorient.structures import get_crystal

    check_calibration_units(source.calibration, get_crystal(settings.crystal), tuple(source.pattern_shape))
    if settings.detector_mask is not None:
        from edorient.io.images import read_detector_mask

        read_detector_mask(settings.detector_mask, tuple(source.pattern_shape))
    out = claim_output_dir(out, KIND)
    compute = replace(compute, chunk=resolve_chunk(compute.chunk, source.shape, source.layout, source.pattern_shape))
    ident = json.loads(json.dumps(_identity(source, settings, compute.chunk, seed), default=str))
    cfg_path = out / "config.json"
    check_same_settings(out, ident, f"--out {out} holds a map of another scan or other settings; give a new --out "
                                    "(or the same settings to resume it)")
    config = {"command": "map", "edorient_version": __version__, "identity": ident,
              "compute": asdict(compute), "seed": int(seed),
              "step": {"nm": source.step_nm, "source": source.step_source or "unknown"}}
    atomic_write_text(cfg_path, json.dumps(config, indent=2, default=str) + "\n")

    used, detector = _detector_mask(out, source, settings)  # the settings every chunk and pass below uses
    # the probe's discs, then the thickness (fitted on deconvolved patterns), each kept beside the
    # chunks: a resumed map goes on with the chunks' own
    sample = None  # the patterns both fits read (the same spread), read once where either runs

    def spread() -> np.ndarray:
        nonlocal sample
        if sample is None:
            sample = _spread_sample(source, max(DISC_SAMPLE, THICKNESS_SAMPLE))
        return sample

    d_path = out / "discs.json"
    try:
        disc = json.loads(d_path.read_text())
        used = replace(used, disc_px=float(disc["used_px"]))
    except (OSError, ValueError, KeyError, TypeError):
        used, disc = _fit_disc(source, used, spread)
        disc["used_px"] = float(used.disc_px)
        atomic_write_text(d_path, json.dumps(disc, indent=2) + "\n")
    c_path = out / "calibration.json"  # (before the thickness: that fit reads the calibration)
    try:
        calib = json.loads(c_path.read_text())
        if calib.get("adopted"):
            source = replace(source, calibration=float(calib["fitted"]))
    except (OSError, ValueError, KeyError, TypeError):
        source, calib = _check_calibration(source, settings, spread, used.detector_mask)
        atomic_write_text(c_path, json.dumps(calib, indent=2) + "\n")
    t_path = out / "thickness.json"
    try:
        thickness = json.loads(t_path.read_text())
        if thickness.get("fitted"):
            used = replace(used, thickness=float(thickness["thickness_A"]))
    except (OSError, ValueError, KeyError, TypeError):
        t_fit = time.perf_counter()
        used, thickness = _fit_thickness(source, used, spread)
        thickness["seconds"] = round(time.perf_counter() - t_fit, 2)
        atomic_write_text(t_path, json.dumps(thickness, indent=2) + "\n")
    ranges = chunk_ranges(source.n_patterns, compute.chunk)
    done = {k for k in range(len(ranges)) if _chunk_path(out, k).is_file() and _load_chunk(_chunk_path(out, k)) is not None}
    todo = [k for k in range(len(ranges)) if k not in done]
    fail_after = int(os.environ.get(FAIL_AFTER_ENV, "0") or 0)
    if done:
        log.info("resuming %s: %d of %d chunks already done", out, len(done), len(ranges))
    t0 = time.perf_counter()
    n_computed = 0
    workers = 0
    timings = {"read_s": 0.0, "setup_s": 0.0, "index_s": 0.0}
    bar = progress_bar(total=sum(ranges[k][1] - ranges[k][0] for k in todo), desc="map", unit="pattern",
                       disable=not compute.progress)
    written = 0

    def finish(k: int, res: dict) -> None:
        nonlocal written, n_computed
        for key in ("read_s", "setup_s", "index_s"):
            timings[key] += float(res.get(key, 0.0))
        _write_chunk(_chunk_path(out, k), res)
        written += 1
        n_computed += ranges[k][1] - ranges[k][0]
        bar.update(ranges[k][1] - ranges[k][0])
        if fail_after and written >= fail_after and len(done) + written < len(ranges):
            raise RuntimeError(f"injected failure after {written} chunks ({FAIL_AFTER_ENV})")

    client = cluster = None
    try:
        if todo and compute.workers == 0 and not compute.scheduler:
            workers = 1
            for k in todo:
                finish(k, index_chunk(source, *ranges[k], used))
        elif todo:
            client, cluster = _client(compute)
            workers = len(client.scheduler_info().get("workers", {})) or 1
            wsettings = replace(used, torch_threads=1)
            _run_on_cluster(client, index_chunk, {k: (source, *ranges[k], wsettings) for k in todo}, "edorient-map", finish)
        bar.close()
        chunks = [_load_chunk(_chunk_path(out, k)) for k in range(len(ranges))]
        if any(c is None for c in chunks):
            raise EdorientError(f"some chunks of {out} are missing; rerun the same command to finish the map")
        results = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0] if np.ndim(chunks[0][k]) >= 1}
        neighbours = {}
        if source.layout != "files":  # the 2-D neighbourhood: the neighbour pass, each grain's support
            from edorient.indexing.refine import proper_rotations
            from edorient.structures import get_crystal

            proper = proper_rotations(get_crystal(settings.crystal).laue)
            if settings.neighbours_for(source.layout) and "spots_working_px" in results:
                t1 = time.perf_counter()
                neighbours = _neighbour_pass(out, source, used, compute, results, client, proper)
                timings["neighbour_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            results["support"] = neighbour_support(results, source.shape, proper)
            timings["support_s"] = time.perf_counter() - t1
    finally:
        bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    compute_s = time.perf_counter() - t0
    run = MapRun(out, source, results, len(ranges), len(done), compute_s, n_computed, workers, timings, neighbours,
                 detector, {**thickness, "used_A": used.thickness}, disc, calib)
    if assemble:
        from edorient.mapping.outputs import write_outputs

        write_outputs(run, settings, compute, seed)
    return run
