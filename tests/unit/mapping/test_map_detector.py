"""The detector's defects: simulated in a scan, found from a sample of it, masked by the map and predict."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.indexing.preprocess import detector_defects, with_bad_pixels
from edorient.io.images import read_detector_mask
from edorient.mapping.simulate import ScanSimConfig
from edorient.mapping.simulate import simulated_defects
from edorient.mapping.simulate import simulate_scan


@pytest.fixture(scope="module")
def scans():
    kw = dict(probes=(4, 6), n_grains=2, seed=7, dose=20000.0)
    clean, _ = simulate_scan(ScanSimConfig(**kw))
    cfg = ScanSimConfig(**kw, hot_pixels=25, dead_pixels=25, gap_px=2)
    counts, truth = simulate_scan(cfg)
    return clean, counts, truth, cfg


def test_simulated_defects_leave_every_other_pixel_as_the_clean_scan(scans):
    clean, counts, truth, cfg = scans
    hot, dead = simulated_defects(cfg)
    assert hot.sum() + dead.sum() > 25 + 2 * 2 * 128 - 4  # the cross of the gap, the dead and hot pixels
    np.testing.assert_array_equal(truth["defects"], hot | dead)
    np.testing.assert_array_equal(counts[:, :, ~(hot | dead)], clean[:, :, ~(hot | dead)])
    assert (counts[:, :, dead] == 0).all() and (counts[:, :, hot] > 4000).all()


def test_defects_are_found_and_nothing_on_a_clean_scan(scans):
    clean, counts, truth, cfg = scans
    hot, dead = simulated_defects(cfg)
    bad, rep = detector_defects(counts.reshape(-1, 128, 128))
    assert (bad & dead).sum() == dead.sum()  # every dead pixel and the whole gap
    # every hot pixel off the direct beam (whose peak outshines it; its disc is cleared anyway)
    rr, cc = np.indices(hot.shape)
    off_beam = hot & (np.hypot(rr - 64, cc - 64) > 8)
    assert (bad & off_beam).sum() == off_beam.sum()
    assert not (bad & ~(hot | dead)).any()  # no spot, no beam taken for a defect
    assert rep["sample_patterns"] == 24 and rep["hot_px"] <= hot.sum()
    assert not detector_defects(clean.reshape(-1, 128, 128))[0].any()


def test_a_gap_of_nan_is_a_defect_but_nan_in_one_pattern_is_not():
    rng = np.random.default_rng(0)
    x = rng.poisson(20, (20, 32, 32)).astype(float)
    x[:, 10] = np.nan  # a reader's gap: NaN in every pattern
    x[3, 20, 20] = np.nan  # one broken pattern: not the detector's fault
    bad, rep = detector_defects(x)
    assert bad[10].all() and not bad[20, 20] and rep["not_finite_px"] == 32


def test_with_bad_pixels_zeroes_and_masks_them():
    x = np.random.default_rng(1).poisson(20, (40, 40)).astype(float)
    bad = np.zeros((40, 40), bool)
    bad[5, 7] = bad[30, 2] = True
    img, (mask, report) = with_bad_pixels(x, bad)
    assert img[5, 7] == 0 and img[30, 2] == 0 and not mask[5, 7] and not mask[30, 2]
    assert mask.sum() == 40 * 40 - 2 and report["detector_mask_px"] == 2
    with pytest.raises(EdorientError, match="detector mask is 40 x 40 px but the pattern is 41 x 40"):
        with_bad_pixels(np.zeros((41, 40)), bad)


def test_read_detector_mask(tmp_path):
    from PIL import Image

    m = np.zeros((32, 48), np.uint8)
    m[3, :] = 255
    np.save(tmp_path / "m.npy", m)
    np.save(tmp_path / "bool.npy", m > 0)  # a mask saved as booleans (was refused as "not real-valued")
    Image.fromarray(m).save(tmp_path / "m.png")
    for name in ("m.npy", "bool.npy", "m.png"):
        bad = read_detector_mask(tmp_path / name, (32, 48))
        assert bad.dtype == bool and bad[3].all() and bad.sum() == 48
    with pytest.raises(EdorientError, match="is 32 x 48 px but the detector is 48 x 32"):
        read_detector_mask(tmp_path / "m.npy", (48, 32))
    np.save(tmp_path / "inverse.npy", 1 - m)
    with pytest.raises(EdorientError, match="invert it"):
        read_detector_mask(tmp_path / "inverse.npy", (32, 48))
    with pytest.raises(EdorientError, match="not found"):
        read_detector_mask(tmp_path / "none.npy", (32, 48))


def test_the_map_ignores_the_defects_it_finds(tmp_path):
    # a 4 x 6 scan (two two-grain probes) with 40 hot and 40 dead pixels and a gap: the map finds
    # them, writes its mask, gives no probe a false second grain and keeps grain 1 as on the clean
    # scan; with --no-defects the spikes are spots (false second grains) and a fit goes wrong
    from edorient.mapping import ComputeSettings, MapSettings, default_runs, run_map
    from edorient.mapping.simulate import write_scan
    from edorient.structures import anatase

    single, bi = default_runs("anatase")
    kw = dict(probes=(4, 6), n_grains=2, seed=7, dose=20000.0)
    cfg = ScanSimConfig(**kw, hot_pixels=40, dead_pixels=40, gap_px=2)
    dirty, truth_path = write_scan(tmp_path / "dirty.hspy", cfg)
    truth = np.load(truth_path)
    two = truth["shares"].reshape(-1, 2)[:, 1] > 0
    assert two.sum() == 2
    compute = ComputeSettings(workers=0, progress=False)

    def mapped(name, **more):
        st = MapSettings(run_single=single, run_bicrystal=bi, neighbour_radius=0, **more)
        run = run_map(dirty, tmp_path / name, st, compute, assemble=name == "on")
        err = anatase().laue.angle(run.results["directions"][:, 0], truth["directions"].reshape(-1, 2, 3)[:, 0])
        return run, err

    on, err_on = mapped("on")
    mask = np.load(tmp_path / "on" / "detector_mask.npy").astype(bool)
    hot, dead = simulated_defects(cfg)
    assert (mask & dead).sum() == dead.sum() and not (mask & ~(hot | dead)).any()
    assert on.detector["ignored_px"] == int(mask.sum())
    assert "detector pixels ignored" in (tmp_path / "on" / "report.md").read_text()
    assert not (on.results["n_grains"][~two] == 2).any() and (on.results["n_grains"][two] == 2).any()
    assert err_on.max() < 0.5
    off, err_off = mapped("off", find_defects=False)
    assert not (tmp_path / "off" / "detector_mask.npy").exists() and off.detector["ignored_px"] == 0
    assert (off.results["n_grains"][~two] == 2).sum() + (err_off > 1.0).sum() > 0
    # the user's mask, the finding off: the same pixels ignored, the same answers
    np.save(tmp_path / "user.npy", mask.astype(np.uint8))
    user, _ = mapped("user", find_defects=False, detector_mask=str(tmp_path / "user.npy"))
    assert user.detector["mask_px"] == int(mask.sum()) and "hot_px" not in user.detector
    np.testing.assert_allclose(user.results["rotations"], on.results["rotations"], atol=1e-9)


def test_bright_spikes_are_only_the_spikes_brighter_than_the_beam():
    # a scan pattern with a hot pixel above the beam's peak, a hot pair, and a faint hot pixel:
    # the first two are taken, the faint one (it could be a sharp spot) is left to a mask
    from edorient.indexing.preprocess import bright_spikes

    counts, _ = simulate_scan(ScanSimConfig(probes=(1, 1), n_grains=1, seed=7, dose=20000.0))
    x = counts[0, 0].astype(np.float64)
    peak = x.max()
    assert not bright_spikes(x).any()
    x[10, 20] = 2 * peak
    x[100, 30] = x[100, 31] = 1.5 * peak
    x[90, 90] = 0.1 * peak
    found = bright_spikes(x)
    assert found[10, 20] and found[100, 30] and found[100, 31] and not found[90, 90] and found.sum() == 3
