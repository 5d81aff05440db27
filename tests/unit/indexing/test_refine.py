"""Refinement of orientation proposals (edorient.indexing): the torch spot model against the
simulator, recovery of perturbed orientations (one and two grains, clean and noisy), nuisance
parameters, ambiguity flags and the reported uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edorient.errors import EdorientError
from edorient.indexing import Refiner, SpotModel, beam_tilt_error, misorientation_deg
from edorient.indexing.proposals import half_turn, single_hypotheses
from edorient.indexing.refine import _expmap
from edorient.physics.orientation import random_rotations, rotation_from_zone_axis
from edorient.render import (
    SimulationConfig,
    Simulator,
    add_noise,
    display_transform,
    render_spots,
)
from edorient.structures import anatase

SIZE = 128


@pytest.fixture(scope="module")
def xtal():
    return anatase()


@pytest.fixture(scope="module")
def cfg():
    return SimulationConfig(image_size=SIZE)


@pytest.fixture(scope="module")
def sim(xtal, cfg):
    return Simulator(xtal, cfg)


@pytest.fixture(scope="module")
def refiner(xtal, cfg):
    return Refiner(xtal, cfg)


def _perturb(R: np.ndarray, deg_lo: float, deg_hi: float, rng) -> np.ndarray:
    """Each rotation turned by a random angle in [lo, hi] degrees about a random lab axis."""
    ax = rng.normal(size=R.shape[:-2] + (3,))
    ax /= np.linalg.norm(ax, axis=-1, keepdims=True)
    ang = np.radians(rng.uniform(deg_lo, deg_hi, size=R.shape[:-2]))[..., None]
    return _expmap(torch.as_tensor(ax * ang)).numpy() @ R


def _noisy(lin: np.ndarray, rng, dose=(300.0, 1e5)) -> np.ndarray:
    doses = np.exp(rng.uniform(np.log(dose[0]), np.log(dose[1]), len(lin)))
    return np.stack([add_noise(m, float(d), float(rng.uniform(0, 0.002)), rng) for m, d in zip(lin, doses)])


def _bicrystal(sim, R: np.ndarray, w: np.ndarray) -> np.ndarray:
    la, lb = sim.linear_images(R[:, 0]), sim.linear_images(R[:, 1])
    w = w.astype(np.float32)[:, None, None]
    return w * la + (1 - w) * lb


def _errors(laue, est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Order-free per-grain beam-direction errors (degrees)."""
    if true.shape[1] == 1:
        return laue.angle(est[:, 0], true[:, 0])[:, None]
    same = np.stack([laue.angle(est[:, 0], true[:, 0]), laue.angle(est[:, 1], true[:, 1])], 1)
    swap = np.stack([laue.angle(est[:, 1], true[:, 0]), laue.angle(est[:, 0], true[:, 1])], 1)
    return np.where((swap.sum(1) < same.sum(1))[:, None], swap, same)


# --- the spot model ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, atol_pos", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_spot_model_matches_the_simulator(xtal, cfg, sim, dtype, atol_pos):
    model = SpotModel(xtal, cfg, dtype=dtype)
    R = random_rotations(6, rng=4)
    pos, s, inten = (t.double().numpy() for t in model.spots(R))
    index = model.index.numpy()
    for i, r in enumerate(R):
        ref = sim.spots(r)
        excited = inten[i] >= cfg.min_intensity
        order = np.argsort(ref.index)
        if dtype == torch.float64:  # the same excited set, in full precision
            assert np.array_equal(np.sort(index[excited]), ref.index[order])
        # every excited spot of the simulator is in the model, with the same values
        where = {int(k): j for j, k in enumerate(index)}
        rows = np.array([where[int(k)] for k in ref.index])
        np.testing.assert_allclose(pos[i, rows], ref.position, atol=atol_pos)
        np.testing.assert_allclose(s[i, rows], ref.s, atol=atol_pos)
        np.testing.assert_allclose(inten[i, rows], ref.intensity, rtol=1e-4 if dtype == torch.float32 else 1e-9,
                                   atol=1e-9)


