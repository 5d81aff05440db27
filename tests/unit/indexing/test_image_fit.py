"""The whole-image fit that picks and polishes the answer of one grain (issue 11)."""

from __future__ import annotations

import numpy as np

from edorient.indexing.matching import (fit_uncertainty, image_correlation, image_correlations, model_image01,
                                       model_images01, polish_fit, tilt_grid)
from edorient.indexing.verdict import verdict_fit
from edorient.physics.orientation import random_rotations, rotation_from_direction
from edorient.render import SimulationConfig, Simulator
from edorient.structures import anatase


def _sim(size=96, cal=0.02):
    return Simulator(anatase(), SimulationConfig(image_size=size, calibration=cal, direct_beam=0.0))


def test_image_correlation_charges_unexplained_spots():
    # a model that predicts only part of the image's spots scores below one that predicts them
    # all (the refinement's own score, sampled only at predicted spots, could not see the rest)
    sim = _sim()
    R = rotation_from_direction(np.array([0.0, 0.0, 1.0]), 10.0)  # [001]: many spots
    img = model_image01(sim, R)
    sp = sim.spots(R)
    keep = np.arange(len(sp.intensity)) % 2 == 0
    from edorient.render import display_transform, render_spots

    half = display_transform(10 * render_spots(sp.position[keep], sp.intensity[keep], 96, 0.02, sim.config.spot_sigma_px, 0.0))
    assert image_correlation(img, img) > 0.999
    assert image_correlation(img, half) < 0.85
    valid = np.zeros(img.shape, dtype=bool)
    valid[:48] = True  # only the valid pixels count
    assert abs(image_correlation(img, half, valid) - image_correlation(img[:48], half[:48])) < 1e-9


def test_model_image_moves_with_centre_and_scale():
    sim = _sim()
    R = random_rotations(1, rng=4)[0]
    a = model_image01(sim, R)
    shifted = model_image01(sim, R, centre_px=(2.0, -3.0))
    np.testing.assert_allclose(np.roll(a, (2, -3), axis=(0, 1))[10:-10, 10:-10], shifted[10:-10, 10:-10], atol=1e-5)
    assert image_correlation(a, model_image01(sim, R, scale=1.05)) < 0.9


def test_batched_models_and_correlations_equal_the_single_ones():
    # the batch (one spot pass, one drawing kernel call, one product) must give the images of one
    # orientation at a time drawn by the public renderer at the scaled calibration with the
    # shifted centre, and the Pearson correlations numpy computes, with a centre and a scale per
    # hypothesis
    from edorient.render import display_transform, render_spots

    sim = _sim()
    R = random_rotations(6, rng=11)
    cen = np.random.default_rng(1).normal(size=(6, 2))
    k = np.array([0.95, 0.98, 1.0, 1.01, 1.03, 1.06])
    batch = model_images01(sim, R, cen, k)
    single = []
    for r, c, kk in zip(R, cen, k):
        sp, cal = sim.spots(r), sim.config.resolved_calibration * kk
        pos = sp.position + np.array([c[1] * cal, -c[0] * cal])
        single.append(display_transform(10 * render_spots(pos, sp.intensity, 96, cal, sim.config.spot_sigma_px, 0.0)))
    single = np.stack(single)
    np.testing.assert_allclose(batch, single, atol=1e-6)
    np.testing.assert_allclose(model_image01(sim, R[3], cen[3], k[3]), single[3], atol=1e-6)
    img = np.clip(single[2] + 0.05 * np.random.default_rng(2).standard_normal(single[2].shape), 0, 1)
    valid = np.random.default_rng(3).random(img.shape) > 0.3
    want = [np.corrcoef(img[valid], m[valid])[0, 1] for m in single]
    np.testing.assert_allclose(image_correlations(img, batch, valid), want, atol=1e-5)
    # (float32 image and models, float64 sums: ~1e-7)
    np.testing.assert_allclose([image_correlation(img, m, valid) for m in single], want, atol=1e-6)
    assert int(np.argmax(image_correlations(img, batch, valid))) == 2


