"""What a map leaves for the microscopist: tables, maps, a report, orientations for orix/MTEX.

- ``results.csv``: one row per pattern (probe row, col; or the file), both grains' labels,
  nearest zone axes, in-plane angles, orientations as quaternions and Bunge Euler angles, the
  uncertainties, flags, shares and fits (columns in docs/mapping.md).
- ``results.zarr``: the same per-pattern arrays shaped (rows, cols, ...), chunked by scan rows.
- ``maps/``: IPF colours of the beam direction (lab z) and of lab x for grain 1, of the beam
  direction for grain 2 where present, the score, the uncertainty, the one/two-grain map with
  the second grain's share, a virtual bright-field image, and ``overview.png`` with all of them
  and the IPF colour key.
- ``orientations_grain1.ang`` / ``.h5`` (and ``_grain2``): orix ``CrystalMap`` files (orix reads
  them back with ``orix.io.load``; MTEX reads the .ang): x/y in µm at the probe step (the file's
  scan axes or ``--step``; in probe steps where unknown), image quality the score, confidence
  index the share of the pattern's spots explained.
- ``report.md``: settings, scan, timings, counts.

Orientation convention of the exports: orix's ``Orientation`` takes sample (lab) vectors to
the crystal frame, so it is ``Rᵀ`` of edorient's ``R`` (crystal -> lab); the beam direction of
grain ``g`` is ``O * [0, 0, 1]``. The lab frame is the detector's (x along columns, y up);
any rotation between scan and detector is not corrected.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["orix_crystal_map", "orix_symmetry", "write_outputs"]


def _anchors_line(run, settings, chunk: int) -> str:
    from edorient.mapping.index import whole_rows

    r = run.results
    stride = settings.stride_for(run.source.layout)
    whole = int(np.sum(r["anchor"])) if "anchor" in r else len(r["status"])
    width = int(run.source.shape[1])
    lattice = run.source.layout != "files" and settings.anchor_rows > 1 and whole_rows(chunk, width)
    where = (f"every {stride}th pattern of every {settings.anchor_rows}th row of a chunk (and the last of each)"
             if lattice else f"every {stride}th pattern of a chunk")
    return (f"- anchors: {where} by the whole chain, the others from their nearest anchors' grains; "
            f"{whole} of {len(r['status'])} patterns by the whole chain (docs/mapping.md)"
            if stride > 1 and settings.refine else "- every pattern by the whole chain (no anchors)")


def orix_symmetry(crystal):
    """orix point group of the crystal's Laue group (by its Hermann-Mauguin name)."""
    from orix.quaternion import symmetry

    name = crystal.laue.name
    for g in symmetry._groups:
        if g.name == name:
            return g
    return symmetry.Ci


def _orientations(rotations: np.ndarray, crystal):
    """orix Orientation (n,) of edorient rotations (n, 3, 3); NaN rows become the identity."""
    from orix.quaternion import Orientation

    R = np.where(np.isfinite(rotations).all((-1, -2))[:, None, None], rotations, np.eye(3))
    return Orientation.from_matrix(np.transpose(R, (0, 2, 1)), symmetry=orix_symmetry(crystal))


