"""The map runner in this process: outputs, resuming after a failure, orix read-back, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.mapping import ComputeSettings, MapSettings, default_runs, run_map
from edorient.mapping.runner import FAIL_AFTER_ENV, chunk_ranges


def _settings(grains="1"):
    single, bi = default_runs("anatase")
    return MapSettings(grains=grains, run_single=single, run_bicrystal=bi)


@pytest.fixture(scope="module")
def mapped(tiny_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "m"
    run = run_map(tiny_scan[0], out, _settings(), ComputeSettings(workers=0, chunk=5, progress=False))
    return run


def test_chunk_ranges():
    assert chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_ranges(3, 8) == [(0, 3)]


def test_outputs(mapped, tiny_scan):
    out = mapped.out
    for name in ("results.csv", "results.zarr", "report.md", "config.json", "orientations_grain1.ang",
                 "orientations_grain1.h5", "maps/overview.png", "maps/ipf_z_grain1.png", "maps/vbf.png"):
        assert (out / name).exists(), name
    assert mapped.n_chunks == 4 and len(list((out / "chunks").glob("chunk_*.npz"))) == 4
    # a worker's one-time setup (its estimators) is timed apart from the indexing
    run = json.loads((out / "summary.json").read_text())["runs"][-1]
    assert run["setup_s"] >= 0 and run["index_s"] > 0
    assert "building the estimators (once a worker)" in (out / "report.md").read_text()
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 17 and lines[0].startswith("index,row,col,status,n_grains")
    import zarr

    z = zarr.open_group(str(out / "results.zarr"), mode="r")
    assert z["rotations"].shape == (4, 4, 2, 3, 3)
    np.testing.assert_array_equal(np.asarray(z["rotations"]).reshape(16, 2, 3, 3), mapped.results["rotations"])
    r = mapped.results
    assert (r["status"] == 0).all() and (r["n_grains"] == 1).all()
    # the map finds the simulated grains (high dose): grain-1 label error small where one grain
    from edorient.structures import anatase

    truth = np.load(tiny_scan[1])
    one = truth["shares"].reshape(16, 2)[:, 1] == 0
    err = anatase().laue.angle(r["directions"][:, 0], truth["directions"].reshape(16, 2, 3)[:, 0])
    assert np.median(err[one]) < 2.0


def test_orix_reads_back(mapped):
    from orix import io as orix_io

    for ext in (".h5", ".ang"):
        xmap = orix_io.load(str(mapped.out / f"orientations_grain1{ext}"))
        assert xmap.size == 16
        R = mapped.results["rotations"][:, 0]
        # orix orientations take lab vectors to the crystal: O * z is R's beam direction R.T z
        beam = (xmap.orientations * __import__("orix").vector.Vector3d.zvector()).data
        tol = 1e-6 if ext == ".h5" else 2e-3  # .ang keeps Euler angles to 5 decimals
        assert np.allclose(np.abs(np.sum(beam * R[:, 2], 1)), 1.0, atol=tol)
        # the phase carries anatase's cell (the .ang header's lattice constants; were 1 1 1)
        lat = next(p for i, p in xmap.phases if i >= 0).structure.lattice
        assert (lat.a, lat.c) == pytest.approx((3.7845, 9.5143), abs=1e-3), ext
        # the probe step of the .hspy's scan axes (2 nm), in µm as MTEX reads an .ang (was 1)
        assert xmap.dx == pytest.approx(0.002) and xmap.dy == pytest.approx(0.002), ext
        assert xmap.x.max() == pytest.approx(3 * 0.002) and xmap.y.max() == pytest.approx(3 * 0.002), ext
    # the .ang's image quality is the score (its confidence index: test_ang_confidence_index)
    ang = orix_io.load(str(mapped.out / "orientations_grain1.ang"))
    np.testing.assert_allclose(ang.prop["iq"], mapped.results["score"], atol=1e-5)
    assert 0.1 < ang.prop["iq"].min()
    assert "probe step: 2 nm (from the file's scan axes)" in (mapped.out / "report.md").read_text()
    assert json.loads((mapped.out / "config.json").read_text())["step"] == {"nm": 2.0, "source": "the file's scan axes"}


def test_ang_confidence_index(mapped, tmp_path):
    """The .ang's confidence index is the share of the pattern's spots the reported grain (or
    pair) explains, 0 for a paired grain with support below SUPPORT_MIN, -1 where the grain is
    absent (orix and MTEX read -1 as not indexed); the coordinates count probe steps where the
    step is unknown."""
    from orix import io as orix_io

    from edorient.mapping.outputs import orix_crystal_map
    from edorient.structures import anatase

    r = {k: np.array(v, copy=True) for k, v in mapped.results.items()}
    r["n_grains"][:] = 1
    r["n_grains"][:4] = 2
    r["rotations"][:4, 1] = r["rotations"][4:8, 0]
    r["explained1"] = np.linspace(0.3, 0.9, 16)
    r["explained2"] = np.full(16, np.nan)
    r["explained2"][:4] = 0.95
    r["support"] = np.full((16, 2), -1, dtype=np.int16)
    r["support"][:, 0] = 1  # (low: a single grain keeps its CI, a paired grain 1 gets 0)
    r["support"][:4, 1] = [0, 2, 3, 9]  # a paired grain no one-grain probe near it reports: CI 0
    for g in (0, 1):
        orix_io.save(str(tmp_path / f"g{g}.ang"), orix_crystal_map(r, (4, 4), g, anatase()))
        ci = orix_io.load(str(tmp_path / f"g{g}.ang")).prop["ci"]
        want = (np.r_[np.zeros(4), r["explained1"][4:]] if g == 0 else np.r_[0, 0, 0.95, 0.95, -np.ones(12)])
        np.testing.assert_allclose(ci, want, atol=1e-5)
    xmap = orix_crystal_map(r, (4, 4), 0, anatase())
    assert xmap.scan_unit == "px" and xmap.dx == 1.0


def test_step_from_axes():
    from edorient.mapping.scan import step_from_axes

    assert step_from_axes([{"units": "nm", "scale": 2.0}, {"units": "nm", "scale": 2.0}]) == 2.0
    assert step_from_axes([{"units": "µm", "scale": 0.01}, {"units": "um", "scale": -0.01}]) == pytest.approx(10.0)
    assert step_from_axes([{"units": "Å", "scale": 5.0}]) == pytest.approx(0.5)
    assert step_from_axes([{"units": "<undefined>", "scale": 1.0}, {"units": "nm", "scale": 1.0}]) is None
    assert step_from_axes([{"units": "nm", "scale": 2.0}, {"units": "nm", "scale": 3.0}]) is None  # no one step
    assert step_from_axes([{"units": "1/nm", "scale": 2.0}]) is None


def test_resume_after_failure(tiny_scan, tmp_path, monkeypatch, mapped):
    out = tmp_path / "m"
    cs = ComputeSettings(workers=0, chunk=5, progress=False)
    monkeypatch.setenv(FAIL_AFTER_ENV, "2")
    with pytest.raises(RuntimeError, match="injected"):
        run_map(tiny_scan[0], out, _settings(), cs)
    assert len(list((out / "chunks").glob("chunk_*.npz"))) == 2
    assert not list((out / "chunks").glob(".*"))  # no temporary left behind
    monkeypatch.delenv(FAIL_AFTER_ENV)
    run = run_map(tiny_scan[0], out, _settings(), cs)
    assert run.chunks_done_before == 2 and run.patterns_computed == 6
    for k, v in mapped.results.items():
        np.testing.assert_array_equal(run.results[k], v, err_msg=k)
    # once more: nothing left to do, and the report says so (it printed "0 in 0.1 s (nan patterns/s)")
    run = run_map(tiny_scan[0], out, _settings(), cs)
    report = (out / "report.md").read_text()
    assert run.patterns_computed == 0 and "none (every chunk was done before" in report and "nan" not in report


def test_refuses_other_settings_and_folders(tiny_scan, mapped, tmp_path):
    with pytest.raises(EdorientError, match="other settings"):
        run_map(tiny_scan[0], mapped.out, _settings(), ComputeSettings(workers=0, chunk=3, progress=False),
                assemble=False)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(EdorientError, match="did not write"):
        run_map(tiny_scan[0], tmp_path / "user", _settings(), ComputeSettings(workers=0, progress=False))


def test_nan_pattern_is_an_error(tmp_path):
    a = np.zeros((2, 2, 64, 64), np.float32)
    a[..., 32, 32] = 100
    a[1, 0, 5, 5] = np.nan
    np.save(tmp_path / "s.npy", a)
    with pytest.raises(EdorientError, match="pattern 2 .*NaN"):
        run_map(tmp_path / "s.npy", tmp_path / "o", _settings(), ComputeSettings(workers=0, progress=False),
                calibration=0.04)


def test_auto_grains_decision_is_consistent(tiny_scan):
    """--grains auto: a second grain only where it explains >= min_new_spots new spots; the
    two-grain chain is skipped where the one-grain fit leaves fewer unexplained (same decision)."""
    from edorient.mapping.index import get_indexer
    from edorient.mapping.scan import open_scan

    src = open_scan(tiny_scan[0])
    st = _settings("auto")
    raw = src.read(0, 16)
    r = get_indexer(st).index(raw, src.calibration)
    two = r["n_grains"] == 2
    assert set(np.unique(r["n_grains"])) <= {1, 2}
    assert (r["new_spots"][two] >= st.min_new_spots).all()
    unexplained = np.round(r["spots"] * (1 - np.nan_to_num(r["explained1"], nan=1.0)))
    skipped = unexplained < st.min_new_spots
    assert np.isnan(r["explained2"][skipped]).all() and (r["n_grains"][skipped] == 1).all()
    assert np.isfinite(r["rotations"][two, 1]).all() and np.isnan(r["rotations"][~two, 1]).all()
    # grain 1 is the stronger
    assert (r["share"][two, 0] >= r["share"][two, 1]).all()


def test_second_grain_modes(tiny_scan):
    """auto: the partner of the one-grain fit by default (no bicrystal model loaded); 'model': the
    two-grain chain; anything else is refused."""
    from edorient.mapping.index import get_indexer

    ix = get_indexer(_settings("auto"))
    assert _settings("auto").partner and ix.proposer is not None and "2" not in ix.estimators
    single, bi = default_runs("anatase")
    st = MapSettings(grains="auto", run_single=single, run_bicrystal=bi, second_grain="model")
    assert not st.partner
    assert not MapSettings(grains="2").partner and not MapSettings(explained_below=0.9).partner
    with pytest.raises(EdorientError, match="second_grain"):
        MapSettings(second_grain="cnn")


def test_local_workers_keep_one_thread_but_not_the_malloc_trim_threshold(monkeypatch):
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536, which halved the workers' speed (every
    # large array a fresh mmap); the one-thread settings of its defaults stay
    import dask

    from edorient.mapping.runner import worker_environ

    env = worker_environ()
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert str(env.get("OMP_NUM_THREADS")) == "1"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 1, "FOO": "2"}}):
        assert worker_environ() == {"FOO": "2"}


def _child_sigint(queue):
    import signal

    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


def test_local_workers_are_spawned_ignoring_ctrl_c():
    """The LocalCluster's worker processes are spawned with SIGINT ignored (inherited), so a Ctrl-C
    reaches the map alone (one line, its chunks kept) instead of printing each worker's
    KeyboardInterrupt traceback; the map's own handler is back afterwards."""
    import multiprocessing
    import signal
    import threading

    from edorient.mapping.runner import _workers_ignore_sigint

    before = signal.getsignal(signal.SIGINT)
    ctx = multiprocessing.get_context("spawn")  # (Dask's default start method for its workers)
    queue = ctx.Queue()
    with _workers_ignore_sigint():
        child = ctx.Process(target=_child_sigint, args=(queue,))
        child.start()
    assert queue.get(timeout=60) is True
    child.join(60)
    assert signal.getsignal(signal.SIGINT) is before
    # from another thread (no handler can be set there) it changes nothing
    seen = []

    def other():
        with _workers_ignore_sigint():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [before]


