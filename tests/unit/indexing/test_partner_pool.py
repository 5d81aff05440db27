"""Partner candidates re-ranked by the whole-image fit, and the compiled greedy pick of distinct
dictionary labels."""

from __future__ import annotations

import numpy as np
import pytest

from edorient.indexing import Refiner
from edorient.indexing.matching import TemplateMatcher, model_linear_images
from edorient.indexing.proposals import (DictionaryProposals, erase_grain, partner_candidates,
                                         ranked_by_image_fit)
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator, add_noise, display_transform
from edorient.structures import anatase


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=128))


@pytest.fixture(scope="module")
def matcher300(sim):
    return TemplateMatcher(sim, n_directions=300)


def _greedy_reference(order, gbest, far, k):
    kept = [int(order[0])]
    for q in order[1:]:
        if len(kept) >= k or gbest[q] == -np.inf:
            break
        if far[q, kept].all():
            kept.append(int(q))
    return kept


def test_the_compiled_greedy_pick_is_the_python_rule():
    """Distinct groups best first, each far from all kept before it; an unread group (-inf)
    ends the run; k caps it. Random symmetric 'far' relations of several densities."""
    from edorient.indexing._kernels import greedy_groups

    rng = np.random.default_rng(3)
    for trial in range(200):
        g = int(rng.integers(1, 60))
        far = rng.random((g, g)) < rng.uniform(0.1, 0.95)
        far = far & far.T
        np.fill_diagonal(far, False)
        gbest = rng.normal(size=g)
        gbest[rng.random(g) < 0.2] = -np.inf
        order = np.argsort(-gbest, kind="stable").astype(np.int64)
        k = int(rng.integers(1, 15))
        kept = np.empty(k, dtype=np.int64)
        n = greedy_groups(order, gbest, np.ascontiguousarray(far), k, kept)
        assert kept[:n].tolist() == _greedy_reference(order, gbest, far, k), trial


def test_the_true_orientation_fits_best_among_candidates(sim):
    """A noisy one-grain image drawn with its centre moved and its calibration scaled: among
    eight candidates the true orientation is ranked first when the candidates are drawn with the
    image's centre and scale; the ranking keeps k, ordered by fit, and k >= K keeps them all."""
    from edorient.indexing.matching import masked_correlations
    from edorient.indexing.proposals import fit_valid

    rng = np.random.default_rng(8)
    R = random_rotations(16, rng=8).reshape(2, 8, 3, 3)
    truth = np.array([5, 2])
    cen = np.array([[1.5, -2.0], [0.0, 0.7]])
    scale = np.array([1.03, 0.98])
    lin = model_linear_images(sim, R[np.arange(2), truth], cen, scale)
    x = display_transform(np.stack([add_noise(m, 3e3, 0.001, rng) for m in lin]))
    top = ranked_by_image_fit(sim, x, R, 3, cen, scale)
    assert top.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(top[:, 0], R[np.arange(2), truth])
    # best first: the kept candidates' fits do not increase
    models = display_transform(model_linear_images(sim, top.reshape(-1, 3, 3), np.repeat(cen, 3, 0),
                                                   np.repeat(scale, 3))).reshape(2, 3, -1)
    base = np.broadcast_to(fit_valid(128).reshape(1, -1), (2, 128 * 128))
    fits = masked_correlations(x.reshape(2, -1), models, base)
    assert np.all(np.diff(fits, axis=1) <= 1e-9)
    np.testing.assert_array_equal(ranked_by_image_fit(sim, x, R, 8), R)


def test_partner_candidates_rerank_the_dictionarys_pool(sim, matcher300):
    """On a bicrystal with grain A's refined spots erased: without a pool (or a pool no larger
    than k) the dictionary's own best; with one, k of the dictionary's ``pool`` best, the ones
    ranked_by_image_fit puts first, drawn at grain A's refined centre and scale."""
    pairs = random_rotations(8, rng=31).reshape(4, 2, 3, 3)
    lin = sim.linear_images(pairs.reshape(-1, 3, 3)).reshape(4, 2, 128, 128)
    x = display_transform(0.5 * lin[:, 0] + 0.5 * lin[:, 1])
    refiner = Refiner(sim.crystal, sim.config)
    one = refiner.refine(x, pairs[:, :1, None])
    erased = erase_grain(refiner, one, x, 0)
    prop = DictionaryProposals(matcher300, k=2, max_frequency=60, n_angles=120)
    own = prop.candidates(erased, 2)[0]
    np.testing.assert_allclose(partner_candidates(prop, erased, 2, one, None), own)
    np.testing.assert_allclose(partner_candidates(prop, erased, 2, one, 2), own)
    pool = prop.candidates(erased, 8, certain=2)[0]
    got = partner_candidates(prop, erased, 2, one, 8)
    np.testing.assert_allclose(got, ranked_by_image_fit(sim, erased, pool, 2, one.centre_px, one.calibration_scale))
    # each kept candidate is one of the pool's
    d = np.abs(got[:, :, None] - pool[:, None]).max(axis=(-1, -2))
    assert np.all(d.min(-1) < 1e-12)