def test_tilt_grid_spans_the_ring_it_is_asked_for():
    R = random_rotations(1, rng=5)[0]
    grid = np.stack(tilt_grid(R, 3.0, 1.0, inner_deg=1.0))
    tilt = np.degrees(np.arccos(np.clip(grid[:, 2] @ R[2], -1, 1)))  # how far each beam direction moved
    assert tilt.min() > 1.0 - 1e-9 and tilt.max() <= 3.0 + 1e-9
    assert len(grid) == sum(1 < a * a + b * b <= 9 for a in range(-3, 4) for b in range(-3, 4))
    assert len(tilt_grid(R, 1.0, 0.5)) == 13  # with the untilted rotation itself


def test_polish_recovers_a_small_misorientation_centre_and_scale():
    sim = _sim(size=128, cal=0.016)
    R = random_rotations(1, rng=7)[0]
    img = model_image01(sim, R, centre_px=(0.6, -0.4), scale=1.02)
    from scipy.spatial.transform import Rotation

    start = Rotation.from_rotvec(np.radians([0.4, -0.3, 0.5])).as_matrix() @ R
    f, Rp, cen, k = polish_fit(sim, img, start, search_deg=1.0)
    ang = np.degrees(np.arccos(np.clip((np.trace(Rp @ R.T) - 1) / 2, -1, 1)))
    assert f > 0.99 and ang < 0.05, (f, ang)
    np.testing.assert_allclose(cen, [0.6, -0.4], atol=0.05)
    assert abs(k - 1.02) < 0.002


def test_fit_uncertainty_grows_with_noise():
    sim = _sim(size=128, cal=0.016)
    R = random_rotations(1, rng=7)[0]
    clean = model_image01(sim, R)
    rng = np.random.default_rng(0)
    u = [fit_uncertainty(sim, np.clip(clean + s * rng.standard_normal(clean.shape), 0, 1), R)[0] for s in (0.02, 0.2)]
    assert 0 < u[0] < u[1] < 1.0, u


def test_verdict_fit_rules(monkeypatch):
    from edorient.indexing import verdict as vd

    assert verdict_fit(0.8, 0.9, 0.1, 0.1) == "confident"
    assert verdict_fit(0.8, 0.9, 0.0, 0.1) == "ambiguous"  # another direction fits as well
    assert verdict_fit(0.8, 0.9, 0.1, float("nan")) == "ambiguous"  # no uncertainty
    monkeypatch.setattr(vd, "MAX_UNCERTAINTY_DEG", 1.0)
    assert verdict_fit(0.8, 0.9, 0.1, 5.0) == "ambiguous"  # not pinned
    assert verdict_fit(0.8, 0.9, 0.1, None) == "ambiguous"
    assert verdict_fit(0.8, 0.9, 0.1, 0.1, agreement=0.1) == "no match"
    assert verdict_fit(0.8, 0.1, 0.1, 0.1) == "no match"
    assert verdict_fit(float("nan"), 0.9, 0.1, 0.1) == "no match"


def test_image_fit_choice_reads_only_the_valid_pixels():
    # the whole-image choice with `valid`: pixels outside it (a detector narrower than the frame)
    # change nothing, whatever they hold
    from edorient.indexing.proposals import image_fit_choice
    from edorient.indexing.refine import Refiner

    sim = _sim(size=96)
    R = random_rotations(2, rng=8)
    lin = sim.linear_images(R)
    rr, cc = np.indices((96, 96))
    inside = (np.abs(rr - 47.5) <= 30) & (np.abs(cc - 47.5) <= 30)
    from edorient.render import display_transform

    a = display_transform(np.where(inside, lin, 0.0))
    b = display_transform(np.where(inside, lin, lin[::-1]))  # the other pattern in the ring
    res = Refiner(anatase(), sim.config).refine(a, np.stack([R, R[::-1]], 1)[:, :, None])
    valid = np.broadcast_to(inside, a.shape)
    ba, fa = image_fit_choice(sim, res, a, valid=valid)
    bb, fb = image_fit_choice(sim, res, b, valid=valid)
    np.testing.assert_array_equal(ba, bb)
    np.testing.assert_allclose(fa, fb, atol=1e-6)
    assert not np.allclose(image_fit_choice(sim, res, a)[1], image_fit_choice(sim, res, b)[1], atol=1e-3)