def test_misorientation_is_modulo_proper_rotations(xtal, refiner):
    R = random_rotations(3, rng=1)
    proper = refiner.proper
    assert len(proper) == 8  # 422
    np.testing.assert_allclose(misorientation_deg(R, R @ proper[3], proper), 0.0, atol=1e-5)
    np.testing.assert_allclose(misorientation_deg(half_turn(R), R, np.eye(3)[None]), 180.0, atol=1e-5)


# --- recovery ---------------------------------------------------------------------------------
@pytest.mark.parametrize("noisy", [False, True])
def test_single_crystals_recovered_from_starts_1_to_3_degrees_off(sim, refiner, xtal, noisy):
    rng = np.random.default_rng(7 + noisy)
    R = random_rotations(8, rng)
    lin = sim.linear_images(R)
    x = display_transform(_noisy(lin, rng) if noisy else lin)
    start = _perturb(R, 1.0, 3.0, rng)
    res = refiner.refine(x, start[:, None, None])
    err = _errors(xtal.laue, res.beam_directions, R[:, None, 2])
    before = xtal.laue.angle(start[:, 2], R[:, 2])
    assert np.median(before) > 0.8
    # measured: median 0.002 deg (clean) / 0.01-0.02 deg (noisy), max < 0.1 deg
    assert np.median(err) < (0.02 if not noisy else 0.05)
    assert np.max(err) < 0.3
    assert np.all(misorientation_deg(res.rotations[:, 0], R, refiner.proper) < 0.5)


@pytest.mark.parametrize("noisy", [False, True])
def test_bicrystals_recovered_from_starts_1_to_2_degrees_off(sim, refiner, xtal, noisy):
    rng = np.random.default_rng(21 + noisy)
    R = random_rotations(16, rng).reshape(8, 2, 3, 3)
    w = rng.uniform(0.35, 0.65, len(R))
    lin = _bicrystal(sim, R, w)
    x = display_transform(_noisy(lin, rng) if noisy else lin)
    start = _perturb(R, 1.0, 2.0, rng)
    res = refiner.refine(x, start[:, None])
    err = _errors(xtal.laue, res.beam_directions, R[..., 2, :])
    # measured: median ~0.01 deg (clean) / ~0.02 deg (noisy); a grain whose spots hide under the
    # other's may miss, hence the looser per-grain bound
    assert np.median(err) < (0.03 if not noisy else 0.06)
    assert np.mean(err < 0.3) >= 0.85
    np.testing.assert_allclose(res.ratio, w, atol=0.05)


def test_refinement_keeps_the_best_of_several_hypotheses(sim, refiner, xtal):
    rng = np.random.default_rng(3)
    R = random_rotations(4, rng)
    x = display_transform(sim.linear_images(R))
    wrong = random_rotations(4, rng)
    hyp = np.stack([wrong, _perturb(R, 0.5, 1.0, rng), half_turn(wrong)], 1)[:, :, None]
    res = refiner.refine(x, hyp)
    assert res.best.tolist() == [1, 1, 1, 1]
    assert res.hypothesis_scores.shape == (4, 3)
    assert np.all(_errors(xtal.laue, res.beam_directions, R[:, None, 2]) < 0.05)


# --- nuisance ---------------------------------------------------------------------------------
def _shifted_image(xtal, cfg, R, offset_rc, scale):
    """Display image of R with the direct beam (and every spot) moved by ``offset_rc`` pixels
    and a calibration ``scale`` times the configured one."""
    cal = cfg.resolved_calibration * scale
    sp = Simulator(xtal, SimulationConfig(image_size=cfg.image_size, calibration=cal)).spots(R)
    shift = np.array([offset_rc[1] * cal, -offset_rc[0] * cal])  # (x, y) in 1/Å for (rows, cols)
    pos = np.concatenate([sp.position, np.zeros((1, 2))]) + shift
    inten = np.concatenate([sp.intensity, [1.0]])
    lin = render_spots(pos, inten, cfg.image_size, cal, cfg.spot_sigma_px, direct_beam=0.0)
    return display_transform(lin)


