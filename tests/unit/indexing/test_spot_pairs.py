"""Orientations from pairs of spots (:mod:`edorient.indexing.pairs`) and the chain's partners
indexed from the peaks an answer grain leaves unexplained."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from edorient.errors import EdorientError
from edorient.indexing import Refiner
from edorient.indexing.pairs import SpotPairIndexer, _peak_labels, orbit_representatives, peak_hits
from edorient.indexing.proposals import pair_partner_hypotheses, spot_pair_indexer
from edorient.indexing.refine import misorientation_deg, proper_rotations
from edorient.physics.orientation import random_rotations
from edorient.render import SimulationConfig, Simulator, display_transform
from edorient.structures import anatase


@pytest.fixture(scope="module")
def sim():
    return Simulator(anatase(), SimulationConfig(image_size=128))


@pytest.fixture(scope="module")
def refiner(sim):
    return Refiner(sim.crystal, sim.config)


def test_one_representative_per_orbit_of_the_proper_rotations(sim):
    """Anatase's reflections fall into orbits of 4/mmm's eight proper rotations; each orbit
    (found here by comparing rotated hkl, not vectors) has exactly one representative, and
    Friedel mates (g, -g) are in one orbit only where a two-fold axis joins them."""
    P = proper_rotations(sim.crystal.laue)
    refl = sim.reflections
    rep = orbit_representatives(refl.g_vectors, P)
    B = sim.crystal.reciprocal_matrix
    hkl_of = {tuple(h): i for i, h in enumerate(np.asarray(refl.hkl, dtype=int).tolist())}
    orbit_id = np.full(len(rep), -1)
    for i, h in enumerate(np.asarray(refl.hkl, dtype=int)):
        if orbit_id[i] >= 0:
            continue
        g = B @ h
        for S in P:
            hs = tuple(np.rint(np.linalg.solve(B, S @ g)).astype(int).tolist())
            orbit_id[hkl_of[hs]] = i
    counts = np.bincount(orbit_id[rep], minlength=len(rep))
    assert (counts[np.unique(orbit_id)] == 1).all()
    # anatase 4/mmm: h k l and -h -k -l share an orbit (the two-fold axes along x or y turn one into the other)
    assert rep.sum() == len(np.unique(orbit_id)) < len(rep) / 4


def test_two_spots_give_back_the_orientation(sim):
    """The brightest spots of noise-free patterns at random orientations (the numpy simulator's
    positions, Å⁻¹): among the rotations of their pairs is one within 2° of the truth (the spot's
    height on the Ewald sphere is known only to its excitation error), and one within 2° is among
    those whose spots hit the most of the spots."""
    P = proper_rotations(sim.crystal.laue)
    ix = SpotPairIndexer(sim.reflections.g_vectors, P, sim.wavelength, length_tol=0.01)
    cal = sim.config.resolved_calibration
    for R in random_rotations(6, rng=34):
        sp = sim.spots(R)
        order = np.argsort(-sp.intensity)[:12]
        vec = sp.position[order, :2]
        C = ix.rotations(vec)
        assert C.ndim == 3 and len(C) > 0
        mis = misorientation_deg(C, R, P)
        assert mis.min() < 2.0
        # rank by spots hit: the pixels of each candidate's spots against the truth's
        r0 = c0 = 64
        peaks = np.stack([r0 - vec[:, 1] / cal, c0 + vec[:, 0] / cal], 1)
        pix, vis = [], []
        for Q in C:
            s = sim.spots(Q)
            p = np.full((len(sim.reflections.g), 2), np.nan)
            v = np.zeros(len(sim.reflections.g), bool)
            p[: len(s.position)] = np.stack([r0 - s.position[:, 1] / cal, c0 + s.position[:, 0] / cal], 1)
            v[: len(s.position)] = s.intensity >= 1e-3
            pix.append(np.nan_to_num(p, nan=-10))
            vis.append(v)
        hits = peak_hits(np.array(pix), np.array(vis), peaks, 128, 2.5)
        assert hits.max() >= 10
        # the truth hits as many as any (another orientation may hit them all too: a pattern's
        # spot positions can be near-symmetric; the whole-image fit decides between them)
        assert mis[hits == hits.max()].min() < 2.0


def test_a_pair_in_either_order_gives_the_same_orientations(sim):
    """Each unordered pair of spots is matched once (the first spot to one reflection of each
    orbit, the second to any): the orientations from spots (a, b) and from (b, a) are the same
    set modulo the crystal's symmetry."""
    P = proper_rotations(sim.crystal.laue)
    ix = SpotPairIndexer(sim.reflections.g_vectors, P, sim.wavelength, length_tol=0.01)
    for R in random_rotations(3, rng=35):
        sp = sim.spots(R)
        v = sp.position[np.argsort(-sp.intensity), :2]
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        vec = v[[0, int(np.argmax(np.abs(u @ u[0]) < 0.9))]]  # the brightest, and the next not in line with it
        A, B = ix.rotations(vec), ix.rotations(vec[::-1])
        assert len(A) > 0 and len(B) > 0
        for X, Y in ((A, B), (B, A)):
            nearest = np.array([misorientation_deg(Y, Q, P).min() for Q in X])
            assert nearest.max() < 1e-4  # degrees (arccos rounding)