def orix_crystal_map(results: dict, shape: tuple[int, int], grain: int, crystal, step_nm: float | None = None):
    """An orix ``CrystalMap`` of grain ``grain`` (0 or 1): not-indexed points (no beam, no such
    grain) get phase -1; properties score, uncertainty, share, n_grains, and the .ang's image
    quality ``iq`` (the score) and confidence index ``ci`` (the share of the pattern's spots the
    reported grain or pair explains; 0 for a paired grain whose support is below
    :data:`~edorient.mapping.index.SUPPORT_MIN`). Coordinates in µm where the probe step ``step_nm`` is
    known (MTEX reads an .ang's x/y as µm), else in probe steps (``scan_unit`` px)."""
    from orix.crystal_map import CrystalMap, Phase, PhaseList

    ny, nx = shape
    R = results["rotations"][:, grain]
    present = np.isfinite(R).all((-1, -2))
    rr, cc = np.mgrid[0:ny, 0:nx]
    step, unit = (1.0, "px") if step_nm is None else (float(step_nm) / 1000.0, "um")
    from diffpy.structure import Lattice, Structure

    # the cell's lattice goes with the phase, so the .ang header carries it (MTEX reads it); orix
    # aligns it as edorient does (a along x, c* along z: edorient.conventions)
    phases = PhaseList(Phase(name=crystal.name, point_group=orix_symmetry(crystal).name,
                             structure=Structure(lattice=Lattice(*(float(v) for v in crystal.cell)))))
    explained = np.where(results["n_grains"] == 2, results["explained2"], results["explained1"])
    ci = np.where(present, np.nan_to_num(explained), -1.0)
    if "support" in results:  # a paired grain no one-grain probe near it reports: worth doubting (docs/mapping.md)
        from edorient.mapping.index import SUPPORT_MIN

        s = results["support"][:, grain]
        ci = np.where(present & (results["n_grains"] == 2) & (s >= 0) & (s < SUPPORT_MIN), 0.0, ci)
    prop = {"score": np.nan_to_num(results["score"]).astype(float),
            "uncertainty": np.nan_to_num(results["uncertainty_deg"][:, grain], nan=-1).astype(float),
            "share": np.nan_to_num(results["share"][:, grain]).astype(float),
            "n_grains": results["n_grains"].astype(float),
            "iq": np.nan_to_num(results["score"]).astype(float),
            "ci": ci.astype(float)}
    return CrystalMap(_orientations(R, crystal), phase_id=np.where(present, 0, -1), x=cc.ravel() * step,
                      y=rr.ravel() * step, phase_list=phases, prop=prop, scan_unit=unit)


def _zone_axes(directions: np.ndarray, crystal) -> tuple[list[str], np.ndarray]:
    from edorient.predict import nearest_zone_axis

    names, ang = [], np.full(len(directions), np.nan)
    cache: dict[tuple, tuple] = {}
    for i, d in enumerate(directions):
        if not np.isfinite(d).all():
            names.append("")
            continue
        key = tuple(np.round(d, 4))
        if key not in cache:
            cache[key] = nearest_zone_axis(d, crystal)
        uvw, a = cache[key]
        names.append(" ".join(str(v) for v in uvw))
        ang[i] = a
    return names, ang


def _csv(run, crystal) -> str:
    r = run.results
    n = len(r["status"])
    nx = run.source.shape[1]
    cols = {"index": np.arange(n), "row": np.arange(n) // nx, "col": np.arange(n) % nx}
    if run.source.kind == "files":
        cols["file"] = list(run.source.files)
    cols.update(status=r["status"], n_grains=r["n_grains"])
    for g in (0, 1):
        p = f"g{g + 1}_"
        R = r["rotations"][:, g]
        present = np.isfinite(R).all((-1, -2))
        o = _orientations(R, crystal)
        q = np.where(present[:, None], o.data, np.nan)
        eul = np.where(present[:, None], np.degrees(o.to_euler()), np.nan)
        zone, zang = _zone_axes(r["directions"][:, g], crystal)
        for j, c in enumerate("xyz"):
            cols[f"{p}dir_{c}"] = r["directions"][:, g, j]
        cols[f"{p}zone_axis"] = zone
        cols[f"{p}zone_axis_angle_deg"] = zang
        cols[f"{p}inplane_deg"] = r["inplane_deg"][:, g]
        for j in range(4):
            cols[f"{p}q{j}"] = q[:, j]
        for j, c in enumerate(("phi1", "Phi", "phi2")):
            cols[f"{p}{c}_deg"] = eul[:, j]
        cols[f"{p}uncertainty_deg"] = r["uncertainty_deg"][:, g]
        cols[f"{p}inplane_uncertainty_deg"] = r["inplane_uncertainty_deg"][:, g]
        cols[f"{p}ambiguous"] = np.where(present, r["ambiguous"][:, g], False).astype(int)
        cols[f"{p}zone_ambiguous"] = np.where(present, r["direction_ambiguous"][:, g], False).astype(int)
        cols[f"{p}share"] = r["share"][:, g]
        if "support" in r:
            cols[f"{p}support"] = np.where(present, r["support"][:, g], -1)
    for k in ("score", "image_fit", "model_fit", "spots", "explained1", "explained2", "new_spots", "calibration_scale", "vbf"):
        if k in r:
            cols[k] = r[k]
    if "anchor" in r:
        cols["anchor"] = r["anchor"].astype(int)
    cols["centre_row_px"] = r["centre_px"][:, 0]
    cols["centre_col_px"] = r["centre_px"][:, 1]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(cols))

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else f"{float(v):.6g}"
        return str(v)

    for i in range(n):
        w.writerow([fmt(v[i]) for v in cols.values()])
    return buf.getvalue()


