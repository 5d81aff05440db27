"""Preprocessing, cached dictionaries, the scale-fitting search and the verdict (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.indexing import preprocess as pp
from edorient.indexing.verdict import verdict
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


def _pattern(size=96, cal=0.02, seed=0, halo=0.05):
    R = random_rotations(1, rng=seed)
    sim = Simulator(anatase(), SimulationConfig(image_size=size, calibration=cal, spot_sigma_px=1.5))
    img = sim.images(R)[0].astype(np.float64)
    c = (size - 1) / 2
    rr, cc = np.indices(img.shape)
    r = np.hypot(rr - c, cc - c)
    return img + halo * np.exp(-r / 15.0), R[0], (c, c), r


def test_radial_background_removes_a_round_halo_and_keeps_the_spots():
    img, _, c, r = _pattern()
    pre = pp.preprocess(img * 1e4, c)
    # away from the spots the halo is gone: the median of the ring pixels is exactly 0
    ring = (r > 20) & (r < 30)
    assert np.median(pre.image[ring]) == 0.0
    # the brightest spots survive (normalised to SPOT_LEVEL at the 99.5th percentile)
    assert pre.image.max() >= pp.SPOT_LEVEL
    assert pre.steps["background"]["method"] == "radial median"


@pytest.mark.parametrize("shape, centre", [((128, 128), (64.3, 60.1)), ((90, 140), (5.0, 130.0))])
def test_radial_background_is_each_rings_median(shape, centre):
    # the vectorised ring medians against np.median ring by ring (then the same interpolation
    # over empty rings and three-ring smoothing as the function's docstring states)
    from scipy import ndimage

    rng = np.random.default_rng(1)
    img = rng.gamma(1.0, 1.0, shape)
    img[:3, :3] = img[0, 0]  # ties
    mask = rng.random(shape) > 0.3
    ring = np.round(np.hypot(*(np.indices(shape) - np.reshape(centre, (2, 1, 1))))).astype(int)
    n = ring.max() + 1
    prof = np.array([np.median(img[mask & (ring == k)]) if (mask & (ring == k)).any() else np.nan for k in range(n)])
    ok = np.isfinite(prof)
    prof = ndimage.uniform_filter1d(np.interp(np.arange(n), np.flatnonzero(ok), prof[ok]), 3, mode="nearest")
    np.testing.assert_allclose(pp.radial_background(img, centre, mask), prof[ring], rtol=0, atol=1e-12)


def test_mask_finds_painted_patch_and_border_padding_but_not_dark_background():
    rng = np.random.default_rng(0)
    x = rng.poisson(20, size=(120, 120)).astype(float)
    x[10:30, 70:100] = 150.0  # a label painted out in one grey
    x[:, :8] = 0.0  # zero padding of a crop along the left edge
    x[60:75, 60:75] = 3.0  # a dark flat patch inside is empty background: not masked
    mask, rep = pp.validity_mask(x)
    assert not mask[15:25, 75:95].any()
    assert not mask[50, :6].any()
    assert mask[64:71, 64:71].all()
    assert rep["flat_patches_px"] > 0


@pytest.mark.parametrize("seed", range(6))
def test_flat_windows_are_the_min_max_filters_definition(seed):
    # the fast neighbour-equality test must give exactly the booleans of a 5 x 5 running
    # max - min == 0 with ndimage's border reflection, on images from 3 px (window larger than
    # the image) to non-square ones with many equal neighbours
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = rng.integers(3, 50, 2)
        x = rng.integers(0, rng.integers(1, 4), (h, w)).astype(np.float64)
        if rng.random() < 0.5:
            x[: h // 2, : w // 3] = 7.0
        ref = (ndimage.maximum_filter(x, 5) - ndimage.minimum_filter(x, 5)) == 0
        np.testing.assert_array_equal(pp._flat_windows(x), ref)


def test_saturated_pixels_are_counted_and_kept():
    # a clipped spot is still a bright spot where it is: masked, it was a dark hole in a bright rim
    rng = np.random.default_rng(1)
    x = rng.poisson(20, size=(64, 64)).astype(float)
    x[30:33, 30:33] = 255.0
    mask, rep = pp.validity_mask(x)
    assert mask[31, 31] and mask.all() and rep["saturated_px"] == 9
    pre = pp.preprocess(x, (10.5, 10.5))  # the spot away from the beam: bright in the working image
    assert pre.image[30:33, 30:33].min() >= 0.99 * pre.image.max() > 0


def test_pure_noise_has_no_signal_but_does_not_fail():
    x = np.random.default_rng(2).normal(100, 1, size=(64, 64))
    pre = pp.preprocess(x, (31.5, 31.5))
    assert np.isfinite(pre.image).all()


def test_centre_off_the_image_data_is_refused():
    img, *_ = _pattern()
    with pytest.raises(EdorientError, match="valid data only"):
        pp.preprocess(img, (1.0, 1.0))


def test_dictionary_cache_hit_is_identical_and_a_damaged_entry_is_rebuilt(tmp_path, monkeypatch):
    from edorient.indexing.matching import TemplateMatcher

    monkeypatch.setenv("EDORIENT_CACHE", str(tmp_path))
    sim = Simulator(anatase(), SimulationConfig(image_size=48))
    a = TemplateMatcher(sim, n_directions=20, cache=True)
    b = TemplateMatcher(sim, n_directions=20, cache=True)
    assert not a.cache_hit and b.cache_hit
    np.testing.assert_array_equal(a._fft, b._fft)
    a.cache_file.write_bytes(b"not a numpy file")
    c = TemplateMatcher(sim, n_directions=20, cache=True)
    assert not c.cache_hit
    np.testing.assert_array_equal(a._fft, c._fft)
    # other settings, other entry
    d = TemplateMatcher(Simulator(anatase(), SimulationConfig(image_size=48, thickness=80.0)), n_directions=20, cache=True)
    assert d.cache_file != a.cache_file


def test_dictionary_cache_keeps_to_its_budget_least_recently_used_first(tmp_path, monkeypatch):
    import os

    from edorient.indexing.dictionary import evict, max_cache_bytes
    from edorient.indexing.matching import TemplateMatcher

    monkeypatch.setenv("EDORIENT_CACHE", str(tmp_path))
    old, used = tmp_path / "templates-old.npy", tmp_path / "templates-used.npy"
    for i, f in enumerate((old, used)):
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1e9 + i, 1e9 + i))
    (tmp_path / "notes.txt").write_bytes(b"y" * 5000)  # not a dictionary: never touched
    # a budget for one of them: the older goes, the newer and the just-written stay
    assert evict(tmp_path, keep=old, budget=1500) == [used]
    assert old.exists() and (tmp_path / "notes.txt").exists()
    assert evict(tmp_path, budget=1500) == [] and evict(tmp_path, budget=0) == [old]
    # a new entry written under a budget smaller than itself is kept (the one in use), the rest go
    used.write_bytes(b"x" * 1000)
    os.utime(used, (1e9, 1e9))
    monkeypatch.setenv("EDORIENT_CACHE_MAX_GB", "0")
    a = TemplateMatcher(Simulator(anatase(), SimulationConfig(image_size=48)), n_directions=20, cache=True)
    assert a.cache_file.exists() and not used.exists()
    # a load marks the entry as used
    os.utime(a.cache_file, (1e9, 1e9))
    assert TemplateMatcher(Simulator(anatase(), SimulationConfig(image_size=48)), n_directions=20, cache=True).cache_hit
    assert a.cache_file.stat().st_mtime > 1e9 + 10
    monkeypatch.setenv("EDORIENT_CACHE_MAX_GB", "lots")
    with pytest.raises(EdorientError, match="EDORIENT_CACHE_MAX_GB"):
        max_cache_bytes()


def test_low_index_zones_are_in_the_dictionary():
    from edorient.indexing.matching import TemplateMatcher, zone_axes

    cr = anatase()
    tm = TemplateMatcher(Simulator(cr, SimulationConfig(image_size=48)), n_directions=20, zone_max_index=2)
    z = zone_axes(cr, 2)
    for v in z:
        assert np.max(tm.directions @ v) > 1 - 1e-12


def _indexed_with_calibration_error():
    """A noisy anatase pattern (128 px, ±1 1/Å) indexed with its calibration given 8 % low."""
    from edorient.indexing.pipeline import IndexConfig, index_pattern

    true_cal = 0.016
    R = random_rotations(1, rng=11)[0]
    sim = Simulator(anatase(), SimulationConfig(image_size=128, calibration=true_cal, spot_sigma_px=1.5))
    img = np.random.default_rng(3).poisson(sim.images(R[None])[0] * 1e5 + 20).astype(float)
    return R, index_pattern(img, IndexConfig(true_cal / 1.08, (63.5, 63.5)), anatase())


def test_search_recovers_a_calibration_error():
    _, res = _indexed_with_calibration_error()
    assert abs(res.search.scale - 1.08) < 0.025


def test_search_recovers_a_calibration_error_and_the_orientation():
    R, res = _indexed_with_calibration_error()
    assert abs(res.search.scale - 1.08) < 0.025
    err = float(anatase().laue.angle(R[2][None], res.grains[0].rotation[2][None])[0])
    # a sparse general orientation (field ±1 1/Å): right within 2°, or the answer says it is unsure
    assert err < 2.0 or res.grains[0].verdict != "confident", (err, res.grains[0].verdict)


def test_verdict_rules():
    assert verdict(0.9, 0.5) == "confident"
    assert verdict(0.9, 0.0) == "ambiguous"
    assert verdict(float("nan"), 1.0) == "no match"
    assert verdict(0.0, 1.0) == "no match"


def test_a_calibration_outside_the_stated_tolerance_is_no_match():
    # the pattern needs the calibration 8 % higher than given: inside the default ±15 % the
    # answer stands; a user who states ±3 % is told the crystal does not fit at that calibration
    # (how a second phase with a similar lattice, Al [001] against anatase [001], is refused)
    from edorient.indexing.pipeline import IndexConfig, index_pattern
    from edorient.indexing.search import SearchConfig

    R, res = _indexed_with_calibration_error()
    assert abs(res.calibration_scale - 1.08) < 0.02 and res.grains[0].verdict != "no match"
    img = np.random.default_rng(3).poisson(
        Simulator(anatase(), SimulationConfig(image_size=128, calibration=0.016, spot_sigma_px=1.5)).images(R[None])[0]
        * 1e5 + 20).astype(float)
    tight = index_pattern(img, IndexConfig(0.016 / 1.08, (63.5, 63.5), search=SearchConfig(scale_tolerance=0.03)),
                          anatase())
    assert tight.grains[0].verdict == "no match", (tight.calibration_scale, tight.grains[0].verdict)


def test_the_fit_image_keeps_the_weak_spots_the_noise_floor_cuts():
    # preprocess's fit_image: the same pattern with a floor of FIT_NOISE_SIGMAS instead of
    # NOISE_SIGMAS, on the same mask and scale: everywhere at least the usual image, zero where it
    # is masked or on the direct beam, and nonzero on more pixels (the weak spots)
    R = random_rotations(1, rng=4)[0]
    sim = Simulator(anatase(), SimulationConfig(image_size=128, calibration=0.016, spot_sigma_px=1.5))
    img = np.random.default_rng(2).poisson(sim.linear_images(R[None])[0] * 2e4 + 20).astype(float)
    assert pp.preprocess(img, (64.0, 64.0)).fit_image is None  # only on request
    pre = pp.preprocess(img, (64.0, 64.0), fit_image=True)
    assert pp.FIT_NOISE_SIGMAS < pp.NOISE_SIGMAS and pre.fit_image is not None
    assert np.all(pre.fit_image >= pre.image - 1e-7)
    assert np.all(pre.fit_image[~pre.mask] == 0)
    assert (pre.fit_image > 0).sum() > 1.2 * (pre.image > 0).sum()
    np.testing.assert_array_equal(pre.fit_image[62:67, 62:67], 0)  # the direct beam's disc


def _scan_patterns(n=3):
    """Patterns of the simulated 4D-STEM scan (a bright, sharp direct beam over a low background,
    ~15,000 counts on ~20)."""
    from edorient.mapping.simulate import ScanSimConfig, simulate_scan

    counts, _ = simulate_scan(ScanSimConfig(probes=(1, n), n_grains=1, dose=20000.0, seed=5))
    return counts.reshape(n, *counts.shape[-2:]).astype(np.float64)


def test_no_beam_stop_is_found_on_the_flank_of_a_bright_direct_beam():
    # one side of a sharp beam whose centre lies off the ring centre by a fraction of a pixel is far
    # below its ring's median; that crescent is not a beam stop (it was reported as a ~156 px stop)
    from edorient.io.images import find_direct_beam

    for x in _scan_patterns():
        pre = pp.preprocess(x, find_direct_beam(x))
        assert pre.steps["mask"]["beam_stop_px"] == 0
        assert pre.mask.all()


def test_no_beam_stop_beside_a_direct_beam_that_shows():
    # a halo centred 8 px off a bright, visible beam: its far side lies far below its rings'
    # medians (a 1,482 px "stop" before the rule); a stop covers the beam, and this one shows
    rng = np.random.default_rng(0)
    rr, cc = np.indices((160, 160)).astype(float)
    halo = 3000 * np.exp(-np.hypot(rr - 80, cc - 72) / 15.0)
    beam = 1e6 * np.exp(-((rr - 80) ** 2 + (cc - 80) ** 2) / 8.0)
    x = rng.poisson(np.minimum(halo + beam + 20, 30000)).astype(float)
    pre = pp.preprocess(x, (80.0, 80.0))
    assert pre.steps["mask"]["beam_stop_px"] == 0 and pre.mask.all()


def test_a_beam_stop_over_the_direct_beam_is_masked():
    # a rod from the beam to the edge (3 px wide, a 7 px disc at its end) on patterns with a halo:
    # all of it within 25 px of the beam is masked (before: 47 %, the disc's inner part was not
    # dark against its rings), and little around it (the dilation's rim and the beam's disc)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _measured import measured

    sim = Simulator(anatase(), SimulationConfig(image_size=160, calibration=0.02))
    for s in range(3):
        img, valid, c = measured(sim, random_rotations(1, rng=s)[0], beam_stop=True, rng=s)
        pre = pp.preprocess(img, c)
        stop = ~valid
        near = stop & (np.hypot(*(np.indices(img.shape) - np.reshape(c, (2, 1, 1)))) < 25)
        assert (near & ~pre.mask).sum() == near.sum()
        assert (~pre.mask & ~stop).sum() <= 0.4 * stop.sum()
        assert pre.steps["mask"]["beam_stop_px"] == int((~pre.mask).sum())


def test_a_blooming_streak_is_masked_and_a_clipped_spot_kept():
    # a CCD spills a saturated beam's charge along its columns: that streak carries no spot;
    # a clipped round spot does
    rng = np.random.default_rng(4)
    rr, cc = np.indices((128, 128)).astype(float)
    x = rng.poisson(30 + 4000 * np.exp(-((rr - 40) ** 2 + (cc - 90) ** 2) / 18.0)).astype(float)
    x = np.minimum(x, 1000.0)  # the spot clipped: ~20 px at the maximum, round
    x[60:110, 63:65] = 1000.0  # a 2 px wide, 50 px long streak at the maximum
    mask, rep = pp.validity_mask(x)
    assert not mask[60:110, 63:65].any() and rep["saturation_streaks_px"] >= 100
    assert mask[36:45, 86:95].all()  # the clipped spot stays
    assert rep["saturated_px"] == int((x >= 1000).sum())