def test_peak_label_image_matches_its_definition_at_the_frame_edges():
    """Each peak's disc is stamped in a window around it: the same label image as the disc
    tested over the whole frame, for peaks inside, on and beyond the edges (later peaks over
    earlier ones where discs overlap)."""
    rng = np.random.default_rng(36)
    for _ in range(200):
        size, radius = int(rng.integers(8, 80)), float(rng.uniform(0.3, 6.0))
        peaks = rng.uniform(-8, size + 8, size=(int(rng.integers(0, 30)), 2))
        rr, cc = np.indices((size, size))
        want = np.zeros((size, size), dtype=np.int64)
        for j, (r, c) in enumerate(peaks):
            want[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = j + 1
        assert np.array_equal(_peak_labels(peaks, size, radius), want)


def test_too_few_or_collinear_spots_give_nothing(sim):
    ix = SpotPairIndexer(sim.reflections.g_vectors, proper_rotations(sim.crystal.laue), sim.wavelength, 0.01)
    assert ix.rotations(np.zeros((0, 2))).shape == (0, 3, 3)
    assert ix.rotations(np.array([[0.4, 0.1]])).shape == (0, 3, 3)
    g = 1 / 3.52  # anatase d(101) = 3.52 Å: a spot and its Friedel mate are collinear
    assert ix.rotations(np.array([[g, 0.0], [-g, 0.0]])).shape == (0, 3, 3)
    # lengths no reflection has (d = 50 Å, 40 Å) match nothing
    assert ix.rotations(np.array([[0.02, 0.0], [0.0, 0.025]])).shape == (0, 3, 3)
    with pytest.raises(EdorientError, match="g_vectors"):
        SpotPairIndexer(np.zeros((0, 3)), np.eye(3)[None], 0.025, 0.01)


def test_peak_hits_count_each_peak_once_and_only_visible_in_frame_spots():
    peaks = np.array([[10.0, 10.0], [20.0, 30.0], [50.0, 50.0]])
    pix = np.array([
        [[10.4, 9.7], [11.0, 10.0], [20.0, 31.5], [80.0, 80.0]],  # peaks 1 (twice) and 2: 2
        [[50.0, 50.0], [10.0, 10.0], [20.0, 30.0], [-3.0, 5.0]],  # all three, but the 2nd invisible: 2
        [[-40.0, 10.0], [200.0, 20.0], [5.0, 5.0], [64.0, 64.0]],  # off the frame or no peak: 0
    ])
    vis = np.array([[True] * 4, [True, False, True, True], [True] * 4])
    assert peak_hits(pix, vis, peaks, 64, 2.5).tolist() == [2, 2, 0]
    assert peak_hits(pix, vis, np.zeros((0, 2)), 64, 2.5).tolist() == [0, 0, 0]


def test_the_missed_partner_is_among_the_pair_hypotheses(sim, refiner):
    """Noise-free bicrystals answered with the right first grain and a wrong second one: the
    partners indexed from the peaks the right grain leaves unexplained include the missed
    grain within 2°, paired with the right grain, and the refinement of those pairs reaches it."""
    P = proper_rotations(sim.crystal.laue)
    R = random_rotations(6, rng=77).reshape(3, 2, 3, 3)
    wrong = random_rotations(3, rng=78)
    x = display_transform(0.5 * sim.linear_images(R[:, 0]) + 0.5 * sim.linear_images(R[:, 1]))
    start = np.stack([R[:, 0], wrong], axis=1)[:, None]  # (n, 1 hypothesis, 2 grains)
    res = refiner.refine(x, start)
    assert (misorientation_deg(res.rotations[:, 1], R[:, 1], P) > 5).all()  # the second grain stays wrong
    hyp = pair_partner_hypotheses(refiner, spot_pair_indexer(refiner), x, res, k=3)
    assert hyp.shape == (3, 12, 2, 3, 3)
    kept_first = hyp[:, :6]  # grain 0 kept, its partners second
    np.testing.assert_allclose(kept_first[:, :, 0], np.broadcast_to(res.rotations[:, None, 0], (3, 6, 3, 3)))
    near = misorientation_deg(kept_first[:, :, 1], R[:, None, 1], P).min(axis=1)
    assert (near < 2.0).all(), near
    again = refiner.refine(x, kept_first)
    assert (misorientation_deg(again.rotations[:, 1], R[:, 1], P) < 0.5).all()


def test_the_chain_finds_partners_its_dictionary_missed(sim, refiner):
    """``DictionaryRefined``'s spot-pair partners on 24 noisy bicrystals (dose 500) with a coarse
    dictionary (300 directions, which misses many partners): without the pass 15 have both
    grains within 2°, with it 19 (measured); no image right without it is wrong with it. One
    grain has no partner to look for: the pass needs two grains. The partner passes erase a found
    grain's spots here (``partner_removal`` 'erase'), as when this was measured: subtracting it
    (the default) lets the dictionary find 3 of those partners itself (18 without the pass, 20
    with it, one image lost to it)."""
    from edorient.evaluation.metrics import grain_errors
    from edorient.indexing.estimators import DictionaryRefined
    from edorient.indexing.matching import TemplateMatcher
    from edorient.render import add_noise

    matcher = TemplateMatcher(sim, n_directions=300)
    pairs = random_rotations(48, rng=9).reshape(24, 2, 3, 3)
    lin = sim.linear_images(pairs.reshape(-1, 3, 3)).reshape(24, 2, 128, 128)
    rng = np.random.default_rng(0)
    xb = display_transform(np.stack([add_noise(0.5 * a + 0.5 * b, 500.0, 0.001, rng) for a, b in lin]))
    right = {}
    for k in (0, 3):
        est = DictionaryRefined(matcher, refiner, grains=2, pair_partner_k=k, partner_removal="erase").estimate(xb)
        err, _ = grain_errors(est.directions, pairs[..., 2, :], sim.crystal.laue)
        right[k] = err.max(axis=1) < 2.0
    assert right[3].sum() >= right[0].sum() + 3, (right[0].sum(), right[3].sum())
    assert not (right[0] & ~right[3]).any()
    assert DictionaryRefined(matcher, refiner, grains=1).pair_partner_k == 0
    with pytest.raises(EdorientError, match="pair_partner_k 3 needs two grains"):
        DictionaryRefined(matcher, refiner, grains=1, pair_partner_k=3)
    with pytest.raises(EdorientError, match=r"partner_removal must be one of \('erase', 'subtract'\), not 'blur'"):
        DictionaryRefined(matcher, refiner, grains=2, partner_removal="blur")


def test_the_pair_pass_runs_again_only_on_the_answers_it_moved():
    """``pair_partner_rounds``: the first round takes the images in doubt (flagged or spots
    unexplained), each later one only those whose answer the round before moved (a grain by more
    than 1° modulo the crystal's symmetry, the grains order-free: not a symmetry-equivalent
    matrix, not the grains swapped)."""
    import types

    from edorient.indexing.estimators import DictionaryRefined

    chain = object.__new__(DictionaryRefined)  # the loop alone: no dictionary, no refinement
    chain.fallback_below, chain.partner_ambiguous = 0.95, True
    chain.refiner = types.SimpleNamespace(proper=proper_rotations(anatase().laue))
    calls = []

    def one_pass(x, res, expl, rows):
        calls.append(rows.tolist())
        R = res.rotations.copy()
        if len(calls) == 1:
            R[3] = R[3] @ Rotation.from_euler("z", 5, degrees=True).as_matrix()  # moves image 3
            R[0] = R[0] @ Rotation.from_euler("z", 0.2, degrees=True).as_matrix()  # 0.2°: not moved
            R[4] = R[4, ::-1] @ Rotation.from_euler("z", 90, degrees=True).as_matrix()  # swapped, 4-fold: the same
        return types.SimpleNamespace(rotations=R, ambiguous=res.ambiguous), expl

    chain._pair_pass = one_pass
    res = types.SimpleNamespace(rotations=np.tile(np.eye(3), (5, 2, 1, 1)), ambiguous=np.zeros((5, 2), bool))
    res.ambiguous[0, 1] = True
    expl = np.array([1.0, 1.0, 1.0, 0.8, 0.5])  # images 0 (flagged), 3 and 4 (spots unexplained) in doubt
    for rounds, want in ((1, [[0, 3, 4]]), (2, [[0, 3, 4], [3]]), (3, [[0, 3, 4], [3]])):
        calls.clear()
        chain.pair_partner_rounds = rounds
        chain._pair_passes(None, res, expl)
        assert calls == want


def test_the_chosen_pass_runs_again_on_the_answers_the_later_passes_moved():
    """``late_chosen_rounds``: the chosen answer's partner pass again, at the end, for the images
    whose answer moved since it ran (a grain by more than 1° modulo the crystal's symmetry, the
    grains order-free), each later round only on those the round before moved."""
    import types

    from edorient.indexing.estimators import DictionaryRefined

    chain = object.__new__(DictionaryRefined)  # the loop alone: no dictionary, no refinement
    chain.refiner = types.SimpleNamespace(proper=proper_rotations(anatase().laue))
    before = np.tile(np.eye(3), (5, 2, 1, 1))
    now = before.copy()
    now[1, 0] = Rotation.from_euler("x", 5, degrees=True).as_matrix()  # moved by the later passes
    now[2, 1] = Rotation.from_euler("z", 0.2, degrees=True).as_matrix()  # 0.2°: not moved
    now[3] = now[3, ::-1] @ Rotation.from_euler("z", 90, degrees=True).as_matrix()  # swapped, 4-fold: the same
    now[4, 1] = Rotation.from_euler("y", 30, degrees=True).as_matrix()  # moved
    calls = []

    def one_pass(x, res, expl, rows):
        calls.append(rows.tolist())
        return res, expl, np.array([r == 4 and len(calls) == 1 for r in rows])  # the first round moves image 4

    chain._chosen_pass = one_pass
    res = types.SimpleNamespace(rotations=now)
    for rounds, want in ((0, []), (1, [[1, 4]]), (2, [[1, 4], [4]]), (3, [[1, 4], [4]])):
        calls.clear()
        chain.late_chosen_rounds = rounds
        out, _ = chain._late_chosen_passes(None, res, None, before)
        assert calls == want and out is res
