"""On-disk layout of an edorient data set: atomic writes, checksums, meta.json.

A data set is a folder::

    DIR/meta.json                      format, configuration, counts, checksums
    DIR/images/shard_00000.npy         (k, H, W) fixed-size shards of *records*
    DIR/images/shard_00000.json        sidecar of a finished shard: count, bytes, sha256
    DIR/labels/rotations.npy           (M, g, 3, 3) float64 orientations R of every record
    DIR/labels/directions.npy          (M, g, 3) float32 beam directions, sector-reduced
    DIR/labels/inplane_deg.npy         (M, g) float32 in-plane angles (degrees)
    DIR/labels/ratio.npy               (M,) float32 intensity weight of grain A
    DIR/splits/...                     index files (see :mod:`edorient.data.splits`)

A *record* is one stored image: a single-crystal linear image in thesis mode (``g = 1``, the
pairs are composed when read), one finished image in random (``g = 2``) and single
(``g = 1``) modes. Every file is written to a temporary name in its folder and renamed, so a
file that exists is complete; a shard is finished once its sidecar exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edorient._utils.atomic import plain_file_mode
from edorient.errors import EdorientError

FORMAT = "edorient-dataset"
FORMAT_VERSION = 1
META = "meta.json"
IMAGES = "images"
LABELS = "labels"
SPLITS = "splits"
LABEL_FILES = ("rotations", "directions", "inplane_deg", "ratio")


def shard_name(k: int) -> str:
    """Relative path of shard ``k``'s image file."""
    return f"{IMAGES}/shard_{k:05d}.npy"


def sidecar_name(k: int) -> str:
    """Relative path of shard ``k``'s sidecar (written once the shard is complete)."""
    return f"{IMAGES}/shard_{k:05d}.json"


def label_name(name: str) -> str:
    return f"{LABELS}/{name}.npy"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _replace(tmp: Path, path: Path) -> None:
    os.chmod(tmp, plain_file_mode(path))  # as open(path, "w"): kept if it exists, else 0666 & ~umask
    os.replace(tmp, path)
    try:  # make the rename durable; not every file system lets a folder be opened
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platform dependent
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _replace(tmp, path)