def test_neighbour_pass_parts_are_written_and_reused(tmp_path, monkeypatch):
    # a 6 x 8 scan of three grains: boundaries whose second grain the neighbour pass looks for
    from edorient.mapping import runner
    from edorient.mapping.simulate import ScanSimConfig, write_scan

    scan, _ = write_scan(tmp_path / "s.hspy", ScanSimConfig(probes=(6, 8), n_grains=3, seed=3, dose=20000.0))
    cs = ComputeSettings(workers=0, chunk=16, progress=False)
    first = run_map(scan, tmp_path / "m", _settings("auto"), cs, assemble=False)
    nb = first.neighbours
    assert nb["candidates"] > 0 and nb["refined"] > 0 and nb["second_grains_added"] > 0, nb
    assert first.results["neighbour_pass"].sum() == nb["second_grains_added"]
    assert (first.results["n_grains"][first.results["neighbour_pass"]] == 2).all()
    parts = sorted((tmp_path / "m" / "chunks").glob("neighbours_*.npz"))
    assert len(parts) == 1 and "neighbour_s" in first.timings
    # a rerun reuses the written part ...
    monkeypatch.setattr(runner, "index_neighbours", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = run_map(scan, tmp_path / "m", _settings("auto"), cs, assemble=False)
    for k, v in first.results.items():
        np.testing.assert_array_equal(again.results[k], v, err_msg=k)
    # ... and recomputes a missing one to the same results
    monkeypatch.undo()
    parts[0].unlink()
    third = run_map(scan, tmp_path / "m", _settings("auto"), cs, assemble=False)
    assert parts[0].is_file()
    for k, v in first.results.items():
        np.testing.assert_array_equal(third.results[k], v, err_msg=k)
    # off: no pass, the first pass's answers
    off = run_map(scan, tmp_path / "off", replace_radius(_settings("auto"), 0), cs, assemble=False)
    assert off.neighbours == {} and not off.results["neighbour_pass"].any()
    untouched = ~first.results["neighbour_pass"]
    for k in ("n_grains", "rotations", "model_fit"):
        np.testing.assert_array_equal(off.results[k][untouched], first.results[k][untouched], err_msg=k)
    assert (off.results["model_fit"][~untouched] < first.results["model_fit"][~untouched]).all()


def replace_radius(settings, radius):
    from dataclasses import replace

    return replace(settings, neighbour_radius=radius)


def test_a_calibration_off_by_ten_per_cent_is_checked_and_replaced(tiny_scan, tmp_path):
    """The map's fits take the calibration as given; 10 % off it a simulated map's grains came out
    45° off with exit code 0. A sample of the scan is searched as ``predict`` searches (the scale
    fitted within ±15 %) and its median scale used where it lies more than 3 % off."""
    from edorient.structures import anatase

    out = tmp_path / "m"
    run = run_map(tiny_scan[0], out, _settings(), ComputeSettings(workers=0, chunk=8, progress=False),
                  calibration=0.022)  # the scan's true calibration is 0.02
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["adopted"] and cal["answered"] >= 3 and abs(cal["fitted"] / 0.02 - 1) < 0.02, cal
    assert run.source.calibration == pytest.approx(cal["fitted"])
    assert "so the map used" in (out / "report.md").read_text()
    truth = np.load(tiny_scan[1])
    one = truth["shares"].reshape(16, 2)[:, 1] == 0
    err = anatase().laue.angle(run.results["directions"][:, 0], truth["directions"].reshape(16, 2, 3)[:, 0])
    assert np.median(err[one]) < 2.0
    # the given calibration right: checked and kept (the mapped fixture above)


def test_the_calibration_is_kept_where_it_fits(mapped):
    cal = json.loads((mapped.out / "calibration.json").read_text())
    assert not cal["adopted"] and abs(cal["median_scale"] - 1) <= 0.03 and mapped.source.calibration == 0.02


def test_a_calibration_in_other_units_is_refused_before_the_folder_is_made(tiny_scan, tmp_path):
    out = tmp_path / "m"
    with pytest.raises(EdorientError, match="1/nm"):
        run_map(tiny_scan[0], out, _settings(), ComputeSettings(workers=0, progress=False), calibration=0.2)
    assert not out.exists()  # nothing left behind to refuse the corrected command
    with pytest.raises(EdorientError, match="not found|does not exist|cannot"):
        run_map(tiny_scan[0], out, MapSettings(grains="1", detector_mask=str(tmp_path / "missing.npy")),
                ComputeSettings(workers=0, progress=False))
    assert not out.exists()


def test_step_given_on_a_rerun(mapped, tiny_scan, tmp_path):
    """--step changes no answer: a finished map rerun with it resumes (nothing indexed again) and
    rewrites the orientation files at that step; a step <= 0 is refused before any work."""
    import shutil

    from orix import io as orix_io

    shutil.copytree(mapped.out, tmp_path / "m")
    cs = ComputeSettings(workers=0, chunk=5, progress=False)
    again = run_map(tiny_scan[0], tmp_path / "m", _settings(), cs, step_nm=5.0)
    assert again.patterns_computed == 0
    assert orix_io.load(str(tmp_path / "m" / "orientations_grain1.ang")).dx == pytest.approx(0.005)
    assert "probe step: 5 nm (from --step)" in (tmp_path / "m" / "report.md").read_text()
    with pytest.raises(EdorientError, match="--step must be a positive probe step in nm"):
        run_map(tiny_scan[0], tmp_path / "other", _settings(), cs, step_nm=-2.0)
    assert not (tmp_path / "other").exists()