def test_centre_offset_and_calibration_error_recovered(xtal, cfg, refiner):
    rng = np.random.default_rng(5)
    R = random_rotations(4, rng)
    offsets = np.array([[1.3, -1.7], [-2.0, 0.6], [0.8, 1.9], [-1.1, -1.4]])
    scales = np.array([1.05, 0.95, 1.04, 0.96])
    x = np.stack([_shifted_image(xtal, cfg, r, o, k) for r, o, k in zip(R, offsets, scales)])
    res = refiner.refine(x, _perturb(R, 0.5, 1.0, rng)[:, None, None])
    np.testing.assert_allclose(res.centre_px, offsets, atol=0.05)
    np.testing.assert_allclose(res.calibration_scale, scales, rtol=2e-3)
    assert np.all(_errors(xtal.laue, res.beam_directions, R[:, None, 2]) < 0.05)
    # with the nuisance frozen the fit is worse
    frozen = Refiner(xtal, cfg, fit_centre=False, fit_scale=False)
    worse = frozen.refine(x, _perturb(R, 0.5, 1.0, rng)[:, None, None])
    assert np.all(worse.scores < res.scores)


# --- ambiguity --------------------------------------------------------------------------------
def test_an_exact_zone_axis_and_its_half_turn_are_flagged_ambiguous(xtal, sim, refiner):
    """At the exact [111] zone axis (no 2-fold axis along it in 422, no higher-order Laue zone
    inside a 128 px image) R and Rz(180°) R give the same pattern but are distinct orientations."""
    rng = np.random.default_rng(2)
    R = rotation_from_zone_axis([1, 1, 1], xtal.direct_matrix, inplane_deg=17.0)
    assert misorientation_deg(R, half_turn(R), refiner.proper) > 30  # distinct (58.7°)
    x = display_transform(add_noise(sim.linear_image(R), 1e4, 1e-3, rng))[None]
    res = refiner.refine(x, np.stack([R, half_turn(R)])[None, :, None])
    assert res.ambiguous[0, 0]
    assert res.margin_chi2[0, 0] < 5
    assert abs(res.hypothesis_scores[0, 0] - res.hypothesis_scores[0, 1]) < 1e-3


def test_a_clear_case_is_not_ambiguous(xtal, sim, refiner):
    rng = np.random.default_rng(9)
    R = random_rotations(4, rng)
    x = display_transform(_noisy(sim.linear_images(R), rng, dose=(1e3, 1e4)))
    hyp = np.stack([_perturb(R, 0.5, 1.0, rng), half_turn(R), random_rotations(4, rng)], 1)[:, :, None]
    res = refiner.refine(x, hyp)
    assert res.best.tolist() == [0, 0, 0, 0]
    assert not res.ambiguous.any()
    assert np.all(res.margin_chi2 > 100)
    # one hypothesis only: no competitor, not ambiguous
    single = refiner.refine(x, hyp[:, :1])
    assert np.all(np.isinf(single.margin)) and not single.ambiguous.any()


# --- uncertainty ------------------------------------------------------------------------------
def test_reported_uncertainty_covers_the_true_error(xtal, sim, refiner):
    rng = np.random.default_rng(12)
    R = random_rotations(16, rng)
    x = display_transform(_noisy(sim.linear_images(R), rng))
    res = refiner.refine(x, _perturb(R, 0.5, 2.0, rng)[:, None, None])
    err = beam_tilt_error(res.rotations[:, 0], R[:, 2], xtal.laue)  # (n, 2) degrees
    cov = res.tilt_covariance[:, 0]
    m2 = np.einsum("ni,nij,nj->n", err, np.linalg.inv(cov), err)
    # measured: ~90 % inside the 95 % ellipse; within 3 sigma for nearly all
    assert np.mean(m2 <= 9.0) >= 0.75
    sigma = res.uncertainty_deg[:, 0]
    assert np.all((sigma > 1e-4) & (sigma < 0.5))
    # the scalar: |error| within 3 reported sigma for most grains
    assert np.mean(np.hypot(*err.T) <= 3 * sigma) >= 0.75


# --- API ----------------------------------------------------------------------------------------
def test_refine_checks_its_input(refiner):
    with pytest.raises(EdorientError):
        refiner.refine(np.zeros((2, SIZE, SIZE)), np.tile(np.eye(3), (3, 1, 1, 1, 1)))
    with pytest.raises(EdorientError):
        refiner.refine(np.zeros((1, 64, 64)), np.eye(3)[None, None, None])
    with pytest.raises(EdorientError):
        refiner.refine(np.zeros((1, SIZE, SIZE)), np.tile(np.eye(3), (1, 1, 3, 1, 1)))


