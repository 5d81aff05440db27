"""Template dictionaries cached on disk, one per crystal, voltage and settings.

Building a dictionary simulates every template (about 1-2 s for 400 directions of a cubic
crystal on two cores); a second ``edorient predict`` on the same crystal, voltage, working
calibration and size loads it instead (tens of milliseconds). The cache key is a SHA-256 of
everything the templates depend on: the crystal's atoms, cell and symmetry, the simulation
settings, the polar grid, the directions and the package version. Files are plain ``.npy``
arrays read with ``allow_pickle=False`` and written atomically, so a killed run never leaves a
half-written entry; a damaged entry is rebuilt.

The folder is ``$EDORIENT_CACHE`` if set, else ``$XDG_CACHE_HOME/edorient``, else
``~/.cache/edorient``. An unwritable folder only means no cache (the dictionary is built each
time and a note says so).

The folder is kept under a size budget (``$EDORIENT_CACHE_MAX_GB``, default
:data:`DEFAULT_MAX_GB`): a dense dictionary is large (``edorient predict --grains 2``'s 6,400
directions: ~0.3 GB per working frame with the 61 angular frequencies it reads, ~0.9 GB with all
181; each detector geometry has its own frame), so after a new entry is written the least
recently used entries are deleted until the folder fits. A load marks its entry as used (its
modification time).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

#: Size budget of the cache folder (GB) unless ``$EDORIENT_CACHE_MAX_GB`` says otherwise.
DEFAULT_MAX_GB = 8.0

#: Bump when the template recipe changes in a way the key does not see.
RECIPE = 2  # 2: stored in the correlation layout (matching.correlation_layout)


def cache_dir() -> Path:
    """The folder that holds cached dictionaries (see the module docstring)."""
    env = os.environ.get("EDORIENT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edorient"


def dictionary_key(matcher) -> str:
    """SHA-256 of everything a matcher's templates depend on."""
    from edorient import __version__

    sim = matcher.scorer.simulator
    cr = sim.crystal
    cfg = asdict(sim.config)
    cfg["calibration"] = sim.config.resolved_calibration
    grid = matcher.scorer.grid
    h = hashlib.sha256()
    what = {"recipe": RECIPE, "version": __version__, "config": cfg,
            "crystal": [cr.name, list(cr.cell), cr.space_group],
            "grid": [grid.size, grid.n_r, grid.n_phi, grid.r_min, grid.smooth_px]}
    if getattr(matcher, "max_frequency", None) is not None:  # (absent: the full spectrum, the keys of before)
        what["max_frequency"] = matcher.max_frequency
    h.update(json.dumps(what, sort_keys=True, default=float).encode())
    for arr in (cr.numbers, cr.frac, cr.occupancy, cr.b_iso, matcher.directions):
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def load_or_build(matcher, chunk: int = 64) -> tuple[np.ndarray, Path | None, bool]:
    """The matcher's template FFTs in the layout its correlations multiply
    (:func:`~edorient.indexing.matching.correlation_layout`: conjugated, (n_k, m, n_r)) from the
    cache, or built and stored; (fft, file, hit)."""
    from edorient.indexing.matching import correlation_layout

    key = dictionary_key(matcher)
    path = cache_dir() / f"templates-{key}.npy"
    shape = (matcher.n_frequencies, len(matcher.directions), matcher.scorer.grid.n_r)
    if path.is_file():
        try:
            fft = np.load(path, allow_pickle=False, mmap_mode=None)
            if fft.shape == shape and fft.dtype == np.complex64 and np.all(np.isfinite(fft.view(np.float32))):
                _touch(path)
                return fft, path, True
        except (OSError, ValueError):
            pass  # damaged: rebuilt below
    fft = correlation_layout(matcher.build(chunk))
    try:
        from edorient._utils.atomic import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, fft, allow_pickle=False)
    except OSError:
        return fft, None, False
    evict(path.parent, keep=path)
    return fft, path, False


def max_cache_bytes() -> int:
    """The cache folder's budget in bytes (``$EDORIENT_CACHE_MAX_GB``, else :data:`DEFAULT_MAX_GB`)."""
    from edorient.errors import EdorientError

    raw = os.environ.get("EDORIENT_CACHE_MAX_GB")
    try:
        gb = DEFAULT_MAX_GB if raw in (None, "") else float(raw)
    except ValueError:
        gb = float("nan")
    if not gb >= 0:
        raise EdorientError(f"EDORIENT_CACHE_MAX_GB must be a number of gigabytes >= 0, got {raw!r}")
    return int(gb * 1e9)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def evict(folder: Path, keep: Path | None = None, budget: int | None = None) -> list[Path]:
    """Delete the least recently used cached dictionaries of ``folder`` (oldest modification time
    first, never ``keep``) until the folder's dictionaries fit in ``budget`` bytes (default
    :func:`max_cache_bytes`). Returns the deleted files."""
    budget = max_cache_bytes() if budget is None else int(budget)
    entries = []
    for f in Path(folder).glob("templates-*.npy"):
        try:
            st = f.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in entries)
    gone = []
    for _, size, f in sorted(entries, key=lambda e: e[0]):
        if total <= budget:
            break
        if keep is not None and f == keep:
            continue
        try:
            f.unlink()
        except OSError:
            continue
        total -= size
        gone.append(f)
    return gone
