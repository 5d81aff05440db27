"""Generate a data set on disk: several processes, one shard per task, resumable.

Reproducibility
---------------
Every random draw comes from a stream ``SeedSequence(seed, spawn_key=key)``:

- ``(0,)``: the orientations (beam directions uniform over the sphere, in-plane angles
  uniform in [0, 360) unless fixed: uniform over SO(3); labels are the sector-reduced beam
  directions) and intensity ratios of all records, drawn at once
  in the main process before any shard is rendered;
- ``(1, record)``: the noise of one record;
- ``(10..12, ...)``: the splits (:mod:`edorient.data.splits`).

A shard holds the records ``[k S, (k+1) S)`` for a fixed shard size ``S`` and is rendered in
fixed chunks, so the bytes do not depend on the number of workers, on which machine renders
which shard (``shard_index/num_shards``), or on a resume after a kill.

Safety
------
A run claims its folder for its whole length: ``DIR/.generate.lock`` holds its pid under an
exclusive ``fcntl.flock``, so a second run on the same folder (another seed, or the same
arguments) is refused in one line instead of mixing two data sets; the lock of a killed run is
released by the kernel and taken over. Temporaries of killed writes are removed on start. A
worker process that dies (the out-of-memory killer) ends the run with one line
(:class:`~edorient.errors.EdorientError`) that says to rerun; the rerun resumes. Workers start
with SIGINT blocked (Ctrl-C stops the main process, which ends them: one line, no worker
tracebacks) and exit when the main process is gone (no orphans after a ``kill -9``).

Modes
-----
``thesis``
    ``n`` single-crystal orientations stored in *linear* intensity (float32 by default: 200 MB
    for N = 1,000 at 224 x 224, read without conversion; float16 on request); the
    C(n, 2) pairs are composed ``0.5 A + 0.5 B`` and display-transformed when read.
``random``
    ``n`` bicrystal images, two fresh orientations each, the weight ``r`` of grain A fixed or
    uniform in a range, optional Poisson noise; stored after the display transform (uint8 by
    default, float16 on request).
``single``
    ``n`` single-crystal images (the single-crystal CNN of Method 2), stored as random mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import multiprocessing as mp
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edorient
from edorient._utils.outputs import MARKER, claim_output_dir
from edorient._utils.resources import format_bytes, require_disk, require_memory
from edorient._utils.rng import seeded_rng
from edorient.data import _storage as st
from edorient.data import splits as sp
from edorient.data.pairs import n_pairs
from edorient.errors import EdorientError, check_finite

log = logging.getLogger(__name__)

MODES = ("thesis", "random", "single")
DTYPES = {"thesis": ("float32", "float16"), "random": ("uint8", "float16"), "single": ("uint8", "float16")}
DEFAULT_SHARD_SIZE = {"thesis": 100, "random": 1000, "single": 1000}
#: Records rendered per call of the simulator inside a shard (fixed: part of the bytes' recipe).
CHUNK = 32
_KEY_ORIENT, _KEY_NOISE = 0, 1


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate (everything that determines the bytes of a data set).

    Attributes
    ----------
    mode
        ``"thesis"``, ``"random"`` or ``"single"``.
    n
        Thesis mode: number of single-crystal orientations N (C(N, 2) pairs); other modes:
        number of images.
    crystal
        ``"anatase"`` or the path to a CIF file.
    image_size
        Image side (pixels).
    simulation
        Other :class:`edorient.render.SimulationConfig` fields (``voltage_kv``, ``thickness``,
        ``shape``, ``spot_sigma_px``, ...).
    seed
        Seed of every random draw.
    shard_size
        Records per shard; ``None``: 100 in thesis mode, 1000 otherwise.
    dtype
        Stored dtype; ``None``: float32 (linear) in thesis mode, uint8 (display) otherwise.
    inplane_deg
        Fixed in-plane angle (degrees) of every grain; ``None`` draws it uniformly.
    ratio
        ``(lo, hi)``: the weight of grain A, fixed when ``lo == hi``, else uniform in
        ``[lo, hi]`` (random mode; thesis pairs are always 0.5).
    noise_dose
        Poisson noise, counts at intensity 1 (:func:`edorient.render.add_noise`); ``None``
        for no noise (random and single modes). A pair ``(lo, hi)`` draws each image's dose
        log-uniformly in ``[lo, hi]`` (from the image's own random stream).
    noise_background
        Uniform linear background added before the noise; a pair ``(lo, hi)`` draws it
        uniformly per image.
    test_fraction, holdout_fraction, val_fraction
        Split parameters (:func:`edorient.data.splits.make_splits`).
    image_source
        ``"module:function"`` replacing the simulator, called as ``f(rotations (n, 3, 3),
        image_size) -> (n, H, W) float32`` linear images (for tests); ``None``: the simulator.
    """

    mode: str = "thesis"
    n: int = 1000
    crystal: str = "anatase"
    image_size: int = 224
    simulation: dict = field(default_factory=dict)
    seed: int = 0
    shard_size: int | None = None
    dtype: str | None = None
    inplane_deg: float | None = None
    ratio: tuple[float, float] = (0.5, 0.5)
    noise_dose: float | tuple[float, float] | None = None
    noise_background: float | tuple[float, float] = 0.0
    test_fraction: float = sp.THESIS_TEST_FRACTION
    holdout_fraction: float | None = None
    val_fraction: float = sp.VAL_FRACTION
    image_source: str | None = None

    def resolved(self) -> "GenerateConfig":
        """A copy with the defaults filled in, validated (EdorientError on bad values)."""
        if self.mode not in MODES:
            raise EdorientError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        n = int(self.n)
        if self.mode == "thesis" and n < 2:
            raise EdorientError(f"thesis mode needs N >= 2 orientations to make pairs, got {n}")
        if n < 2:
            raise EdorientError(f"need at least 2 images (train and test), got n = {n}")
        shard = DEFAULT_SHARD_SIZE[self.mode] if self.shard_size is None else int(self.shard_size)
        if shard < 1:
            raise EdorientError(f"shard size must be >= 1 record, got {shard}")
        dtype = DTYPES[self.mode][0] if self.dtype is None else str(self.dtype)
        if dtype not in DTYPES[self.mode]:
            raise EdorientError(
                f"dtype {dtype!r} is not stored in {self.mode} mode: choose one of "
                f"{', '.join(DTYPES[self.mode])}"
            )
        lo, hi = (float(x) for x in self.ratio)
        check_finite("ratio", [lo, hi])
        if not 0.0 <= lo <= hi <= 1.0:
            raise EdorientError(f"intensity ratio range must satisfy 0 <= lo <= hi <= 1, got {lo}:{hi}")
        if self.mode != "random" and (lo, hi) != (0.5, 0.5):
            raise EdorientError(f"--ratio applies to random mode only (thesis pairs are 0.5:0.5), got {lo}:{hi}")
        dose = None if self.noise_dose is None else _value_or_range("noise dose", self.noise_dose)
        if dose is not None:
            if self.mode == "thesis":
                raise EdorientError("noise is not stored in thesis mode (pairs are composed when read); drop --dose")
            if min(np.atleast_1d(dose)) <= 0:
                raise EdorientError(f"noise dose must be > 0 counts, got {self.noise_dose}")
        background = _value_or_range("noise background", self.noise_background)
        if min(np.atleast_1d(background)) < 0:
            raise EdorientError(f"noise background must be >= 0, got {self.noise_background}")
        if self.inplane_deg is not None:
            check_finite("in-plane angle", self.inplane_deg)
        return dataclasses.replace(
            self, n=n, shard_size=shard, dtype=dtype, ratio=(lo, hi), seed=int(self.seed),
            image_size=int(self.image_size), simulation=dict(self.simulation),
            inplane_deg=None if self.inplane_deg is None else float(self.inplane_deg) % 360.0,
            noise_dose=dose, noise_background=background,
        )

    @property
    def grains_per_record(self) -> int:
        """Grains of one stored image: 2 in random mode, else 1 (thesis pairs are composed later)."""
        return 2 if self.mode == "random" else 1

    @property
    def n_shards(self) -> int:
        return -(-int(self.n) // int(self.shard_size))


def _simulation_config(cfg: GenerateConfig):
    from edorient.render import SimulationConfig

    try:
        return SimulationConfig(image_size=cfg.image_size, **cfg.simulation)
    except TypeError as exc:
        raise EdorientError(f"bad simulation parameter ({exc}); see edorient.render.SimulationConfig") from None


def _crystal_meta(name: str) -> tuple[dict, object]:
    from edorient.structures import get_crystal

    xtal = get_crystal(name)
    info = {
        "name": xtal.name,
        "source": "built-in" if str(name).lower() == "anatase" else str(Path(name).resolve()),
        "cell": [float(x) for x in xtal.cell],
        "space_group": xtal.space_group,
        "laue_group": xtal.laue.name,
    }
    if info["source"] != "built-in":
        info["cif_sha256"] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
    return info, xtal


def dataset_config(cfg: GenerateConfig) -> dict:
    """The JSON description of ``cfg`` stored in meta.json (resolved; compared on resume)."""
    cfg = cfg.resolved()
    crystal, _ = _crystal_meta(cfg.crystal)
    d = dataclasses.asdict(cfg)
    d["ratio"] = list(cfg.ratio)
    for key in ("noise_dose", "noise_background"):  # ranges as JSON lists, as read back on resume
        if isinstance(d[key], tuple):
            d[key] = list(d[key])
    d["crystal"] = crystal
    d["simulation"] = _simulation_config(cfg).to_dict()
    d["edorient_version"] = edorient.__version__
    return d


def _value_or_range(name: str, value) -> float | tuple[float, float]:
    """A number, or ``(lo, hi)`` with lo <= hi; a pair with lo == hi is that number."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise EdorientError(f"{name} must be a number or a (lo, hi) pair, got {value!r}")
        lo, hi = (float(v) for v in value)
        check_finite(name, [lo, hi])
        if lo > hi:
            raise EdorientError(f"{name} range must have lo <= hi, got {lo}:{hi}")
        return lo if lo == hi else (lo, hi)
    check_finite(name, value)
    return float(value)


# -- orientations and labels -------------------------------------------------------------------
def _rng(seed: int, *key: int) -> np.random.Generator:
    return seeded_rng(seed, *key)


def sample_labels(
    cfg: GenerateConfig, laue, rng: np.random.Generator | None = None, m: int | None = None
) -> dict[str, np.ndarray]:
    """Orientations and labels of ``m`` records (default all ``cfg.n``, stream ``(seed, 0)``).

    Returns ``rotations`` (M, g, 3, 3) float64, uniform over SO(3) when the in-plane angle is
    drawn; ``directions`` (M, g, 3) float32 (sector-reduced beam directions: the labels);
    ``inplane_deg`` (M, g) float32, the in-plane angle of ``R`` about its own unreduced beam
    direction (``R = rotation_from_direction(R[2], inplane_deg)``); ``ratio`` (M,) float32 (weight
    of grain A; 1 for single-crystal records).
    """
    from edorient.physics.orientation import rotation_from_direction

    cfg = cfg.resolved()
    rng = _rng(cfg.seed, _KEY_ORIENT) if rng is None else rng
    m, g = (cfg.n if m is None else int(m)), cfg.grains_per_record
    # The beam direction uniform on the whole sphere and the in-plane angle uniform: R is
    # uniform (Haar) over SO(3). Sampling the direction in the Laue sector only would cover
    # half of the orientations: those reaching the sector through an improper operation give
    # the mirror images of every pattern, with the same label (LaueGroup.reduce_proper).
    d = rng.standard_normal((m * g, 3)).reshape(m, g, 3)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    if cfg.inplane_deg is None:
        theta = rng.uniform(0.0, 360.0, size=(m, g))
    else:
        theta = np.full((m, g), cfg.inplane_deg)
    lo, hi = cfg.ratio
    if cfg.mode != "random":
        ratio = np.ones(m)
    elif lo == hi:
        ratio = np.full(m, lo)
    else:
        ratio = rng.uniform(lo, hi, size=m)
    rot = rotation_from_direction(d, theta)
    return {
        "rotations": rot.astype(np.float64),
        "directions": laue.reduce(d).astype(np.float32),
        "inplane_deg": theta.astype(np.float32),
        "ratio": ratio.astype(np.float32),
    }


# -- rendering ---------------------------------------------------------------------------------
class Renderer:
    """Turns records (orientations, ratio) into stored images; one per worker process."""

    def __init__(self, cfg: GenerateConfig):
        self.cfg = cfg = cfg.resolved()
        if cfg.image_source:
            mod, _, fn = cfg.image_source.partition(":")
            func = getattr(importlib.import_module(mod), fn)
            self._linear = lambda R: np.asarray(func(R, cfg.image_size), dtype=np.float32)
        else:
            from edorient.render import Simulator
            from edorient.structures import get_crystal

            sim = Simulator(get_crystal(cfg.crystal), _simulation_config(cfg))
            self._linear = sim.linear_images

    def linear(self, rotations: np.ndarray) -> np.ndarray:
        """Linear images (n, H, W) float32 of rotations (n, 3, 3)."""
        return self._linear(np.asarray(rotations, dtype=np.float64))

    def records(self, rotations: np.ndarray, ratio: np.ndarray, record_ids, rngs=None) -> np.ndarray:
        """Stored images of records: rotations (m, g, 3, 3), ratio (m,).

        The noise of record ``i`` comes from ``rngs[i]`` if given, else from the stream
        ``(seed, 1, record_ids[i])``.
        """
        from edorient.render import add_noise, display_transform, to_uint8

        cfg = self.cfg
        image = self.linear(rotations[:, 0])
        if cfg.mode == "thesis":
            return image.astype(cfg.dtype)
        if cfg.grains_per_record == 2:
            r = np.asarray(ratio, dtype=np.float32)[:, None, None]
            image = (r * image + (np.float32(1.0) - r) * self.linear(rotations[:, 1])).astype(np.float32)
        if cfg.noise_dose is not None:
            for i, rid in enumerate(record_ids):
                rng = rngs[i] if rngs is not None else _rng(cfg.seed, _KEY_NOISE, int(rid))
                dose, background = cfg.noise_dose, cfg.noise_background
                if isinstance(dose, tuple):  # log-uniform, drawn before anything else of the record
                    dose = float(np.exp(rng.uniform(np.log(dose[0]), np.log(dose[1]))))
                if isinstance(background, tuple):
                    background = float(rng.uniform(*background))
                image[i] = add_noise(image[i], dose, background, rng)
        shown = display_transform(image, out=image)  # image is this function's own array
        return to_uint8(shown) if cfg.dtype == "uint8" else shown.astype(np.float16)


_WORKER: dict = {}


def _init_worker(cfg: GenerateConfig, root: str) -> None:
    _WORKER["renderer"] = Renderer(cfg)
    _WORKER["root"] = Path(root)


def _init_pool_worker(cfg: GenerateConfig, root: str, parent: int) -> None:
    """A pool worker's initializer: :func:`_init_worker`, and exit once ``parent`` is gone (a
    SIGKILLed run would otherwise leave its workers waiting for tasks for ever, holding memory
    and the run's stdout/stderr: ``generate ... | tee log`` would never end)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already blocked (see _sigint_blocked): the main process handles it
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _init_worker(cfg, root)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back while the block runs: it is raised (as KeyboardInterrupt) on leaving.

    A KeyboardInterrupt in the middle of starting a worker would leave it reading a truncated
    handshake (an ``EOFError`` traceback from the worker).
    """
    held: list[int] = []
    swap = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None
    old = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum)) if swap else None
    try:
        yield
    finally:
        if swap:
            signal.signal(signal.SIGINT, old)
    if held and callable(old):  # default_int_handler raises KeyboardInterrupt
        old(signal.SIGINT, None)
    elif held and old == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while the block runs; processes started meanwhile keep it
    blocked (the mask survives fork and exec).

    A Ctrl-C reaches every process of the job: workers that do not block it print tracebacks
    (while importing, or waiting for a task). Only the main process handles it: it ends the
    workers and says so in one line.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _render_shard(k: int) -> tuple[int, int]:
    renderer: Renderer = _WORKER["renderer"]
    root: Path = _WORKER["root"]
    cfg = renderer.cfg
    lo, hi = k * cfg.shard_size, min((k + 1) * cfg.shard_size, cfg.n)
    rot = np.load(root / st.label_name("rotations"), mmap_mode="r")
    ratio = np.load(root / st.label_name("ratio"), mmap_mode="r")
    out = np.empty((hi - lo, cfg.image_size, cfg.image_size), dtype=cfg.dtype)
    for a in range(lo, hi, CHUNK):
        b = min(a + CHUNK, hi)
        out[a - lo : b - lo] = renderer.records(np.array(rot[a:b]), np.array(ratio[a:b]), np.arange(a, b))
    info = st.atomic_save_npy(root / st.shard_name(k), out)
    st.atomic_write_json(root / st.sidecar_name(k), {"count": hi - lo, **info})
    return k, hi - lo


# -- claiming the folder, temporaries -----------------------------------------------------------
LOCK = ".generate.lock"
#: Shard files and sidecars as :mod:`edorient.data._storage` names them.
_SHARD_FILE = re.compile(r"^shard_\d{5}\.(npy|json)$")
#: Temporaries of :mod:`edorient.data._storage` writes: ``.NAME.tmp-PID``.
_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


def _lock_holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on the open lock file ``fd``; False if another run holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # no flock on this file system: fall back to the pid written in the file
            pass
    pid = _lock_holder(fd)
    return pid is None or (pid != os.getpid() and not _pid_alive(pid))


@contextmanager
def claim_folder(root: Path) -> Iterator[None]:
    """Hold ``root/.generate.lock`` (exclusive, holding this pid) while the block runs.

    EdorientError naming the holder if another run holds it. A lock left by a killed run is
    taken over (the kernel released its flock; without flock: its pid is no longer alive).
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            locked = _try_lock(fd)
            if not locked:
                pid = _lock_holder(fd)
                raise EdorientError(
                    f"{root} is being written by another edorient generate "
                    f"({'pid ' + str(pid) if pid else 'starting'}); wait for it to finish, "
                    "or give another --out"
                )
            try:  # the holder may have finished and removed the file between our open and lock
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        try:
            path.unlink()  # still ours: we hold the lock
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporaries left by killed writers (meta, labels, shards, split index files).

    Call with the folder claimed. Under splits/ only those of dead processes go: ``edorient
    cluster`` may be writing subset files there without the claim.
    """
    n = st.remove_stale_tmp(root)
    if (root / st.SPLITS).is_dir():
        for p in (root / st.SPLITS).rglob(".*.tmp-*"):
            m = _TEMPORARY.match(p.name)
            if m and p.is_file() and not _pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                n += 1
    return n


def _render_in_pool(cfg: GenerateConfig, root: Path, todo: list[int], workers: int, bar) -> None:
    """Render ``todo`` in ``workers`` spawned processes; EdorientError if one of them dies."""
    pool = None
    try:
        with _interrupts_held():
            pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                       initializer=_init_pool_worker, initargs=(cfg, str(root), os.getpid()))
            # the workers start on submit, with Ctrl-C blocked; not around the constructor, where
            # multiprocessing's resource tracker starts and unblocks SIGINT whatever it was
            with _sigint_blocked():
                futures = [pool.submit(_render_shard, k) for k in todo]
        for fut in as_completed(futures):
            fut.result()
            bar.update()
    except BaseException as exc:
        if pool is None:
            raise
        procs = list((getattr(pool, "_processes", None) or {}).values())  # no public terminate before 3.14
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        if isinstance(exc, BrokenProcessPool):
            raise EdorientError(
                f"a worker process of edorient generate died (killed, e.g. by the out-of-memory "
                f"killer?) while writing {root}; the finished shards are kept: rerun the same "
                "command to resume (with fewer --workers if memory ran out)"
            ) from None
        raise
    pool.shutdown(wait=True)


# -- what it takes --------------------------------------------------------------------------------
#: Bytes per label entry of a record and grain: rotations (9 float64), directions (3 float32),
#: in-plane angle (float32); the ratio (float32) is per record.
_LABEL_BYTES = 9 * 8 + 3 * 4 + 4
#: Index files and in-memory arrays of :func:`edorient.data.splits.make_splits` per sample:
#: trainval/test, train/val, the test subsets and two subset schemes (each a subset and its own
#: train/val), for both splits (about 10 ids per sample stored), and at its peak int64 copies,
#: permutations and the shuffled schemes (about 12 int64 per sample held at once).
_SPLIT_IDS_ON_DISK = 10
_SPLIT_INT64_IN_MEMORY = 12


def resource_estimate(cfg: GenerateConfig, workers: int = 1) -> dict[str, int]:
    """Bytes a data set takes: ``disk`` (shards, labels, index files) and ``memory`` (the
    largest in-memory step: labels and splits made at once, or the shard buffers of the
    workers)."""
    cfg = cfg.resolved()
    n, g, size = int(cfg.n), cfg.grains_per_record, int(cfg.image_size)
    itemsize = np.dtype(cfg.dtype).itemsize
    n_samples = n_pairs(n) if cfg.mode == "thesis" else n
    id_bytes = 4 if n_samples < 2**31 else 8
    labels = n * (g * _LABEL_BYTES + 4)
    disk = n * size * size * itemsize + labels + n_samples * id_bytes * _SPLIT_IDS_ON_DISK
    records = min(int(cfg.shard_size), n)
    shard_buffers = workers * records * size * size * (itemsize + 4)  # a shard and a float32 chunk
    memory = max(2 * labels + n_samples * 8 * _SPLIT_INT64_IN_MEMORY, shard_buffers)
    return {"disk": int(disk), "memory": int(memory), "shard_buffers": int(shard_buffers), "n_samples": int(n_samples)}


def check_resources(cfg: GenerateConfig, root: Path, workers: int = 1) -> None:
    """EdorientError, before anything is allocated or written, if the data set ``cfg`` cannot
    fit on the disk holding ``root`` (less what a resumed run already wrote) or its largest
    in-memory step in this machine's RAM."""
    cfg = cfg.resolved()
    est = resource_estimate(cfg, workers)
    if cfg.mode == "thesis":
        what = (f"thesis mode with N = {cfg.n:,} orientations (C(N,2) = {est['n_samples']:,} pairs) of "
                f"{cfg.image_size} px {cfg.dtype}")
        fix = "use fewer orientations (-n)"
    else:
        what = f"{cfg.n:,} {cfg.mode} images of {cfg.image_size} px {cfg.dtype}"
        fix = "use fewer images (-n) or a smaller --size"
    have = 0
    if root.is_dir():  # a resumed run: what is written already counts
        for sub in (st.IMAGES, st.LABELS, st.SPLITS):
            if (root / sub).is_dir():
                have += sum(p.stat().st_size for p in (root / sub).rglob("*") if p.is_file())
    require_disk(est["disk"] - have, root, what, fix)
    if est["shard_buffers"] >= est["memory"]:
        fix = (f"use a smaller --shard-size or fewer --workers ({workers} x "
               f"{format_bytes(est['shard_buffers'] / workers)} of shard buffers)")
    elif cfg.mode == "thesis":
        fix = f"{fix} (the index files of the pairs are made in memory)"
    require_memory(est["memory"], what, fix)


# -- the driver --------------------------------------------------------------------------------
def shard_done(root: Path, k: int, verify: bool = False) -> bool:
    """Whether shard ``k`` is finished: sidecar present, file of the recorded size (and hash)."""
    side = root / st.sidecar_name(k)
    if not side.is_file():
        return False
    import json

    try:
        info = json.loads(side.read_text())
        st.check_file(root, st.shard_name(k), info, full=verify)
    except (ValueError, KeyError, EdorientError):
        return False
    return True


def _prepare(root: Path, cfg: GenerateConfig, config_json: dict) -> dict:
    """Create or check the folder; write labels, splits and an incomplete meta.json."""
    meta_path = root / st.META
    if meta_path.is_file():
        meta = st.read_meta(root)
        st.check_meta(root, meta)
        if meta.get("config") != config_json:
            old, new = meta.get("config", {}), config_json
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise EdorientError(
                f"{root} holds a different data set (differs in: {', '.join(diff)}); "
                "use a new --out, or the same arguments to resume"
            )
        for rel, info in meta["files"].items():
            st.check_file(root, rel, info, full=False)
        return meta
    if root.exists():
        if not root.is_dir():
            raise EdorientError(f"--out {root} is a file; give a folder")
        extra = [p.name for p in root.iterdir()
                 if p.name not in (st.IMAGES, st.LABELS, st.SPLITS, LOCK, MARKER) and not _TEMPORARY.match(p.name)]
        if extra:
            raise EdorientError(
                f"--out {root} is a non-empty folder that is not an edorient data set "
                f"(holds {extra[0]!r}); give a new or empty folder"
            )
    (root / st.IMAGES).mkdir(parents=True, exist_ok=True)
    for stale in (root / st.IMAGES).iterdir():  # no meta.json: no shard here can be trusted
        if _SHARD_FILE.match(stale.name) and stale.is_file():  # edorient's names only
            stale.unlink()
    _, xtal = _crystal_meta(cfg.crystal)
    labels = sample_labels(cfg, xtal.laue)
    files = {st.label_name(k): st.atomic_save_npy(root / st.label_name(k), v) for k, v in labels.items()}
    n_samples = n_pairs(cfg.n) if cfg.mode == "thesis" else cfg.n
    split_files = sp.make_splits(
        cfg.mode, cfg.n, n_samples, cfg.seed, test_fraction=cfg.test_fraction,
        holdout_fraction=cfg.holdout_fraction, val_fraction=cfg.val_fraction,
    )
    sp.save_splits(root, split_files)
    meta = {
        "format": st.FORMAT,
        "format_version": st.FORMAT_VERSION,
        "config": config_json,
        "mode": cfg.mode,
        "n_grains": 2 if cfg.mode in ("thesis", "random") else 1,
        "n_records": cfg.n,
        "n_samples": n_samples,
        "image_size": cfg.image_size,
        "dtype": cfg.dtype,
        "intensity": "linear" if cfg.mode == "thesis" else "display",
        "shard_size": cfg.shard_size,
        "n_shards": cfg.n_shards,
        "seed": cfg.seed,
        "split_sizes": {
            split: {
                part: int(split_files[f"{split}/{part}.npy"].size)
                for part in ("trainval", "train", "val", "test")
            }
            for split in sp.SPLITS
        },
        "files": files,
        "complete": False,
        "shards": [],
    }
    st.atomic_write_json(meta_path, meta)
    return meta


def _finalize(root: Path, meta: dict) -> bool:
    import json

    shards = []
    for k in range(meta["n_shards"]):
        side = root / st.sidecar_name(k)
        if not side.is_file():
            return False
        shards.append({"file": st.shard_name(k), **json.loads(side.read_text())})
    if meta.get("complete") and meta.get("shards") == shards:
        return True
    meta = dict(meta, complete=True, shards=shards)
    st.atomic_write_json(root / st.META, meta)
    return True


def generate_dataset(
    config: GenerateConfig,
    out: str | Path,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    verify: bool = False,
    progress: bool = True,
) -> Path:
    """Generate (or resume) the data set ``config`` in the folder ``out``.

    Parameters
    ----------
    config
        What to generate.
    out
        Data-set folder; created if missing. A folder holding the same configuration is resumed
        (finished shards are kept); a different one is refused.
    workers
        Processes rendering shards (spawned; 1 renders in this process).
    shard_index, num_shards
        Render only shards ``k`` with ``k % num_shards == shard_index`` (split one data set
        across machines; copy the shard files into one folder and rerun once to finish).
    verify
        Hash finished shards before trusting them on resume (default: size check only).
    progress
        Show a progress bar (on stderr, when it is a terminal).

    Returns
    -------
    pathlib.Path
        ``out``. meta.json says ``"complete": true`` once every shard is present.
    """
    cfg = config.resolved()
    workers, num_shards, shard_index = int(workers), int(num_shards), int(shard_index)
    if workers < 1:
        raise EdorientError(f"--workers must be >= 1, got {workers}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise EdorientError(
            f"--shard-index must lie in [0, --num-shards), got {shard_index} of {num_shards}"
        )
    root = Path(out)
    config_json = dataset_config(cfg)
    if root.exists() and not root.is_dir():
        raise EdorientError(f"--out {root} is a file; give a folder")
    check_resources(cfg, root, workers)
    claim_output_dir(root, "dataset")  # a new or empty folder, or a data set: never a user's folder
    with claim_folder(root):  # one run per folder at a time
        return _generate(cfg, root, config_json, workers, shard_index, num_shards, verify, progress)


def _generate(cfg: GenerateConfig, root: Path, config_json: dict, workers: int, shard_index: int,
              num_shards: int, verify: bool, progress: bool) -> Path:
    meta = _prepare(root, cfg, config_json)
    gone = remove_stale_temporaries(root)  # nobody else writes here: they are a killed run's
    if gone:
        log.info("%s: removed %d temporary file(s) of a killed run", root, gone)
    mine = [k for k in range(cfg.n_shards) if k % num_shards == shard_index]
    todo = [k for k in mine if not shard_done(root, k, verify)]
    log.info(
        "%s: %d of %d shards to render (%d records of %d, %d workers)",
        root, len(todo), len(mine), sum(min(cfg.shard_size, cfg.n - k * cfg.shard_size) for k in todo),
        cfg.n, workers,
    )
    if todo:
        from edorient._utils.progress import progress_bar

        bar = progress_bar(total=len(todo), unit="shard", desc="generate", disable=not progress)
        try:
            if workers == 1 or len(todo) == 1:
                _init_worker(cfg, str(root))
                for k in todo:
                    _render_shard(k)
                    bar.update()
            else:
                _render_in_pool(cfg, root, todo, workers, bar)
        finally:
            bar.close()
            _WORKER.clear()
    if _finalize(root, meta):
        log.info("%s: complete (%d shards)", root, cfg.n_shards)
    else:
        missing = sum(not (root / st.sidecar_name(k)).is_file() for k in range(cfg.n_shards))
        log.warning(
            "%s: %d of %d shards still missing (other --shard-index parts); copy every part's "
            "images/ into one folder and rerun with the same arguments to finish meta.json",
            root, missing, cfg.n_shards,
        )
    return root