def test_single_hypotheses_from_template_matching(xtal):
    from edorient.indexing.matching import TemplateMatcher

    cfg = SimulationConfig(image_size=96)
    sim = Simulator(xtal, cfg)
    matcher = TemplateMatcher(sim, n_directions=60)
    R = random_rotations(2, rng=8)
    x = sim.images(R)
    hyp = single_hypotheses(matcher, x)
    assert hyp.shape == (2, 4, 1, 3, 3)
    np.testing.assert_allclose(hyp[:, 2], half_turn(hyp[:, 0]))
    # the other family's start has the antipodal beam direction
    np.testing.assert_allclose(hyp[:, 1, 0, 2], -hyp[:, 0, 0, 2], atol=1e-9)
    res = Refiner(xtal, cfg).refine(x, hyp)
    assert res.rotations.shape == (2, 1, 3, 3)


def test_refine_bicrystals_second_pass_runs_and_keeps_a_good_pair(xtal, sim, refiner):
    from edorient.indexing.matching import TemplateMatcher
    from edorient.indexing.proposals import refine_bicrystals

    rng = np.random.default_rng(31)
    R = random_rotations(4, rng).reshape(2, 2, 3, 3)
    x = display_transform(_bicrystal(sim, R, np.array([0.5, 0.45])))
    matcher = TemplateMatcher(sim, n_directions=60)
    start = _perturb(R, 0.5, 1.0, rng)[:, None]  # a good first pass: the second must keep it
    res = refine_bicrystals(refiner, matcher, x, start, passes=2)
    assert res.rotations.shape == (2, 2, 3, 3)
    assert res.hypothesis_scores.shape == (2, 6)
    assert np.all(_errors(xtal.laue, res.beam_directions, R[..., 2, :]) < 0.1)


def test_a_frame_wider_than_the_detector_refines_with_its_valid_area(sim, refiner, xtal):
    # an outer ring that holds no data (a detector narrower than the working frame): read as
    # zeros it pulls the orientation toward fewer spots there; with `valid` the refinement is as
    # good as on the whole pattern. Measured: median 0.15° without, 0.005° with, 0.002° whole.
    rng = np.random.default_rng(31)
    R = random_rotations(6, rng)
    lin = sim.linear_images(R)
    r0 = (SIZE - 1) / 2
    rr, cc = np.indices((SIZE, SIZE))
    inside = (np.abs(rr - r0) <= 44) & (np.abs(cc - r0) <= 44)  # a detector of 89 px in a 128 px frame
    blank = display_transform(np.where(inside, lin, 0.0))
    start = _perturb(R, 1.0, 2.0, rng)
    valid = np.broadcast_to(inside, blank.shape)
    masked = _errors(xtal.laue, refiner.refine(blank, start[:, None, None], valid=valid).beam_directions, R[:, None, 2])
    unmasked = _errors(xtal.laue, refiner.refine(blank, start[:, None, None]).beam_directions, R[:, None, 2])
    assert np.max(masked) < 0.1 and np.median(masked) < 0.03
    assert np.median(unmasked) > 3 * np.median(masked)
    with pytest.raises(EdorientError, match="valid must be"):
        refiner.refine(blank, start[:, None, None], valid=inside)


