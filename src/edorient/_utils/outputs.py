"""Output folders and files: edorient writes only into what it created, and says so in one line.

An output folder (a data set, a training run, an evaluation, K-means results, a demo, a
reproduction) holds a marker file, ``.edorient-output.json`` with its kind, written when the
folder is claimed by :func:`claim_output_dir`. A command writes into a folder only if it is new,
empty, or an edorient output of the same kind; a folder of another kind, or a non-empty folder
edorient did not write, is refused with one line (:class:`~edorient.errors.EdorientError`), so
nothing edorient writes replaces a file it did not create. Outputs made before the marker existed
are accepted when they are recognisably edorient's (a data set's meta.json, a run's
train_args.json, ...; see :func:`output_kind`), and get their marker then.

:func:`check_output_file` checks a file named on the command line (``--json``, ``--png``,
``--logfile``, ...) before any work: not a folder, in a folder that exists (or can be created)
and can be written, even by root (a probe file is created and removed).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from edorient.errors import EdorientError

MARKER = ".edorient-output.json"
MARKER_FORMAT = "edorient-output"

#: Kinds of output folders and how messages name them.
KINDS = {
    "dataset": "data set (edorient generate)",
    "run": "training run (edorient train)",
    "evaluation": "evaluation (edorient evaluate)",
    "clusters": "K-means output (edorient cluster)",
    "demo": "demo (edorient demo)",
    "reproduce": "reproduction (edorient reproduce)",
    "map": "orientation map (edorient map)",
    "predictions": "predictions of several files (edorient predict --out-dir)",
}

#: Temporaries of edorient's atomic writes: ``.NAME.tmp-PID`` and ``.NAME.RANDOM.tmp[.SUFFIX]``.
_TEMPORARY = re.compile(r"^\..+\.tmp(-\d+|\.\w*)?$")
_SHARD = re.compile(r"^shard_\d{5}\.(npy|json)$")
_LABEL = re.compile(r"^(rotations|directions|inplane_deg|ratio)\.npy$")


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _only(folder: Path, ok) -> bool:
    """Whether every entry under ``folder`` (recursively) is a folder or a file ``ok`` accepts."""
    try:
        for p in folder.rglob("*"):
            if p.is_file() and not (ok(p) or _TEMPORARY.match(p.name)):
                return False
    except OSError:
        return False
    return True


def _partial_dataset(folder: Path) -> bool:
    """A first ``generate`` killed before meta.json: only its folders, lock and temporaries,
    holding only files named as edorient names them."""
    allowed = {"images": lambda p: bool(_SHARD.match(p.name)), "labels": lambda p: bool(_LABEL.match(p.name)),
               "splits": lambda p: p.suffix == ".npy"}
    for p in folder.iterdir():
        if p.name in allowed and p.is_dir():
            if not _only(p, allowed[p.name]):
                return False
        elif not (p.name == ".generate.lock" or _TEMPORARY.match(p.name)) or p.is_dir():
            return False
    return True


def _config(folder: Path) -> dict:
    cfg = _json(folder / "config.json")
    return cfg if isinstance(cfg, dict) else {}


def _is_run(folder: Path) -> bool:
    args = _json(folder / "train_args.json")
    if isinstance(args, dict) and {"arch", "settings"} <= set(args):
        return True
    cfg = _config(folder)
    if isinstance(cfg.get("train"), dict) and isinstance(cfg.get("model"), dict):
        return True
    return any(_is_run(p) for p in folder.glob("stage_[0-9][0-9]") if p.is_dir())  # a fine-tuning root


_LEGACY = {
    "dataset": lambda f: (isinstance(m := _json(f / "meta.json"), dict) and m.get("format") == "edorient-dataset")
    or _partial_dataset(f),
    "run": _is_run,
    "evaluation": lambda f: isinstance(_config(f).get("evaluate"), dict),
    "clusters": lambda f: _config(f).get("command") == "cluster",
    "demo": lambda f: isinstance(_config(f).get("demo"), dict),
    "reproduce": lambda f: _config(f).get("command") == "reproduce",
}


def marker_kind(folder: str | os.PathLike) -> str | None:
    """The kind recorded in ``folder``'s marker file; None without a valid one."""
    m = _json(Path(folder) / MARKER)
    if isinstance(m, dict) and m.get("format") == MARKER_FORMAT and m.get("kind") in KINDS:
        return m["kind"]
    return None