def _zarr(path: Path, run, settings) -> None:
    import zarr

    tmp = path.with_name("." + path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    ny, nx = run.source.shape
    root = zarr.open_group(str(tmp), mode="w")
    for k, v in run.results.items():
        a = np.asarray(v).reshape((ny, nx) + np.shape(v)[1:])
        if a.dtype == bool:
            a = a.astype(np.uint8)
        root.create_array(k, data=a, chunks=(min(ny, 16),) + a.shape[1:])
    root.attrs.update({"calibration_1_per_A_per_px": run.source.calibration, "scan": run.source.path,
                       "shape": [ny, nx], "settings": settings.to_dict(),
                       "rotations": "R (crystal -> lab), edorient conventions; NaN where absent"})
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _ipf_rgb(results: dict, grain: int, crystal, direction) -> np.ndarray:
    from orix.plot import IPFColorKeyTSL

    R = results["rotations"][:, grain]
    present = np.isfinite(R).all((-1, -2))
    rgb = np.asarray(IPFColorKeyTSL(orix_symmetry(crystal).laue, direction=direction).orientation2color(
        _orientations(R, crystal)), dtype=float)
    rgb[~present] = 0.15
    return rgb


def _maps(folder: Path, run, crystal) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from orix.vector import Vector3d

    from edorient._utils.figures import save_png

    r = run.results
    ny, nx = run.source.shape
    folder.mkdir(parents=True, exist_ok=True)
    panels = {
        "ipf_z_grain1": ("grain 1: IPF colour of the beam direction", _ipf_rgb(r, 0, crystal, Vector3d.zvector()), None),
        "ipf_x_grain1": ("grain 1: IPF colour of lab x", _ipf_rgb(r, 0, crystal, Vector3d.xvector()), None),
        "ipf_z_grain2": ("grain 2 (where present): beam direction", _ipf_rgb(r, 1, crystal, Vector3d.zvector()), None),
        "grains": ("share of grain 2 (0: one grain)", np.where(r["n_grains"] == 2, r["share"][:, 1], 0.0), "magma"),
        "score": ("refined score (correlation)", r["score"], "viridis"),
        "uncertainty": ("uncertainty of grain 1 (deg)", r["uncertainty_deg"][:, 0], "cividis"),
        "vbf": ("virtual bright field", r["vbf"], "gray"),
    }
    def draw(fig, ax, title, img, cmap) -> None:
        shape = (ny, nx, 3) if img.ndim == 2 else (ny, nx)
        im = ax.imshow(np.asarray(img).reshape(shape), cmap=cmap, interpolation="nearest")
        if cmap is not None:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()

    written = []
    for name, panel in panels.items():
        fig, ax = plt.subplots(figsize=(4, 4 * ny / nx + 0.4), dpi=100)
        draw(fig, ax, *panel)
        save_png(fig, folder / f"{name}.png", tight=True)
        written.append(f"maps/{name}.png")
    # overview: every panel and the colour key
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.4), dpi=90)
    for ax, panel in zip(axes.ravel(), panels.values()):
        draw(fig, ax, *panel)
    ax = axes.ravel()[-1]
    _colour_key(ax, crystal)
    fig.tight_layout()
    save_png(fig, folder / "overview.png", tight=True)
    written.append("maps/overview.png")
    return written