# --- the compiled objective -------------------------------------------------------------------
def _objective_case(xtal, G: int, shape: str = "sinc2", n_neighbours: int = 2, masked: bool = False,
                    use_direct_beam: bool = False, seed: int = 3, blur_px: float = 1.2):
    """A refiner, a level and a state (h = 3 hypotheses of 4 images, 0.3-1° off their truth, the
    centre up to 1 px off) on simulated one- or two-grain images."""
    from dataclasses import replace

    from edorient.indexing.refine import DEFAULT_LEVELS, _to_linear

    rng = np.random.default_rng(seed)
    cfg = SimulationConfig(image_size=SIZE, shape=shape)
    sim = Simulator(xtal, cfg)
    n, h = 4, 3
    R = random_rotations(n * G, rng=seed).reshape(n, G, 3, 3)
    lin = _bicrystal(sim, R, np.full(n, 0.6)) if G == 2 else sim.linear_images(R[:, 0])
    img = display_transform(lin)
    ref = Refiner(xtal, cfg, n_neighbours=n_neighbours, use_direct_beam=use_direct_beam)
    valid = None
    if masked:  # a beam stop's shadow and a dead band: the kernel reads the fourth channel
        valid = torch.ones(n, SIZE, SIZE, dtype=torch.bool)
        valid[:, 60:68, :70] = False
        valid[:, :, 100:104] = False
    feats = ref._filtered(_to_linear(torch.as_tensor(img, dtype=torch.float32)), blur_px, valid)
    starts = _perturb(np.repeat(R, h, axis=0), 0.3, 1.0, rng)
    Rt = torch.as_tensor(starts, dtype=torch.float32)
    p = torch.zeros(n * h, 5)
    p[:, :2] = torch.as_tensor(rng.uniform(-1, 1, (n * h, 2)), dtype=torch.float32)
    p[:, 2] = 0.01
    p[:, 3] = 0.55 if G == 2 else 1.0
    p[:, 4] = 0.002
    lv = ref._make_level(replace(DEFAULT_LEVELS[0], blur_px=blur_px), feats, Rt, p)
    return ref, lv, Rt, p, n, h


@pytest.mark.parametrize("G, shape, n_neighbours, masked, use_direct_beam", [
    (1, "sinc2", 2, False, False),
    (2, "sinc2", 2, True, False),
    (1, "gaussian", 0, True, True),
    (2, "gaussian", 3, False, True),
])
def test_the_compiled_objective_matches_the_tensor_one(xtal, G, shape, n_neighbours, masked, use_direct_beam):
    ref, lv, R, p, n, h = _objective_case(xtal, G, shape, n_neighbours, masked, use_direct_beam)
    assert ref.compiled  # the default on the CPU in float32
    got = ref._normal_equations(lv, R, p, n, h)
    ref.compiled = False
    want = ref._normal_equations(lv, R, p, n, h)
    nP = 3 * G + 5
    assert got[0].shape == (n * h, nP, nP) and got[1].shape == (n * h, nP)
    assert torch.equal(got[4], want[4].to(got[4].dtype))  # the same valid samples
    assert float(got[4].min()) > 20
    for name, a, b in zip(("JtJ", "Jtr", "rss", "corr"), got, want):
        b = b.double()
        scale = float(b.abs().max())
        assert scale > 0, name
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=2e-5 * scale, err_msg=name)


def _smooth_features(n: int, rng, width: float = 5.0, bumps: int = 60) -> torch.Tensor:
    """(n, 3, H, W) image features whose derivative channels are the exact derivatives of a
    smooth image (a sum of broad Gaussians), so that a central difference of the bilinear
    samples over a few tenths of a pixel measures the same derivative as the analytic one."""
    r, c = np.mgrid[:SIZE, :SIZE].astype(float)
    out = np.zeros((n, 3, SIZE, SIZE))
    for i in range(n):
        for rk, ck, ak in zip(*rng.uniform(0, SIZE, (2, bumps)), rng.uniform(0.01, 0.3, bumps)):
            e = ak * np.exp(-((r - rk) ** 2 + (c - ck) ** 2) / (2 * width**2))
            out[i, 0] += e
            out[i, 1] -= e * (r - rk) / width**2
            out[i, 2] -= e * (c - ck) / width**2
    return torch.as_tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("G", [1, 2])