def atomic_write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (the same object, the same bytes)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> dict:
    """Save ``array`` as .npy atomically; return ``{"bytes": n, "sha256": hex}`` of the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    array = np.ascontiguousarray(array)
    with open(tmp, "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    info = {"bytes": tmp.stat().st_size, "sha256": sha256_file(tmp)}
    _replace(tmp, path)
    return info


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in 4 MiB chunks (flat memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remove_stale_tmp(folder: str | Path) -> int:
    """Delete temporary files left by a killed writer; return how many."""
    n = 0
    for sub in (Path(folder), Path(folder) / IMAGES, Path(folder) / LABELS):
        if sub.is_dir():
            for p in sub.glob(".*.tmp-*"):
                p.unlink(missing_ok=True)
                n += 1
    return n


def read_meta(root: str | Path) -> dict:
    """meta.json of the data set at ``root``; EdorientError if ``root`` is not a data set."""
    root = Path(root)
    if not root.exists():
        raise EdorientError(f"data set folder not found: {root} (check the path or run edorient generate)")
    if not root.is_dir():
        raise EdorientError(f"{root} is a file, not a data-set folder (give the folder edorient generate wrote)")
    path = root / META
    if not path.is_file():
        raise EdorientError(f"{root} is not an edorient data set (no {META}); run edorient generate --out {root}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdorientError(f"{path} is unreadable ({exc}); regenerate the data set") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EdorientError(f"{path} is not an edorient data-set description; regenerate the data set")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise EdorientError(
            f"{root} uses data-set format {meta.get('format_version')}, newer than this edorient "
            f"reads ({FORMAT_VERSION}); upgrade edorient"
        )
    return meta


def inside(root: Path, rel: str) -> Path:
    """``root / rel``, refused unless it stays inside the data set (meta.json names files by
    relative paths; ``../../etc/passwd`` or an absolute path there is a lying or hostile meta.json)."""
    root = Path(root)
    path = root / str(rel)
    if Path(str(rel)).is_absolute() or not path.resolve().is_relative_to(root.resolve()):
        raise EdorientError(f"{root / META} names a file outside the data set ({rel!r}); the data set is "
                            "damaged or not edorient's: regenerate it")
    return path


def check_file(root: Path, rel: str, expected: dict, full: bool) -> None:
    """Check a file against ``{"bytes", "sha256"}``; EdorientError naming it and the fix."""
    path = inside(root, rel)
    fix = f"rerun edorient generate with the same arguments to rebuild it (delete {path} first)"
    if not path.is_file():
        raise EdorientError(f"missing file {path} of data set {root}; {fix}")
    size = path.stat().st_size
    if size != int(expected["bytes"]):
        raise EdorientError(
            f"{path} is truncated or altered: {size} bytes, checksum record says "
            f"{expected['bytes']}; {fix}"
        )
    if full and sha256_file(path) != expected["sha256"]:
        raise EdorientError(f"{path} is corrupt: its SHA-256 differs from the one in {META}; {fix}")


# -- what meta.json may say ----------------------------------------------------------------------
#: Keys of meta.json and their JSON types (bool is not an int here).
META_KEYS = {
    "mode": str, "n_grains": int, "n_records": int, "n_samples": int, "image_size": int, "dtype": str,
    "intensity": str, "shard_size": int, "n_shards": int, "seed": int, "config": dict, "files": dict,
    "complete": bool, "shards": list,
}
#: Fields of meta.json repeated in its ``config`` (the generation settings) under these names.
_CONFIG_ECHO = {"mode": "mode", "n_records": "n", "image_size": "image_size", "dtype": "dtype",
                "shard_size": "shard_size", "seed": "seed"}


def _is(value, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_meta(root: str | Path, meta: dict) -> None:
    """Check that meta.json is complete and consistent with itself (keys, types, counts, dtype,
    mode, shard list); EdorientError naming the file and what is wrong. No file is read."""
    from edorient.data.generate import DTYPES, MODES
    from edorient.data.pairs import n_pairs

    path = Path(root) / META
    fix = "the data set is damaged or meta.json was edited: regenerate it"
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise EdorientError(f"{path} lacks {', '.join(missing)}; {fix}")
    bad = [k for k, kind in META_KEYS.items() if not _is(meta[k], kind)]
    if bad:
        raise EdorientError(f"{path} has {', '.join(f'{k} = {meta[k]!r}' for k in bad)} of the wrong type; {fix}")

    for rel in [*meta["files"], *(s.get("file", "") for s in meta["shards"] if isinstance(s, dict))]:
        inside(root, rel)  # a file outside the data set: a lying or hostile meta.json

    def lie(text: str) -> EdorientError:
        return EdorientError(f"{path} says {text}; {fix}")

    mode = meta["mode"]
    if mode not in MODES:
        raise lie(f"mode {mode!r}, not one of {', '.join(MODES)}")
    cfg = meta["config"]
    for key, ckey in _CONFIG_ECHO.items():
        if ckey in cfg and cfg[ckey] != meta[key]:
            raise lie(f"{key} {meta[key]!r} but its config says {ckey} {cfg[ckey]!r}")
    n, size, shard = meta["n_records"], meta["image_size"], meta["shard_size"]
    if n < 2 or size < 1 or shard < 1:
        raise lie(f"n_records {n}, image_size {size}, shard_size {shard} (all must be positive, n_records >= 2)")
    if meta["dtype"] not in DTYPES[mode]:
        raise lie(f"mode {mode!r} with dtype {meta['dtype']!r} (stored as {' or '.join(DTYPES[mode])})")
    grains = 1 if mode == "single" else 2
    if meta["n_grains"] != grains:
        raise lie(f"mode {mode!r} with n_grains {meta['n_grains']} (it has {grains})")
    intensity = "linear" if mode == "thesis" else "display"
    if meta["intensity"] != intensity:
        raise lie(f"mode {mode!r} with intensity {meta['intensity']!r} (it stores {intensity})")
    samples = n_pairs(n) if mode == "thesis" else n
    if meta["n_samples"] != samples:
        raise lie(f"n_samples {meta['n_samples']} for {n} records in mode {mode!r} (that makes {samples})")
    if meta["n_shards"] != -(-n // shard):
        raise lie(f"n_shards {meta['n_shards']} for {n} records of {shard} per shard (that makes {-(-n // shard)})")
    for name in LABEL_FILES:
        info = meta["files"].get(label_name(name))
        if not (isinstance(info, dict) and _is(info.get("bytes"), int) and isinstance(info.get("sha256"), str)):
            raise lie(f"nothing usable about {label_name(name)}")
    if meta["complete"]:
        if len(meta["shards"]) != meta["n_shards"]:
            raise lie(f"complete with {len(meta['shards'])} shards listed of {meta['n_shards']}")
        for k, s in enumerate(meta["shards"]):
            count = min(shard, n - k * shard)
            if not (isinstance(s, dict) and s.get("file") == shard_name(k) and s.get("count") == count
                    and _is(s.get("bytes"), int) and isinstance(s.get("sha256"), str)):
                raise lie(f"shard {k} is {s!r}, expected {shard_name(k)} with {count} records, bytes and sha256")


def npy_header(path: Path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of a .npy file from its header (the data is not read)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def check_arrays(root: str | Path, meta: dict) -> None:
    """Check every shard's and label file's shape and dtype against meta.json (headers only);
    EdorientError naming the file, what it holds and what meta.json says."""
    root = Path(root)
    n, size, shard = meta["n_records"], meta["image_size"], meta["shard_size"]
    g = 2 if meta["mode"] == "random" else 1
    expected = {
        label_name("rotations"): ((n, g, 3, 3), "float64"),
        label_name("directions"): ((n, g, 3), "float32"),
        label_name("inplane_deg"): ((n, g), "float32"),
        label_name("ratio"): ((n,), "float32"),
    }
    for k in range(meta["n_shards"]):
        expected[shard_name(k)] = ((min(shard, n - k * shard), size, size), meta["dtype"])
    for rel, (shape, dtype) in expected.items():
        path = inside(root, rel)
        try:
            got_shape, got_dtype = npy_header(path)
        except FileNotFoundError:
            raise EdorientError(f"missing file {path} of data set {root}; rerun edorient generate with the same "
                                "arguments to rebuild it") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise EdorientError(f"{path} is not a readable .npy file ({exc}); rerun edorient generate with the "
                                "same arguments to rebuild it") from None
        if got_shape != shape or got_dtype != np.dtype(dtype):
            raise EdorientError(
                f"{path} holds {'x'.join(map(str, got_shape)) or 'a scalar'} {got_dtype}, but {root / META} says "
                f"{'x'.join(map(str, shape))} {np.dtype(dtype)}; the data set is damaged or meta.json was edited: "
                "regenerate it")