def _colour_key(ax, crystal) -> None:
    """The IPF colour key of the fundamental sector, drawn in stereographic projection."""
    from orix.plot import IPFColorKeyTSL
    from orix.quaternion import Orientation
    from orix.vector import Vector3d

    from edorient.physics.orientation import stereographic

    sym = orix_symmetry(crystal)
    v = np.random.default_rng(0).normal(size=(20000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    d = crystal.laue.reduce(v)
    # orientation whose beam direction (O * z) is d: any rotation taking z to d
    from edorient.physics.orientation import rotation_from_direction

    R = rotation_from_direction(d, 0.0)
    rgb = IPFColorKeyTSL(sym.laue, direction=Vector3d.zvector()).orientation2color(
        Orientation.from_matrix(np.transpose(R, (0, 2, 1)), symmetry=sym))
    xy = stereographic(d)
    ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(rgb), s=2, linewidths=0)
    for uvw in ([0, 0, 1], [1, 0, 0], [1, 1, 0]):
        p = stereographic(crystal.laue.reduce(crystal.zone_axis_direction(uvw))[None])[0]
        ax.annotate(f"[{''.join(map(str, uvw))}]", p, fontsize=9)
    ax.set_aspect("equal")
    ax.set_title("IPF colour key (beam direction)", fontsize=9)
    ax.set_axis_off()


def _support_line(r: dict) -> str:
    from edorient.mapping.index import SUPPORT_MIN, SUPPORT_RADIUS

    if "support" not in r or not (r["support"] >= 0).any():
        return "- support: not computed (a folder of files has no neighbourhood)"
    two = r["n_grains"] == 2
    weak = (r["support"] >= 0) & (r["support"] < SUPPORT_MIN)
    return (f"- grains reported alone by fewer than {SUPPORT_MIN} probes within {SUPPORT_RADIUS} steps (`g*_support`, "
            f"worth doubting): {int(weak[two].sum())} of {int(2 * two.sum())} paired grains, "
            f"{int(weak[~two, 0].sum())} of {int((~two & (r['support'][:, 0] >= 0)).sum())} single grains")


def _neighbours_line(run) -> str:
    nb = getattr(run, "neighbours", {}) or {}
    if not nb:
        return "- neighbour pass: off (a folder of files, --neighbour-radius 0, or not the partner chain)"
    return (f"- neighbour pass (radius {nb['radius']} probe steps): {nb['candidates']} patterns with spots their one-grain "
            f"fit leaves unexplained and another grain nearby, {nb['refined']} refined with it, "
            f"{nb['second_grains_added']} given a second grain or a better pair (docs/mapping.md)")


def _detector_line(run) -> str:
    d = getattr(run, "detector", {}) or {}
    parts = []
    if "mask_px" in d:
        parts.append(f"{d['mask_px']} px from `{d['mask_file']}`")
    if "sample_patterns" in d:
        parts.append(f"{d['dead_px']} dead and {d['hot_px']} hot px found in {d['sample_patterns']} patterns"
                     + (f", {d['not_finite_px']} not finite" if d.get("not_finite_px") else ""))
    elif "defects" in d:
        parts.append(f"defects {d['defects']}")
    else:
        parts.append("defects not looked for (--no-defects)")
    where = f"; `{Path(d['written']).name}`" if d.get("written") else ""
    return f"- detector pixels ignored: {d.get('ignored_px', 0)} ({'; '.join(parts)}{where})"


def _thickness_line(run) -> str:
    t = getattr(run, "thickness", {}) or {}
    if t.get("fitted"):
        curve = ", ".join(f"{k} Å {v:.3f}" for k, v in t["median_fit"].items())
        return (f"- effective thickness: {t['thickness_A']:g} Å, fitted on {t['patterns']} patterns in {t.get('seconds', 0):g} s "
                f"(median whole-image fit: {curve}; docs/mapping.md)")
    used = t.get("used_A")
    return (f"- effective thickness: {used:g} Å (given)" if used is not None else
            "- effective thickness: the models' (not fitted" + (f": {t['why']})" if t.get("why") else ")"))


def _calibration_line(run) -> str:
    c = getattr(run, "calibration", {}) or {}
    if c.get("adopted"):
        return (f"- **calibration checked on {c['answered']} patterns: they fit at {c['median_scale']:.4f}x the given "
                f"{c['given']:.6g}, so the map used {c['fitted']:.6g}** (give the right --calibration, or a "
                "calibration file of edorient calibrate, to be sure)")
    if "median_scale" in c:
        return (f"- calibration checked on {c['answered']} of {c['patterns']} patterns: they fit at "
                f"{c['median_scale']:.4f}x the given one (kept" + (f": {c['why']}" if c.get("why") else "") + ")")
    return "- calibration not checked" + (f" ({c['why']})" if c.get("why") else "")


def _disc_line(run) -> str:
    d = getattr(run, "discs", {}) or {}
    if d.get("measured"):
        what = (f"a disc of {d['radius_px']:g} px deconvolved from every pattern" if d.get("deconvolved") else
                "no disc deconvolved")
        return (f"- probe's diffraction discs: {what} (direct beam of {d['patterns']} patterns fitted by a disc of "
                f"{d['radius_px']:g} px blurred by {d['sigma_px']:g} px; docs/mapping.md)")
    used = d.get("used_px", d.get("radius_px"))
    if used:
        return f"- probe's diffraction discs: a disc of {used:g} px deconvolved from every pattern (given)"
    return "- probe's diffraction discs: none deconvolved" + (f" ({d['why']})" if d.get("why") else "")


def _step_line(source) -> str:
    step = getattr(source, "step_nm", None)
    if step is None:
        return ("- probe step: unknown (the scan's axes carry no length unit): the .ang/.h5 coordinates count probe "
                "steps, which MTEX reads as µm; give --step NM")
    return f"- probe step: {step:g} nm (from {source.step_source}); the .ang/.h5 coordinates in µm"


def _report(run, settings, compute, seed, written: list[str]) -> str:
    r = run.results
    n = len(r["status"])
    ok = r["status"] == 0
    two = r["n_grains"] == 2
    rate = run.patterns_computed / run.compute_s if run.compute_s > 0 and run.patterns_computed else float("nan")
    med = lambda a: float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")
    lines = [
        "# edorient map", "",
        (f"- scan: `{run.source.path}` ({run.source.kind}; {run.source.shape[0]} x {run.source.shape[1]} probes, "
         f"patterns {run.source.pattern_shape[0]} x {run.source.pattern_shape[1]} px)"),
        (f"- calibration: {run.source.calibration:.6g} 1/Å per pixel (from {run.source.calibration_source})"
         + ("" if getattr(run.source, "distortion", None) is None else
            f"; the detector's ellipticity {run.source.distortion[0]:.4f} (major axis at {run.source.distortion[1]:.1f}°) "
            "undone in every pattern")),
        _step_line(run.source),
        _calibration_line(run),
        _detector_line(run),
        _disc_line(run),
        _thickness_line(run),
        (f"- crystal: {settings.crystal}; grains: {settings.grains}; proposals: "
         f"{settings.run_single or 'template matching'} / {settings.run_bicrystal or 'template matching'}; "
         f"refinement: {'on' if settings.refine else 'off'}"),
        (f"- second grain when it explains >= {settings.min_new_spots} spots the one-grain fit leaves, share >= {settings.min_share:g}, "
         f"misorientation > {settings.distinct_deg:g}° (docs/mapping.md)"),
        _anchors_line(run, settings, int(compute.chunk)),
        _neighbours_line(run),
        (f"- compute: {'Dask scheduler ' + compute.scheduler if compute.scheduler else ('this process' if compute.workers == 0 else f'LocalCluster, {run.workers} worker process(es)')}; "
         f"chunk {compute.chunk} patterns; {run.n_chunks} chunks ({run.chunks_done_before} done before this run)"),
        f"- seed: {seed}", "",
        "## Timings", "",
        (f"- patterns indexed in this run: {run.patterns_computed} in {run.compute_s:.1f} s "
         f"({rate:.2f} patterns/s, wall clock incl. cluster start)" if run.patterns_computed else
         "- patterns indexed in this run: none (every chunk was done before; `summary.json` keeps each run's "
         "timings)"),
        (f"- summed over workers: reading {run.timings['read_s']:.1f} s, building the estimators (once a worker) "
         f"{run.timings.get('setup_s', 0.0):.1f} s, indexing {run.timings['index_s']:.1f} s"
         + (f"; neighbour pass {run.timings['neighbour_s']:.1f} s (wall clock)" if "neighbour_s" in run.timings else "")), "",
        "## Results", "",
        f"- patterns: {n}; indexed: {int(ok.sum())}; no direct beam: {int((~ok).sum())}",
        f"- two grains: {int(two.sum())} ({100 * two.mean():.1f} %)",
        f"- median score: {med(r['score']):.4f}; median uncertainty of grain 1: {med(r['uncertainty_deg'][:, 0]):.3f}°",
        f"- ambiguous grain 1 (another orientation fits about as well): {int(r['ambiguous'][:, 0].sum())}",
        _support_line(r), "",
        "## Files", "",
    ] + [f"- `{w}`" for w in written]
    return "\n".join(lines) + "\n"


def write_outputs(run, settings, compute, seed: int) -> list[str]:
    """Write every output of a finished map into ``run.out``; returns the names written."""
    from orix import io as orix_io

    from edorient._utils.atomic import atomic_path, atomic_write_text
    from edorient.structures import get_crystal

    crystal = get_crystal(settings.crystal)
    out = run.out
    written = ["results.csv", "results.zarr"]
    atomic_write_text(out / "results.csv", _csv(run, crystal))
    _zarr(out / "results.zarr", run, settings)
    ny, nx = run.source.shape
    for g in (0, 1):
        if g == 1 and not (run.results["n_grains"] == 2).any():
            continue
        cmap = orix_crystal_map(run.results, (ny, nx), g, crystal, run.source.step_nm)
        # orix's .ang writer needs a 2-D grid (a list of files is 1-D: .h5 only)
        for ext in ((".ang", ".h5") if ny > 1 and nx > 1 else (".h5",)):
            name = f"orientations_grain{g + 1}{ext}"
            with atomic_path(out / name) as tmp:
                tmp.unlink()
                orix_io.save(str(tmp), cmap, overwrite=True)
            written.append(name)
    if ny > 1 and nx > 1:
        written += _maps(out / "maps", run, crystal)
    written.append("report.md")
    atomic_write_text(out / "report.md", _report(run, settings, compute, seed, written))
    # every run of this map (a resumed map has several), with its timings
    try:
        history = json.loads((out / "summary.json").read_text()).get("runs", [])
    except (OSError, ValueError, AttributeError):
        history = []
    history.append({"compute_s": round(run.compute_s, 3), "patterns_computed": run.patterns_computed,
                    "workers": run.workers, "chunks_done_before": run.chunks_done_before, **{
                        k: round(v, 3) for k, v in run.timings.items()},
                    "neighbour_pass": getattr(run, "neighbours", {}), "detector": getattr(run, "detector", {}),
                    "thickness": getattr(run, "thickness", {}), "discs": getattr(run, "discs", {}),
                    "calibration": getattr(run, "calibration", {})})
    summary = {"patterns": len(run.results["status"]), "two_grains": int((run.results["n_grains"] == 2).sum()),
               "runs": history}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return written