def test_the_objective_gradient_is_the_derivative_of_the_residual(xtal, G):
    """Jᵀr is half the derivative of |r|² = 1 - c²: checked by central differences in every
    parameter (tilts and in-plane turn of each grain about the lab axes, centre, scale, ratio,
    background) on a smooth image (exact gradient channels), where no sample leaves the valid
    set between the two difference points (the objective jumps there)."""
    ref, lv, R, p, n, h = _objective_case(xtal, G)
    lv.feats = _smooth_features(n, np.random.default_rng(5))
    R64, p64 = R.double(), p.double()
    _, gvec, _, _, nw0 = ref._normal_equations(lv, R, p, n, h)
    nP, o = 3 * G + 5, 3 * G
    # positions move by ~0.03 px (an in-plane turn or a scale change at 60 px), tilts by 0.01°
    eps = np.array([2e-4, 2e-4, 5e-4] * G + [0.03, 0.03, 5e-4, 2e-3, 2e-4])
    fd = np.zeros((n * h, nP))
    smooth = np.ones((n * h, nP), dtype=bool)
    for a in range(nP):
        rss = []
        for sgn in (1, -1):
            Ra, pa = R64.clone(), p64.clone()
            if a < o:
                rot = torch.zeros(n * h, G, 3, dtype=torch.float64)
                rot[:, a // 3, a % 3] = sgn * eps[a]
                Ra = _expmap(rot) @ R64
            else:
                pa[:, a - o] += sgn * eps[a]
            _, _, r2, _, nw = ref._normal_equations(lv, Ra.float(), pa.float(), n, h)
            rss.append(r2.numpy())
            smooth[:, a] &= (nw == nw0).numpy()
        fd[:, a] = (rss[0] - rss[1]) / (2 * eps[a])
    if G == 1:  # one grain: the ratio is not a parameter of the model
        fd[:, o + 3] = 0.0
    an = 2 * gvec.numpy()
    assert smooth.mean() > 0.9  # measured 0.95 and 0.98
    for b in range(n * h):  # per hypothesis, relative to its gradient's size
        tol = 0.02 * np.abs(fd[b]).max()  # measured at most 1.3 %
        np.testing.assert_allclose(an[b, smooth[b]], fd[b, smooth[b]], rtol=0, atol=tol, err_msg=f"hypothesis {b}")


def test_compiled_and_tensor_refinements_agree(xtal, sim):
    rng = np.random.default_rng(11)
    R = random_rotations(6, rng=11)
    img = display_transform(sim.linear_images(R))
    starts = _perturb(R, 1.0, 2.0, rng)[:, None, None]
    fast_ref = Refiner(xtal, SimulationConfig(image_size=SIZE))
    fast = fast_ref.refine(img, starts)
    slow = Refiner(xtal, SimulationConfig(image_size=SIZE), compiled=False).refine(img, starts)
    # The two objectives agree to ~1e-5 (test_the_compiled_objective_matches_the_tensor_one), but near a
    # noise-free optimum the objective is flat to float32 precision over a few hundredths of a
    # degree, and where a path ends in that flat region depends on the order of the tensor path's
    # float32 sums, which torch picks by the CPU's vector width: 0.01° apart at most on the
    # machines before, up to 0.023° on an AVX-512 machine (2026-12-05), both ends within 0.022° of
    # the truth. So: the same optimum, to the refinement's own precision on these images.
    true_fast = misorientation_deg(fast.rotations[:, 0], R, fast_ref.proper)
    true_slow = misorientation_deg(slow.rotations[:, 0], R, fast_ref.proper)
    assert true_fast.max() < 0.05 and true_slow.max() < 0.05, (true_fast, true_slow)
    assert misorientation_deg(fast.rotations[:, 0], slow.rotations[:, 0], fast_ref.proper).max() < 0.05
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-5)
    np.testing.assert_allclose(fast.uncertainty_deg, slow.uncertainty_deg, rtol=1e-2)


def test_the_compiled_objective_is_refused_off_the_cpu_float32(xtal, cfg):
    with pytest.raises(EdorientError, match="compiled objective"):
        Refiner(xtal, cfg, dtype=torch.float64, compiled=True)
    assert not Refiner(xtal, cfg, dtype=torch.float64).compiled


@pytest.mark.parametrize("G, n_neighbours", [(1, 2), (2, 3), (1, 0)])
def test_compiled_neighbour_lists_are_the_nearest_spots(xtal, G, n_neighbours):
    """The compiled search finds the same neighbours as the tensor one (distances; which of two
    spots at exactly the same distance is taken may differ: the spot lattice makes such ties)."""
    ref, lv, R, p, n, h = _objective_case(xtal, G, n_neighbours=n_neighbours)
    row, col, _ = ref._geometry(lv, R, p)[:3]

    def lists(compiled):
        ref.compiled = compiled
        ref._neighbours(lv, R, p)
        d = (row[..., None] - torch.gather(row, 1, lv.nb.reshape(len(row), -1)).reshape(lv.nb.shape)) ** 2 \
            + (col[..., None] - torch.gather(col, 1, lv.nb.reshape(len(row), -1)).reshape(lv.nb.shape)) ** 2
        return torch.where(lv.nb_ok, d, -1.0), lv.nb_ok.clone(), lv.nb.clone()

    d_fast, ok_fast, nb_fast = lists(True)
    d_ref, ok_ref, _ = lists(False)
    assert torch.equal(ok_fast, ok_ref)
    assert bool(ok_fast.any()) == (n_neighbours > 0)
    torch.testing.assert_close(d_fast, d_ref, rtol=0, atol=0)
    own = torch.arange(nb_fast.shape[1])[None, :, None]
    assert not bool((ok_fast & (nb_fast == own)).any())  # never itself