def test_image_fit_choice_batched_over_images_equals_one_image_at_a_time():
    # every hypothesis of every image is drawn and compared in batches that cross image borders;
    # each fit must still be the Pearson correlation of that image with that hypothesis' model over
    # that image's own valid pixels (numpy's corrcoef here), empty slots left out
    from edorient.indexing import proposals
    from edorient.indexing.matching import model_linear_images
    from edorient.indexing.refine import Refiner
    from edorient.render import display_transform

    sim = _sim(size=96)
    R = random_rotations(5, rng=21)
    imgs = display_transform(sim.linear_images(R) + 0.02 * np.random.default_rng(4).random((5, 96, 96)))
    starts = np.stack([R, np.roll(R, 1, axis=0), np.roll(R, 2, axis=0)], 1)[:, :, None]  # the truth first
    res = Refiner(anatase(), sim.config).refine(imgs, starts)
    res.hypothesis_scores[1, 2] = -np.inf  # an empty slot: never drawn, never chosen
    valid = np.random.default_rng(5).random(imgs.shape) > 0.2
    old = proposals._FIT_BLOCK
    try:
        proposals._FIT_BLOCK = 4  # blocks of 4 hypotheses split images 1, 2 and 4 across two batches
        best, fit, fits = proposals.image_fit_choice(sim, res, imgs, all_fits=True, valid=valid)
    finally:
        proposals._FIT_BLOCK = old
    base = proposals.fit_valid(96)
    for i in range(5):
        for j in range(3):
            if not np.isfinite(res.hypothesis_scores[i, j]):
                assert np.isnan(fits[i, j])
                continue
            m = display_transform(model_linear_images(sim, res.hypothesis_rotations[i, j], res.hypothesis_centre_px[i, j],
                                                      res.hypothesis_calibration_scale[i, j])[0])
            v = base & valid[i]
            np.testing.assert_allclose(fits[i, j], np.corrcoef(imgs[i][v], m[v])[0, 1], atol=1e-6)
    np.testing.assert_array_equal(best, 0)  # each image's own orientation fits it best
    np.testing.assert_allclose(fit, fits[:, 0])


def test_the_masked_correlations_are_pearson_s_over_each_image_s_valid_pixels():
    # the whole-image fit's batched correlations (compiled float64 sums) against np.corrcoef of
    # the valid pixels, image by image; a flat model or image correlates 0
    from edorient.indexing.matching import masked_correlations

    rng = np.random.default_rng(7)
    for n, w, p in ((6, 1, 4099), (4, 3, 2048), (3, 2, 5)):
        y = (rng.random((n, p)) * (rng.random((n, p)) < 0.3)).astype(np.float32)
        models = (rng.random((n, w, p)) * (rng.random((n, w, p)) < 0.5)).astype(np.float32)
        models[0, 0] = 0.25  # flat
        valid = rng.random((n, p)) < 0.9
        got = masked_correlations(y, models, valid)
        for i in range(n):
            for j in range(w):
                a, b = y[i, valid[i]].astype(float), models[i, j, valid[i]].astype(float)
                want = 0.0 if a.std() == 0 or b.std() == 0 else np.corrcoef(a, b)[0, 1]
                assert abs(got[i, j] - want) < 1e-9, (i, j, got[i, j], want)


def test_models_sharing_an_image_read_it_once_and_correlate_as_with_copies_of_it():
    # image_fit_choice passes each image of a block once with the image of each model
    from edorient.indexing.matching import masked_correlations

    rng = np.random.default_rng(8)
    images = (rng.random((3, 999)) * (rng.random((3, 999)) < 0.2)).astype(np.float32)
    valid = rng.random((3, 999)) < 0.85
    owner = np.array([0, 0, 1, 2, 2, 2, 0])  # (a run broken and resumed too)
    models = rng.random((len(owner), 2, 999)).astype(np.float32)
    np.testing.assert_array_equal(masked_correlations(images, models, valid, owner),
                                  masked_correlations(images[owner], models, valid[owner]))