def output_kind(folder: str | os.PathLike) -> str | None:
    """The kind of edorient output ``folder`` is (its marker, else what it holds), or None.

    An empty folder is None too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    kind = marker_kind(folder)
    if kind is not None:
        return kind
    try:
        if not any(folder.iterdir()):
            return None
        for name, test in _LEGACY.items():
            if test(folder):
                return name
    except OSError:
        return None
    return None


def _write_marker(folder: Path, kind: str, flag: str) -> None:
    from edorient import __version__
    from edorient._utils.atomic import atomic_write_text

    text = json.dumps({"format": MARKER_FORMAT, "kind": kind, "edorient_version": __version__}, indent=2) + "\n"
    try:
        atomic_write_text(folder / MARKER, text)
    except OSError as exc:
        raise EdorientError(f"cannot write into {flag} {folder} ({exc.strerror or exc}); give a folder you can "
                            "write to") from None


def claim_output_dir(folder: str | os.PathLike, kind: str, flag: str = "--out", create: bool = True) -> Path:
    """Make ``folder`` an edorient output of ``kind`` (creating it), or refuse in one line.

    Accepted: a missing or empty folder, or an edorient output of the same kind (marked, or
    recognisably edorient's from before the marker). Refused (EdorientError naming the folder):
    a file, an edorient output of another kind, a non-empty folder edorient did not write, a
    folder that cannot be created or written. With ``create=False`` only the checks run
    (ranks of a distributed run other than the writer).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    folder = Path(folder)
    what = KINDS[kind]
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise EdorientError(f"{flag} {folder} is a file, not a folder; give a folder for the {what}")
        found = output_kind(folder)
        if found is None:
            try:
                entries = sorted(p.name for p in folder.iterdir())
            except OSError as exc:
                raise EdorientError(f"cannot read {flag} {folder} ({exc.strerror}); give a folder you can "
                                    "write to") from None
            if entries:
                more = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
                raise EdorientError(
                    f"{flag} {folder} is not an edorient {what} folder: it holds files edorient did not write "
                    f"({entries[0]!r}{more}), which it will not touch; give a new or empty folder")
        elif found != kind:
            raise EdorientError(f"{flag} {folder} is an edorient {KINDS[found]}, not a {what} folder; "
                                f"give another {flag}")
    elif create:
        blocker = next((p for p in folder.absolute().parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise EdorientError(f"cannot create {flag} {folder}: {blocker} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdorientError(f"cannot create {flag} {folder} ({exc.strerror or exc}); give a folder you can "
                                "write to") from None
    if create:
        _write_marker(folder, kind, flag)  # also the probe: a folder that cannot be written fails here
    return folder


def check_same_settings(folder: str | os.PathLike, identity, refusal: str) -> None:
    """A resumable output's guard: where ``folder``'s ``config.json`` records another
    ``identity`` (what makes its results what they are: the input, the settings), refuse with
    ``refusal`` (one line naming the folder and the fix); a missing or unreadable config.json, or
    one without an identity, is accepted (the run then writes its own)."""
    cfg = _json(Path(folder) / "config.json")
    old = cfg.get("identity") if isinstance(cfg, dict) else None
    if old not in (None, identity):
        diff = _differences(old, identity)
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff[:3])
        more = f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise EdorientError(f"{refusal} (differs: {shown}{more})" if diff else refusal)


def _differences(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, a's value, b's value) where two JSON-like values differ.

    >>> _differences({"x": 1, "s": {"c": 0.02, "k": 200}}, {"x": 1, "s": {"c": 0.022, "k": 200}})
    [('s.c', 0.02, 0.022)]
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def check_output_file(path: str | os.PathLike, flag: str, create_parent: bool = True) -> Path:
    """Check, before any work, that the file ``path`` given with ``flag`` can be written.

    EdorientError naming the path if it is a folder, if its folder is missing (and
    ``create_parent`` is False, or a file stands in the way) or cannot be written. Writes nothing
    but a probe file, removed at once.
    """
    path = Path(path)
    if path.is_dir():
        raise EdorientError(f"{flag} {path} is a folder; give a file name (e.g. {path / ('out' + _suffix(flag))})")
    parent = path.absolute().parent
    probe_dir = parent
    if not parent.is_dir():
        if parent.exists():
            raise EdorientError(f"{flag} {path}: {parent} is a file, not a folder")
        if not create_parent:
            raise EdorientError(f"{flag} {path}: folder {parent} does not exist; create it or give another path")
        probe_dir = next((p for p in parent.parents if p.exists()), None)
        if probe_dir is None or not probe_dir.is_dir():
            raise EdorientError(f"{flag} {path}: {probe_dir} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=probe_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise EdorientError(f"cannot write {flag} {path}: folder {probe_dir} is not writable "
                            f"({exc.strerror or exc}); give another path") from None
    return path


def _suffix(flag: str) -> str:
    return {"--json": ".json", "--png": ".png", "--overlay": ".png", "--sheet": ".png", "--spots": ".csv",
            "--csv": ".csv", "--logfile": ".log"}.get(flag, "")