@pytest.mark.parametrize("projected", [False, True])
def test_a_pool_read_is_certain_of_its_first_candidates_only(sim, matcher300, projected):
    """``candidates(k, certain=c)`` on the pruned read: the first c are the full correlation's
    (rotations and scores), all k are distinct labels scored exactly, fewer entries are read
    than for k certain ones, and ``certain`` = k is the plain read. ``projected``: the full
    correlation of the projected entries."""
    rng = np.random.default_rng(4)
    R = random_rotations(24, rng=4).reshape(12, 2, 3, 3)
    lin = 0.5 * (sim.linear_images(R[:, 0]) + sim.linear_images(R[:, 1]))
    x = display_transform(np.stack([add_noise(m, float(d), 0.001, rng) for m, d in zip(lin, rng.uniform(300, 3e4, 12))]))
    kw = dict(max_frequency=60, n_angles=120, chunk=12)
    full = DictionaryProposals(matcher300, pruned=False, projected=projected, **kw)
    if projected:
        full._factorisation()
    prop = DictionaryProposals(matcher300, projected=projected, **kw)
    a_rot, a_sc = full.candidates(x, k=10)
    b_rot, b_sc = prop.candidates(x, k=10, certain=3)
    np.testing.assert_allclose(b_rot[:, :3], a_rot[:, :3], atol=1e-6)
    np.testing.assert_allclose(b_sc[:, :3], a_sc[:, :3], atol=2e-6)
    # the others: exact correlations of distinct labels (their own best angle, as the full read's)
    laue = sim.crystal.laue
    exact = full.correlations(x, projected=projected).numpy().max(-1)  # (n, entries)
    for i in range(len(x)):
        lab = laue.reduce(b_rot[i, :, 2])
        assert np.all(laue.apart(lab, lab, prop.separation_deg)[np.triu_indices(10, 1)])
        assert np.abs(b_sc[i][:, None] - exact[i][None].astype(float)).min(1).max() < 2e-6
    read_some = np.isfinite(prop._best_entries(prop._image_spectra(x), 10, 3)[0]).sum()
    read_all = np.isfinite(prop._best_entries(prop._image_spectra(x), 10)[0]).sum()
    assert read_some < read_all
    np.testing.assert_allclose(prop.candidates(x, k=10, certain=10)[1], a_sc, atol=2e-6)


def test_the_pool_finds_partners_the_dictionary_ranks_low(sim, matcher300):
    """Clean 0.5:0.5 bicrystals (seeds 9 and 10) with the chain's partner pass from the chosen
    answer and its spot-pair partners off, so that the first search (from two first grains, as
    before :data:`~edorient.indexing.estimators.FIRSTS`) and the gated pass are compared: without
    the pool 11 of 16 have both grains within 1° (image 9 has one 17° off), with the pool (20)
    13 (measured), and no image within 1° without the pool ends worse than 1° with it."""
    from edorient.evaluation.metrics import grain_errors
    from edorient.indexing.estimators import PARTNER_POOL, DictionaryRefined

    pairs = np.concatenate([random_rotations(16, rng=s).reshape(8, 2, 3, 3) for s in (9, 10)])
    lin = sim.linear_images(pairs.reshape(-1, 3, 3)).reshape(16, 2, 128, 128)
    xb = display_transform(0.5 * lin[:, 0] + 0.5 * lin[:, 1])
    refiner = Refiner(sim.crystal, sim.config)
    err = {}
    for pool in (None, PARTNER_POOL):
        est = DictionaryRefined(matcher300, refiner, grains=2, chosen_partner_k=0, pair_partner_k=0,
                                partner_pool=pool, firsts=2).estimate(xb)
        err[pool] = grain_errors(est.directions, pairs[..., 2, :], sim.crystal.laue)[0].max(axis=1)
    on = err[PARTNER_POOL]
    assert err[None][9] > 2 and on[9] < 1, (err[None], on)
    assert np.sum(on < 1) >= np.sum(err[None] < 1) + 2, (err[None], on)
    assert np.all(on[err[None] < 1] < 1), on