def test_refine_takes_read_only_inputs(xtal, sim, refiner):
    """Read-only images, starts and a broadcast validity mask (a memory-mapped file, a shared
    mask) reach the compiled objective as the writable ones do."""
    R = random_rotations(2, rng=4)
    img = display_transform(sim.linear_images(R)).astype(np.float32)
    ro, S = img.copy(), R[:, None, None].astype(np.float32)
    ro.flags.writeable = False
    S.flags.writeable = False
    valid = np.broadcast_to(np.ones((SIZE, SIZE), dtype=bool), img.shape)
    a = refiner.refine(ro, S, valid=valid)
    b = refiner.refine(img, S.copy(), valid=np.ones(img.shape, dtype=bool))
    np.testing.assert_array_equal(a.rotations, b.rotations)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_the_tilt_searchs_sinc_squared_is_numpys():
    """The tilt search's relrod shape (``refine._sinc2``, a cheaper form of ``torch.sinc(x) ** 2``)
    against numpy's sinc: the same to float32 rounding, 1 at 0, even, 0 at the integers."""
    import torch

    from edorient.indexing.refine import _sinc2

    x = np.linspace(-40.0, 40.0, 20001)
    got = _sinc2(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got, np.sinc(x) ** 2, rtol=0, atol=1e-6)
    assert _sinc2(torch.zeros(1))[0] == 1.0
    np.testing.assert_array_equal(got, got[::-1])
    assert np.all(_sinc2(torch.arange(1.0, 30.0)).numpy() < 1e-12)


def test_the_tilt_searchs_correlations_are_the_explicitly_centred_ones():
    """``refine._weighted_correlations`` (three sums a model) against the correlation computed as
    its definition says, in float64: image values and models centred with the same 0/1 weights
    (mean over ``max(Σ w, 2)``), then ``Σ yc mc / (|yc| |mc|)``. Rows with no, one and all spots
    valid, display-like values (0-7) whose spread is small beside their mean."""
    from edorient.indexing.refine import _weighted_correlations

    rng = np.random.default_rng(8)
    B, K, T = 40, 30, 17
    w = (rng.random((B, K)) > 0.3).astype(float)
    w[0] = 0.0
    w[1] = 0.0
    w[1, 4] = 1.0
    w[2] = 1.0
    y = rng.uniform(3.0, 7.0, (B, K))
    m = 5.0 + rng.uniform(-1.0, 1.0, (B, K, T)) * rng.uniform(0.01, 1.0, (B, 1, 1))
    nw = np.maximum(w.sum(1, keepdims=True), 2.0)
    yc = w * (y - (w * y).sum(1, keepdims=True) / nw)
    mc = w[..., None] * (m - (w[..., None] * m).sum(1, keepdims=True) / nw[..., None])
    want = (yc[..., None] * mc).sum(1) / np.maximum(np.linalg.norm(yc, axis=1)[:, None] * np.linalg.norm(mc, axis=1),
                                                    1e-12)
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    got = _weighted_correlations(f32(yc), f32(w), f32(m)).double().numpy()
    assert got.shape == (B, T)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # measured 1.5e-6
    assert np.all(got[0] == 0.0)  # no valid spot: no correlation
    assert np.abs(want[3:]).max() > 0.5  # the values compared are not all ~0
    # the best model of each row is the explicitly centred one's (or as good to float32 precision)
    best = got.argmax(1)
    assert np.all(want[np.arange(B), best] >= want.max(1) - 1e-5)