def test_subtracting_a_grain_keeps_the_other_grains_share_of_their_common_spots(sim):
    """``subtract_grain`` removes grain A's refined model scaled to the image (0.6:0.4,
    noise-free): A's own spots go, B's stay at their linear intensity, also where a spot of B lies
    on one of A, which ``erase_grain``'s discs take away. Grain A looks down a low-index zone;
    B is A tilted 25° about A's brightest reflection g, so that B's g and -g stay where A's are.
    The scale is a median over A's brightest pixels: right while fewer than half of them are B's
    too (13-45 % here; at 60 % it takes B's share as well, measured)."""
    from scipy.spatial.transform import Rotation

    from edorient.indexing.proposals import subtract_grain
    from edorient.physics.orientation import rotation_from_zone_axis
    from edorient.render import inverse_display_transform

    A = np.stack([rotation_from_zone_axis(z, sim.crystal.direct_matrix, ang)
                  for z, ang in (([0, 0, 1], 10.0), ([1, 0, 0], 20.0), ([1, 1, 1], 30.0))])
    B = []
    for a in A:
        _, _, pos, _, inten = (np.asarray(v) for v in sim.spots_batch(a[None]))
        j = np.argmax(np.where(np.hypot(*pos.T) > 0.3, inten, -1))  # (pos: the lab x, y of g)
        B.append(Rotation.from_rotvec(np.radians(25.0) * np.append(pos[j], 0.0) / np.hypot(*pos[j])).as_matrix() @ a)
    pairs = np.stack([A, np.array(B)], axis=1)
    lin = sim.linear_images(pairs.reshape(-1, 3, 3)).reshape(3, 2, 128, 128)
    x = display_transform(0.6 * lin[:, 0] + 0.4 * lin[:, 1])
    refiner = Refiner(sim.crystal, sim.config)
    res = refiner.refine(x, pairs[:, None])
    sub = inverse_display_transform(subtract_grain(sim, res, x, 0))
    erased = inverse_display_transform(erase_grain(refiner, res, x, 0))
    # the grains' diffracted spots (no direct beam), away from the direct beam's tails
    la, lb = (model_linear_images(sim, pairs[:, g]) for g in (0, 1))
    r, c = np.mgrid[:128, :128] - 63.5
    far = (r * r + c * c > 8**2)[None]
    a_bright = far & (la > 0.3 * la.max(axis=(1, 2), keepdims=True))
    b_bright = far & (lb > 0.3 * lb.max(axis=(1, 2), keepdims=True))
    a_lit, b_lit = (v > 0.05 * v.max(axis=(1, 2), keepdims=True) for v in (la, lb))
    shared = (a_bright & b_lit).sum(axis=(1, 2)) / a_bright.sum(axis=(1, 2))
    assert np.all((shared > 0.1) & (shared < 0.5)), shared
    b_share = 0.4 * lb
    only_a, both = a_bright & ~b_lit, a_bright & b_bright
    only_b = far & (lb > 0.1 * lb.max(axis=(1, 2), keepdims=True)) & ~a_lit  # (B's brightest are the shared g, -g)
    assert only_a.sum() > 100 and only_b.sum() >= 5 and both.sum() > 20, (only_a.sum(), only_b.sum(), both.sum())
    # A's spots gone (what is left of them is below 5 % of what they were), B's as they were
    assert np.all(sub[only_a] < 0.05 * (0.6 * la[only_a]) + 1e-4)
    np.testing.assert_allclose(sub[only_b], b_share[only_b], rtol=0.03)
    # where both grains light a pixel, B's share is kept by the subtraction, lost by the erasing
    np.testing.assert_allclose(sub[both], b_share[both], rtol=0.05)
    assert np.all(erased[both] < 0.1 * b_share[both])
    # the dispatch the partner passes use: either way by name, nothing else
    from edorient.errors import EdorientError
    from edorient.indexing.proposals import remove_grain

    np.testing.assert_array_equal(remove_grain(refiner, sim, res, x, 0, "subtract"), subtract_grain(sim, res, x, 0))
    np.testing.assert_array_equal(remove_grain(refiner, sim, res, x, 0, "erase"), erase_grain(refiner, res, x, 0))
    with pytest.raises(EdorientError, match=r"one of \('erase', 'subtract'\), not 'blur'"):
        remove_grain(refiner, sim, res, x, 0, "blur")
