"""Batched sub-degree refinement of orientation proposals against the image.

A proposal is one orientation ``R`` per grain (one or two grains per image), e.g. from
:class:`~edorient.indexing.matching.TemplateMatcher` or a CNN direction scored by
:class:`~edorient.indexing.matching.PatternScorer` (:mod:`edorient.indexing.proposals`). The
refinement fits the kinematic model of :mod:`edorient.physics.pattern` to the display-transformed
image, for all hypotheses of all images at once (one tensor per chunk of images, no loop over
images or hypotheses).

Parameters (frames and units: :mod:`edorient.conventions`)
---------------------------------------------------------
For grain ``j`` the hypothesis is ``exp([δ_j]×) R_j`` (``δ_j`` a small rotation in the *lab*
frame: ``δ_x, δ_y`` tilt the beam direction, ``δ_z`` turns the pattern in plane; after each step
``R_j`` absorbs it). Shared per image: the direct-beam offset (rows, cols) in pixels, the
calibration scale ``κ`` (the image's calibration is ``κ`` times the configured one), the weight
``r`` of grain A (two grains) and a uniform linear background ``β``. Reflection ``g`` (crystal
frame) of grain ``j`` sits at ``g_lab = R_j g``: pixel ``(r0 + c_row - g_lab,y / (κ cal), c0 +
c_col + g_lab,x / (κ cal))``, excitation error ``s = g_lab,z - λ|g|²/2``, linear peak
``Q = w_j rel_g shape(t s)`` (``w = r, 1 - r``; ``rel = SPOT_SCALE |F|² / max``).

Objective
---------
The image is taken back to linear intensity (inverse display transform), blurred by a Gaussian
(``blur_px``) and sampled bilinearly on a five-point stencil around every predicted spot (its
centre and four points one blurred spot-sigma away: a position error changes those to first
order) and around the direct beam. The model there is the blurred Gaussian of the spot, plus the
tails of its nearest neighbours (either grain, the direct beam) and the background; model and
samples both go through the display transform, so the comparison weighs faint and bright spots
like the displayed image does. The objective is the correlation of the two over the valid
samples (insensitive to brightness scale and offset), maximised by Levenberg-Marquardt on the
normalised residual ``ŷ - c m̂`` (``|·|² = 1 - c²``) with an analytic Jacobian
(``∂g_lab/∂δ = δ × g_lab``, image gradients, chain rule through centring and normalisation).
Only reflections that can be excited within ``margin_deg`` of the level's start (peak
>= ``min_intensity``) enter, padded and masked to one K per chunk. On the CPU the objective's
normal equations (``JᵀJ``, ``Jᵀr``) and each spot's neighbours come from compiled kernels
(:mod:`edorient.indexing._refine_kernels`, one pass a hypothesis, 1.5-4.5x faster); the tensor
evaluation is their reference in the tests and the path on CUDA.

Before the iterations of a level, the tilt of every grain is searched on a grid (the image is
sampled once at the current spot centres; only the excitation errors change with a small tilt),
which widens the basin from ~1° to the search radius (3° by default).

Output
------
The score of a hypothesis is the final correlation; per image the best hypothesis wins (after
the first level only the best and its best distinct competitor are refined further). Each
grain's *margin* is the score gap to the best hypothesis whose orientation of that grain is
distinct (misorientation modulo the crystal's proper rotations > ``distinct_deg``), also as
``margin_chi2`` (the residual difference in units of the residual variance), and the grain is
*ambiguous* when ``margin_chi2 < ambiguity_chi2``. The uncertainty is the Gauss-Newton
covariance ``σ² (JᵀJ)⁻¹`` at the optimum (``σ²`` = residual variance), marginalised over the
nuisance parameters and scaled by ``uncertainty_scale`` (2.15: neighbouring samples share noise
through the blur and the stencil; calibrated end to end by benchmarks/bench_accuracy.py on 80
noisy 128 px bicrystals of a calibration seed, so that 95 % of the converged grains lie inside
their 95 % ellipse (97.4 % on 100 test bicrystals); noise-free images and single crystals asked
for ~1.75 on 30 images, so there it errs wide. The margins' chi-square keeps 1.8 whatever the
scale, so calibrating the uncertainty does not move the ``ambiguous`` flag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edorient import conventions as cv
from edorient.errors import EdorientError
from edorient.indexing import _refine_kernels as _rk
from edorient.physics.crystal import Crystal
from edorient.physics.symmetry import misorientation_deg, proper_rotations
from edorient.physics.pattern import ExcitationBounds
from edorient.physics.reflections import compute_reflections
from edorient.physics.wavelength import electron_wavelength
from edorient.render import SimulationConfig

__all__ = [
    "DEFAULT_LEVELS",
    "RefineLevel",
    "RefineResult",
    "Refiner",
    "SpotModel",
    "beam_tilt_error",
    "misorientation_deg",
    "proper_rotations",
]


# --------------------------------------------------------------------------------------------
# small rotation helpers (torch, batched)
# --------------------------------------------------------------------------------------------
def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    return torch.stack(
        [
            torch.stack([z, -v[..., 2], v[..., 1]], -1),
            torch.stack([v[..., 2], z, -v[..., 0]], -1),
            torch.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def _expmap(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues: exp([v]×) for rotation vectors v (..., 3) -> (..., 3, 3)."""
    th2 = (v * v).sum(-1, keepdim=True)[..., None]
    th = th2.sqrt()
    small = th2 < 1e-12
    safe = torch.where(small, torch.ones_like(th), th)
    a = torch.where(small, 1 - th2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - th2 / 24, (1 - torch.cos(safe)) / (safe * safe))
    K = _skew(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(K.shape)
    return eye + a * K + b * (K @ K)


def _orthonormalise(R: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (one Newton step of the polar decomposition, enough for drift ~1e-6)."""
    return 1.5 * R - 0.5 * R @ R.transpose(-1, -2) @ R


def beam_tilt_error(R_est: np.ndarray, d_true: np.ndarray, laue) -> np.ndarray:
    """Error of the beam direction of ``R_est`` (..., 3, 3) against the true beam direction(s)
    ``d_true`` (..., 3), as the lab tilt (δ_x, δ_y) in degrees (the frame of
    :attr:`RefineResult.tilt_covariance`): the true direction is first brought by the Laue group
    to its equivalent nearest the estimate, so ``|error|`` is :meth:`LaueGroup.angle` (to first
    order).

    Examples
    --------
    >>> from edorient.physics.symmetry import laue_group
    >>> from edorient.physics.orientation import rotation_from_direction
    >>> R = rotation_from_direction([0.3, 0.2, 0.9])
    >>> d = R.T @ np.array([0.01, 0.0, 1.0]); d /= np.linalg.norm(d)
    >>> np.round(beam_tilt_error(R, d, laue_group("-1")), 3).tolist()
    [0.0, -0.573]
    """
    R_est = np.asarray(R_est, dtype=float)
    d_est = R_est[..., 2, :]
    d_true = np.asarray(d_true, dtype=float)
    d_true = d_true / np.linalg.norm(d_true, axis=-1, keepdims=True)
    eq = np.einsum("mij,...j->...mi", np.asarray(laue.ops), d_true)  # (..., m, 3)
    best = np.argmax(np.einsum("...mi,...i->...m", eq, d_est), axis=-1)
    d_eq = np.take_along_axis(eq, best[..., None, None], axis=-2)[..., 0, :]
    v = np.einsum("...ij,...j->...i", R_est, d_eq)  # the true direction in the lab frame
    # a lab rotation δ moves the beam direction to R^T (-δ_y, δ_x, 1) (first order)
    ang = np.arctan2(np.hypot(v[..., 0], v[..., 1]), v[..., 2])
    nrm = np.hypot(v[..., 0], v[..., 1])
    scale = np.where(nrm > 0, ang / np.where(nrm > 0, nrm, 1.0), 0.0)
    return np.degrees(np.stack([v[..., 1] * scale, -v[..., 0] * scale], -1))


# --------------------------------------------------------------------------------------------
# the spot model
# --------------------------------------------------------------------------------------------
class SpotModel:
    """Reflections of a crystal as torch tensors, and the kinematic spots of orientations.

    The same physics as :meth:`edorient.render.Simulator.spots` (positions ``g_lab[:2]`` in Å⁻¹,
    ``s = g_lab,z - λ|g|²/2``, peak ``rel · shape(t s)``), for a batch of rotations and any
    subset of reflections, differentiable in torch.
    """

    def __init__(self, crystal: Crystal, config: SimulationConfig | None = None, device="cpu",
                 dtype: torch.dtype = torch.float32, min_intensity: float | None = None) -> None:
        self.config = config or SimulationConfig()
        c = self.config
        self.crystal = crystal
        self.wavelength = electron_wavelength(c.voltage_kv)
        self.reflections = compute_reflections(crystal, c.resolved_g_max)
        mi = c.min_intensity if min_intensity is None else float(min_intensity)
        self.bounds = ExcitationBounds.build(self.reflections, self.wavelength, c.thickness, c.shape, mi)
        self.device = torch.device(device)
        self.dtype = dtype
        # only reflections that can reach min_intensity at all
        keep = self.bounds.possible
        self.index = torch.as_tensor(keep, device=self.device)
        t = lambda a: torch.as_tensor(np.asarray(a)[keep], dtype=dtype, device=self.device)
        self.g = t(self.reflections.g_vectors)  # (N, 3)
        self.g_len = t(self.reflections.g)
        self.rel = t(self.bounds.rel)
        self.sag = t(self.bounds.half_lg2)
        self.s_max = t(self.bounds.s_max)

    def shape(self, s: torch.Tensor, thickness: float | None = None) -> torch.Tensor:
        t = self.config.thickness if thickness is None else thickness
        if self.config.shape == "sinc2":
            return torch.sinc(t * s) ** 2
        return torch.exp(-math.pi * (t * s) ** 2)

    def spots(self, rotations) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions (B, N, 2) Å⁻¹, excitation errors (B, N) and peak intensities (B, N) of every
        possible reflection (:attr:`index` rows of the simulator's reflections) for (B, 3, 3)."""
        R = torch.as_tensor(np.asarray(rotations), dtype=self.dtype, device=self.device).reshape(-1, 3, 3)
        gl = torch.einsum("bij,nj->bni", R, self.g)
        s = gl[..., 2] - self.sag
        return gl[..., :2], s, self.rel * self.shape(s)


# --------------------------------------------------------------------------------------------
# image side
# --------------------------------------------------------------------------------------------
_LOG1PK = math.log1p(cv.DISPLAY_GAIN)


def grain_distances(hypotheses: np.ndarray, grain: np.ndarray, g: int, proper: np.ndarray, laue) -> tuple[np.ndarray, np.ndarray]:
    """How far each hypothesis (n, h, G, 3, 3) lies from grain ``g``'s orientation ``grain``
    (n, 3, 3): (misorientation (n, h) modulo ``proper``, angle (n, h) between the beam directions
    modulo ``laue``); for two grains the nearer of a hypothesis' two slots (the grain may sit in
    either)."""
    H = np.asarray(hypotheses)
    Rg = np.broadcast_to(np.asarray(grain)[:, None], H.shape[:2] + (3, 3))
    beam = Rg[:, :, 2]  # (the beam direction in the crystal frame: row 2)
    mis = misorientation_deg(H[:, :, g], Rg, proper)
    dang = laue.angle(H[:, :, g, 2], beam)
    if H.shape[2] == 2:
        mis = np.minimum(mis, misorientation_deg(H[:, :, 1 - g], Rg, proper))
        dang = np.minimum(dang, laue.angle(H[:, :, 1 - g, 2], beam))
    return mis, dang


def _kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Discrete Gaussian (normalised) and its derivative, radius ceil(3.5 sigma)."""
    r = max(1, math.ceil(3.5 * sigma))
    x = np.arange(-r, r + 1, dtype=float)
    k = np.exp(-x * x / (2 * sigma * sigma))
    k /= k.sum()
    return k, -x / (sigma * sigma) * k


def _to_linear(images01: torch.Tensor) -> torch.Tensor:
    """Inverse display transform (values at 1 stay 1: the transform clips there)."""
    return torch.expm1(images01.clamp(0, 1) * _LOG1PK) / cv.DISPLAY_GAIN


def _display(lin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Display transform and its derivative (0 above 1, where it clips)."""
    k = cv.DISPLAY_GAIN
    x = lin.clamp(0, 1)
    d = torch.where((lin > 1) | (lin < 0), torch.zeros_like(lin), k / ((1 + k * x) * _LOG1PK))
    return torch.log1p(k * x) / _LOG1PK, d


def _display_value(lin: torch.Tensor) -> torch.Tensor:
    """:func:`_display`'s transform without its derivative (the tilt search reads only the
    values; the derivative was half of the search's time)."""
    return torch.log1p(cv.DISPLAY_GAIN * lin.clamp(0, 1)) / _LOG1PK


def _sinc2(x: torch.Tensor) -> torch.Tensor:
    """``torch.sinc(x) ** 2`` as ``(sin u / u)²`` with ``u = |πx|`` (at least 1e-12, where the
    quotient is 1): the same values to ~2e-7 (float32 rounding), in half the time on this CPU
    (``torch.sinc`` took ~10 ns an element; the tilt search evaluates it on every reflection
    of every hypothesis at every trial tilt)."""
    u = (math.pi * x).abs_().clamp_(min=1e-12)
    return torch.sin(u).div_(u).square_()


def _weighted_correlations(yc: torch.Tensor, wts: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
    """(B, T) correlations of image values ``yc`` (B, K), already centred with weights ``wts``
    (B, K) of 0 or 1 (``yc = w (y - Σ w y / nw)``, ``nw = max(Σ w, 2)``), with T models ``mod``
    (B, K, T) centred the same way: ``Σ yc mc / (|yc| |mc|)``, ``mc = w (m - μ)``,
    ``μ = Σ w m / nw``.

    By batched products over K (Σ w m, then Σ yc (m - μ) and Σ w (m - μ)²; ``mod`` is
    overwritten) instead of elementwise passes that centre and weight the (B, K, T) models: 3x
    faster in the tilt search. The models are centred before the squares are summed (summing
    Σ w m² - (Σ w m)² / nw in float32 loses the variance of models whose values hardly differ)."""
    nw = wts.sum(-1, keepdim=True).clamp(min=2)
    mod -= (torch.einsum("bk,bkt->bt", wts, mod) / nw)[:, None, :]
    dot = torch.einsum("bk,bkt->bt", yc, mod)
    var = torch.einsum("bk,bkt->bt", wts, mod.square_())
    return dot / (yc.norm(dim=-1, keepdim=True) * var.sqrt()).clamp(min=1e-12)


def _stencil(radius: float) -> np.ndarray:
    """Sample offsets (rows, cols) around each predicted spot: its centre and four points at
    ``radius`` along ±rows and ±cols (a position error changes these to first order, where the
    centre alone, at the peak, changes only to second order)."""
    return np.array([[0.0, 0.0], [radius, 0.0], [-radius, 0.0], [0.0, radius], [0.0, -radius]])


@dataclass
class _Level:
    """What one level needs: filtered images, the selected reflections and their neighbours."""

    spec: RefineLevel
    feats: torch.Tensor  # (n, 3, H, W): blurred linear image, d/drow, d/dcol
    sigma: float  # spot sigma after the blur (px)
    offsets: torch.Tensor  # (S, 2)
    g_o: torch.Tensor  # (S,) Gaussian of the offsets
    amp: float  # peak of a blurred spot / its peak before
    thick: float
    gsel: torch.Tensor  # (B, G, K, 3)
    relsel: torch.Tensor
    sagsel: torch.Tensor
    valid: torch.Tensor  # (B, G, K) bool
    nb: torch.Tensor | None = None  # (B, Ks, Nn) neighbour spot indices
    nb_ok: torch.Tensor | None = None  # (B, Ks, Nn) bool


# --------------------------------------------------------------------------------------------
# the objective: correlation of samples and model
# --------------------------------------------------------------------------------------------
def _centre(v: torch.Tensor, wts: torch.Tensor, nw: torch.Tensor) -> torch.Tensor:
    """Weighted centring over the points axis (1) of (B, M) or (B, M, P) arrays."""
    if v.dim() == 3:
        mean = (wts[..., None] * v).sum(1, keepdim=True) / nw[:, None, None]
        return wts[..., None] * (v - mean)
    return wts * (v - ((wts * v).sum(1, keepdim=True) / nw[:, None]))


def _unit(vc: torch.Tensor, dvc: torch.Tensor):
    """Normalise centred samples and propagate their derivatives: (v̂, dv̂)."""
    nrm = vc.norm(dim=1).clamp(min=1e-12)
    u = vc / nrm[:, None]
    du = (dvc - u[..., None] * (u[..., None] * dvc).sum(1, keepdim=True)) / nrm[:, None, None]
    return u, du


def _correlation_residuals(y, m, dy, dm, wts):
    """Residual ``ŷ - c m̂`` (|r|² = 1 - c²), its Jacobian, the correlation c and the point count."""
    nw = wts.sum(1).clamp(min=2)
    yh, dyh = _unit(_centre(y, wts, nw), _centre(dy, wts, nw))
    mh, dmh = _unit(_centre(m, wts, nw), _centre(dm, wts, nw))
    c = (yh * mh).sum(1)
    res = yh - c[:, None] * mh
    dc = (dyh * mh[..., None]).sum(1) + (yh[..., None] * dmh).sum(1)  # (B, P)
    J = dyh - c[:, None, None] * dmh - mh[..., None] * dc[:, None, :]
    return res, J, c, nw


# --------------------------------------------------------------------------------------------
# configuration and result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefineLevel:
    """One coarse-to-fine stage.

    Attributes
    ----------
    blur_px
        Gaussian blur (sigma, pixels) of the image before sampling.
    relrod_scale
        Model thickness = ``relrod_scale * thickness``: < 1 broadens the relrods (measured: it
        moves the optimum, so the defaults keep 1).
    iterations
        Levenberg-Marquardt iterations.
    margin_deg
        Reflections kept: those that can be excited within this rotation of the level's start.
    max_step_deg
        Largest rotation step per iteration.
    stencil_px
        Distance of the four outer samples of each spot from its centre; None:
        ``hypot(spot sigma, blur_px)``.
    search_deg, search_step_deg
        Before the iterations, the beam tilt of every grain is searched on a grid of this
        radius and step around the current orientation (0: no search); see
        :meth:`Refiner._tilt_search`.
    """

    blur_px: float
    relrod_scale: float = 1.0
    iterations: int = 8
    margin_deg: float = 1.0
    max_step_deg: float = 1.0
    stencil_px: float | None = None
    search_deg: float = 0.0
    search_step_deg: float = 0.5


#: Default schedule: a 3° tilt search and 3 iterations, then a 1° search and 4 iterations
#: (measured in benchmarks/bench_refine.py: more iterations did not lower the errors).
DEFAULT_LEVELS: tuple[RefineLevel, ...] = (
    RefineLevel(blur_px=1.2, iterations=3, margin_deg=3.5, max_step_deg=1.0, search_deg=3.0),
    RefineLevel(blur_px=1.2, iterations=4, margin_deg=1.5, max_step_deg=0.5, search_deg=1.0),
)


@dataclass
class RefineResult:
    """Refined orientations and their diagnostics (numpy).

    Attributes
    ----------
    rotations
        (n, g, 3, 3) refined orientation of each grain (the best hypothesis).
    scores
        (n,) correlation of the best hypothesis' model with the image samples.
    best
        (n,) index of the best hypothesis.
    uncertainty_deg
        (n, g) one-sigma RMS error of the beam direction (degrees): ``sqrt(tr C)`` of the tilt
        covariance ``C`` (:attr:`tilt_covariance`).
    tilt_covariance
        (n, g, 2, 2) covariance (deg²) of the lab tilt angles (δ_x, δ_y) of each grain.
    inplane_uncertainty_deg
        (n, g) one-sigma error of the in-plane angle (degrees).
    margin
        (n, g) score of the best hypothesis minus that of the best hypothesis whose orientation of
        that grain is distinct; ``inf`` when there is none.
    margin_chi2
        (n, g) the same gap as the difference of the normalised residuals ``1 - c²`` over the
        best fit's (scaled) residual variance: a chi-square-like distance.
    ambiguous
        (n, g) ``margin_chi2 < ambiguity_chi2``: another, distinct orientation fits about as well.
    direction_margin_chi2, direction_ambiguous
        The same against hypotheses whose beam direction differs modulo the Laue group (another
        zone, not only another in-plane angle or mirror family): whether the *label* is in doubt.
        On an exact zone axis with a mirror, the mirror family fits equally (``ambiguous``) but
        the zone is certain (not ``direction_ambiguous``).
    centre_px
        (n, 2) direct-beam offset (rows, cols) from the centre pixel.
    calibration_scale
        (n,) image calibration / configured calibration.
    ratio
        (n,) intensity weight of grain A (1 for single crystals).
    background
        (n,) uniform background (linear intensity).
    hypothesis_scores, hypothesis_rotations
        (n, h) and (n, h, g, 3, 3): every hypothesis where it ended (those dropped after an
        early level keep that level's score).
    hypothesis_centre_px, hypothesis_calibration_scale
        (n, h, 2) and (n, h): each hypothesis' own fitted centre offset and calibration scale
        (a wrong orientation can pull them far from the right one's).
    """

    rotations: np.ndarray
    scores: np.ndarray
    best: np.ndarray
    uncertainty_deg: np.ndarray
    tilt_covariance: np.ndarray
    inplane_uncertainty_deg: np.ndarray
    margin: np.ndarray
    margin_chi2: np.ndarray
    ambiguous: np.ndarray
    direction_margin_chi2: np.ndarray
    direction_ambiguous: np.ndarray
    centre_px: np.ndarray
    calibration_scale: np.ndarray
    ratio: np.ndarray
    background: np.ndarray
    hypothesis_scores: np.ndarray
    hypothesis_rotations: np.ndarray
    hypothesis_centre_px: np.ndarray
    hypothesis_calibration_scale: np.ndarray

    @property
    def beam_directions(self) -> np.ndarray:
        """(n, g, 3) beam directions ``R.T e_z`` of the refined orientations (crystal frame)."""
        return self.rotations[..., 2, :].copy()


#: Noise scale of the margins' chi-square (``ambiguity_chi2`` was set with it); kept apart from
#: :attr:`Refiner.uncertainty_scale` so that calibrating the uncertainty leaves the flag alone.
_MARGIN_NOISE_SCALE = 1.8


# --------------------------------------------------------------------------------------------
# the refiner
# --------------------------------------------------------------------------------------------
class Refiner:
    """Batched Levenberg-Marquardt refinement of orientation hypotheses (see the module doc).

    Parameters
    ----------
    crystal, config
        The crystal and the simulation parameters of the images (size, calibration, thickness,
        spot sigma, voltage).
    device, dtype
        Torch device ("cpu", "cuda") and float type.
    levels
        Coarse-to-fine schedule (:data:`DEFAULT_LEVELS`).
    fit_centre, fit_scale, fit_ratio
        Which nuisance parameters are free (centre offset, calibration scale, grain ratio).
    distinct_deg
        Hypotheses whose orientations differ by more than this (modulo proper rotations) count
        as distinct for the margin.
    ambiguity_chi2
        A grain is ambiguous when its ``margin_chi2`` is below this.
    chunk
        Images refined per batch (bounds memory: a batch holds chunk x hypotheses x spots x 5
        samples x parameters floats).
    max_centre_px, max_scale_dev
        Bounds of the centre offset (pixels) and of the calibration scale's deviation from 1.
    n_neighbours
        Neighbouring spots whose tails enter each spot's model (0: none).
    min_intensity
        Reflections whose peak cannot reach this (relative to the direct beam) are left out of
        the model (3e-3: measured no less accurate than 1e-4 and twice as fast).
    uncertainty_scale
        Factor on the Gauss-Newton standard errors (see the module doc).
    keep
        Hypotheses per image refined after the first level (the best and its best distinct
        competitors first); None: all.
    use_direct_beam
        Whether the direct beam's samples count in the correlation.
    compiled
        Evaluate the objective with the compiled CPU kernel (:meth:`_normal_equations`); None:
        where it can (CPU, float32); False: with torch tensor operations (the path on CUDA).

    Examples
    --------
    >>> from edorient.structures import anatase
    >>> from edorient.render import Simulator
    >>> from edorient.physics.orientation import random_rotations
    >>> cfg = SimulationConfig(image_size=64)
    >>> R = random_rotations(1, rng=3)
    >>> img = Simulator(anatase(), cfg).images(R)
    >>> res = Refiner(anatase(), cfg).refine(img, R[:, None, None])
    >>> res.rotations.shape, res.uncertainty_deg.shape
    ((1, 1, 3, 3), (1, 1))
    """

    def __init__(self, crystal: Crystal, config: SimulationConfig | None = None, device="cpu",
                 dtype: torch.dtype = torch.float32, levels=DEFAULT_LEVELS, fit_centre: bool = True,
                 fit_scale: bool = True, fit_ratio: bool = True, distinct_deg: float = 3.0,
                 ambiguity_chi2: float = 25.0, chunk: int = 64, max_centre_px: float = 4.0,
                 max_scale_dev: float = 0.15, n_neighbours: int = 2,
                 min_intensity: float | None = 3e-3, uncertainty_scale: float = 2.15,
                 keep: int | None = 2, use_direct_beam: bool = False, compiled: bool | None = None) -> None:
        self.model = SpotModel(crystal, config, device, dtype, min_intensity)
        self.config = self.model.config
        self.crystal = crystal
        self.device, self.dtype = self.model.device, dtype
        self.levels = tuple(levels)
        self.fit_centre, self.fit_scale, self.fit_ratio = fit_centre, fit_scale, fit_ratio
        self.distinct_deg = float(distinct_deg)
        self.ambiguity_chi2 = float(ambiguity_chi2)
        self.chunk = int(chunk)
        self.max_centre_px = float(max_centre_px)
        self.max_scale_dev = float(max_scale_dev)
        self.n_neighbours = int(n_neighbours)
        self.uncertainty_scale = float(uncertainty_scale)
        self.keep = None if keep is None else max(1, int(keep))
        self.use_direct_beam = bool(use_direct_beam)
        cpu32 = torch.device(self.device).type == "cpu" and dtype == torch.float32
        if compiled and not cpu32:
            raise EdorientError(f"the compiled objective runs on the CPU in float32, not {self.device} {dtype}; "
                                "leave compiled=None")
        self.compiled = cpu32 if compiled is None else bool(compiled)
        self.proper = proper_rotations(crystal.laue)
        self._kern: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- image side ---------------------------------------------------------------------------
    def _filtered(self, lin: torch.Tensor, blur: float, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 3, H, W): the linear image blurred (separable Gaussian, edges replicated) and its
        row and column derivatives (central differences); with ``valid`` (n, H, W) bool a fourth
        channel, 1 where the image holds data (written in place: appended by ``torch.cat``, a
        copy of the three, 0.06 ms an image)."""
        k, _ = _kernels(blur)
        r = len(k) // 2
        n, H, W = lin.shape
        # each pass a sum of shifted copies of the edge-padded image: 8x faster on the CPU than
        # F.conv1d over n * H one-channel rows (0.16 against 1.4 ms a 128 px image, same values
        # to 1e-7), and the refinement filters every image it is given
        out = torch.empty(n, 3 if valid is None else 4, H, W, dtype=lin.dtype, device=lin.device)
        if valid is not None:
            out[:, 3] = valid
        x = F.pad(lin[:, None], (r, r, 0, 0), mode="replicate")[:, 0]
        cols = x[:, :, r : r + W] * float(k[r])
        for j in range(len(k)):
            if j != r:
                cols.add_(x[:, :, j : j + W], alpha=float(k[j]))
        x = F.pad(cols[:, None], (0, 0, r, r), mode="replicate")[:, 0]
        yb = out[:, 0]
        torch.mul(x[:, r : r + H], float(k[r]), out=yb)
        for j in range(len(k)):
            if j != r:
                yb.add_(x[:, j : j + H], alpha=float(k[j]))
        yr, yc = out[:, 1], out[:, 2]
        yr[:, 1:-1] = 0.5 * (yb[:, 2:] - yb[:, :-2])
        yr[:, 0], yr[:, -1] = yb[:, 1] - yb[:, 0], yb[:, -1] - yb[:, -2]
        yc[:, :, 1:-1] = 0.5 * (yb[:, :, 2:] - yb[:, :, :-2])
        yc[:, :, 0], yc[:, :, -1] = yb[:, :, 1] - yb[:, :, 0], yb[:, :, -1] - yb[:, :, -2]
        return out

    # -- reflection selection -----------------------------------------------------------------
    def _select(self, R: torch.Tensor, margin_deg: float, scale: torch.Tensor, pad_px: float):
        """Indices (B, G, K) into the model's reflections and a validity mask: the reflections
        that can be excited within ``margin_deg`` and fall on the image (plus ``pad_px``)."""
        m = self.model
        gl = torch.einsum("bgij,nj->bgni", R, m.g)
        s = gl[..., 2] - m.sag
        reach = m.g_len * math.radians(margin_deg)
        half = (self.config.image_size / 2 + pad_px) * self.config.resolved_calibration * scale[:, None, None]
        ok = ((s.abs() - reach) <= m.s_max) & (gl[..., 0].abs() < half) & (gl[..., 1].abs() < half)
        K = max(int(ok.sum(-1).max()), 1)
        val, idx = torch.topk(ok.to(self.dtype), K, dim=-1)
        return idx, val > 0

    def _neighbours(self, lv: _Level, R: torch.Tensor, p: torch.Tensor) -> None:
        """For every spot the ``n_neighbours`` nearest other spots (any grain, the direct beam
        included) within reach of its stencil: their tails are added to its model."""
        row, col, _ = self._geometry(lv, R, p)[:3]
        B, Ks = row.shape
        valid = torch.cat([lv.valid.reshape(B, -1), torch.ones(B, 1, dtype=torch.bool, device=self.device)], 1)
        reach = float(lv.offsets.abs().max()) + 5.0 * lv.sigma + 2.0
        Nn = min(max(self.n_neighbours, 1), Ks - 1)
        if self.compiled:
            nb_idx, nb_ok = _rk.nearest_spots(row.contiguous().numpy(), col.contiguous().numpy(), valid.numpy(), Nn,
                                              reach if self.n_neighbours > 0 else 0.0)
            lv.nb, lv.nb_ok = torch.from_numpy(nb_idx), torch.from_numpy(nb_ok)
            return
        nbs, oks = [], []
        for lo in range(0, B, 256):
            r, c, v = row[lo : lo + 256], col[lo : lo + 256], valid[lo : lo + 256]
            d2 = (r[:, :, None] - r[:, None, :]) ** 2 + (c[:, :, None] - c[:, None, :]) ** 2
            d2 = d2.masked_fill(~v[:, None, :], float("inf"))
            d2.diagonal(dim1=1, dim2=2).fill_(float("inf"))
            dv, di = torch.topk(d2, Nn, dim=-1, largest=False)
            nbs.append(di)
            oks.append((dv < reach * reach) & (self.n_neighbours > 0))
        lv.nb, lv.nb_ok = torch.cat(nbs), torch.cat(oks)

    # -- one evaluation -------------------------------------------------------------------------
    def _geometry(self, lv: _Level, R: torch.Tensor, p: torch.Tensor, derivatives: bool = False):
        """Spot rows, cols, peaks (B, Ks) with the direct beam last; with ``derivatives`` also
        their derivatives by parameter (B, Ks, nP)."""
        cfg = self.config
        B, G, K = lv.valid.shape
        cal = cfg.resolved_calibration
        r0, c0 = cv.centre_pixel(cfg.image_size)
        dt, dev = self.dtype, self.device
        crow, ccol, logk, ratio = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        inv = (1.0 / (cal * torch.exp(logk)))[:, None, None]
        gl = torch.einsum("bgij,bgkj->bgki", R, lv.gsel)  # (B,G,K,3)
        s = gl[..., 2] - lv.sagsel
        x = lv.thick * s
        if cfg.shape == "sinc2":
            sx = torch.sinc(x)
            shape = sx * sx
        else:
            shape = torch.exp(-math.pi * x * x)
        w = torch.stack([ratio, 1 - ratio], 1)[:, :, None] if G == 2 else torch.ones(B, 1, 1, dtype=dt, device=dev)
        P = lv.relsel * shape
        one = torch.ones(B, 1, dtype=dt, device=dev)
        row = torch.cat([(r0 + crow[:, None, None] - gl[..., 1] * inv).reshape(B, -1), (r0 + crow)[:, None]], 1)
        col = torch.cat([(c0 + ccol[:, None, None] + gl[..., 0] * inv).reshape(B, -1), (c0 + ccol)[:, None]], 1)
        Q = torch.cat([(w * P).reshape(B, -1), float(cfg.direct_beam) * one], 1)
        if not derivatives:
            return row, col, Q
        if cfg.shape == "sinc2":
            tiny = x.abs() < 1e-6
            xs = torch.where(tiny, torch.ones_like(x), x)
            dsinc = torch.where(tiny, torch.zeros_like(x), (torch.cos(math.pi * x) - sx) / xs)
            dshape = 2 * sx * dsinc * lv.thick
        else:
            dshape = -2 * math.pi * x * lv.thick * shape
        Ks, nP, o = G * K + 1, 3 * G + 5, 3 * G
        drow = torch.zeros(B, Ks, nP, dtype=dt, device=dev)
        dcol = torch.zeros_like(drow)
        dQ = torch.zeros_like(drow)
        gx, gy, gz = gl[..., 0], gl[..., 1], gl[..., 2]
        zero = torch.zeros_like(gx)
        dg = ((zero, -gz, gy), (gz, zero, -gx), (-gy, gx, zero))  # d g_lab / d delta_j = e_j x g_lab
        dQ_ds = w * lv.relsel * dshape
        for j in range(3):
            ex, ey, ez = dg[j]
            for gi in range(G):
                sl = slice(gi * K, (gi + 1) * K)
                drow[:, sl, 3 * gi + j] = -ey[:, gi] * inv[:, 0]
                dcol[:, sl, 3 * gi + j] = ex[:, gi] * inv[:, 0]
                dQ[:, sl, 3 * gi + j] = dQ_ds[:, gi] * ez[:, gi]
        drow[:, :, o] = 1.0
        dcol[:, :, o + 1] = 1.0
        drow[:, :-1, o + 2] = (gy * inv).reshape(B, -1)
        dcol[:, :-1, o + 2] = (-gx * inv).reshape(B, -1)
        if G == 2:
            dQ[:, :K, o + 3] = P[:, 0]
            dQ[:, K : 2 * K, o + 3] = -P[:, 1]
        return row, col, Q, drow, dcol, dQ

    def _evaluate(self, lv: _Level, R: torch.Tensor, p: torch.Tensor, n_img: int, h: int):
        """Normalised residuals (B, M), their Jacobian (B, M, P), the correlation (B,) and the
        number of points (B,).

        Every spot (and the direct beam) is sampled on a small stencil (:func:`_stencil`) in the
        blurred linear image; the model there is its Gaussian (sigma of spot and blur together)
        plus its neighbours' tails plus the background, and both go through the display
        transform. Both are centred and normalised over the valid points; the residual
        ``ŷ - c m̂`` (``c = ŷ·m̂``, the correlation) has squared norm ``1 - c²``, so minimising it
        maximises the correlation, which neither the brightness scale nor an offset of the image
        can change.
        """
        H = W = self.config.image_size
        row, col, Q, drow, dcol, dQ = self._geometry(lv, R, p, derivatives=True)
        B, Ks, nP = drow.shape
        Q, dQ = Q * lv.amp, dQ * lv.amp  # peak of a spot after the blur
        off = lv.offsets
        S = off.shape[0]
        prow = row[..., None] + off[:, 0]  # (B, Ks, S)
        pcol = col[..., None] + off[:, 1]
        grid = torch.stack([2 * pcol / (W - 1) - 1, 2 * prow / (H - 1) - 1], -1).reshape(n_img, 1, h * Ks * S, 2)
        smp = F.grid_sample(lv.feats, grid, mode="bilinear", padding_mode="border", align_corners=True)
        C = lv.feats.shape[1]  # 4 with a validity channel
        smp = smp.reshape(n_img, C, h, Ks, S).permute(0, 2, 1, 3, 4).reshape(B, C, Ks, S)
        y, ty = _display(smp[:, 0])
        # model: own Gaussian + neighbours' tails + background
        inv_s2 = 1.0 / lv.sigma**2
        Mlin = Q[..., None] * lv.g_o + p[:, 4, None, None]
        dM = lv.g_o[:, None] * dQ[:, :, None]  # (B, Ks, S, nP)
        dM[..., -1] = 1.0  # background
        if lv.nb is not None:  # neighbours' tails and their derivatives
            Nn = lv.nb.shape[-1]
            flat = lv.nb.reshape(B, -1)
            nr = torch.gather(row, 1, flat).reshape(B, Ks, 1, Nn)
            nc = torch.gather(col, 1, flat).reshape(B, Ks, 1, Nn)
            nq = (torch.gather(Q, 1, flat).reshape(B, Ks, Nn) * lv.nb_ok)[:, :, None, :]
            dr, dc = prow[..., None] - nr, pcol[..., None] - nc  # (B, Ks, S, Nn)
            E = torch.exp(-0.5 * (dr * dr + dc * dc) * inv_s2) * lv.nb_ok[:, :, None, :]
            T = nq * E
            Mlin = Mlin + T.sum(-1)
            Tr, Tc = -T * dr * inv_s2, -T * dc * inv_s2
            # d/dθ of the tails: Σ_j E dQ_j + Σ_j Tr (drow_k - drow_j) + Σ_j Tc (dcol_k - dcol_j)
            nbd = torch.gather(torch.cat([dQ, drow, dcol], -1), 1,
                               flat[..., None].expand(B, Ks * Nn, 3 * nP)).reshape(B, Ks, Nn, 3 * nP)
            for j in range(Nn):
                dM += E[..., j, None] * nbd[:, :, None, j, :nP]
                dM -= Tr[..., j, None] * nbd[:, :, None, j, nP : 2 * nP]
                dM -= Tc[..., j, None] * nbd[:, :, None, j, 2 * nP :]
            dM += Tr.sum(-1)[..., None] * drow[:, :, None] + Tc.sum(-1)[..., None] * dcol[:, :, None]
        m, tm = _display(Mlin)
        valid = torch.cat([lv.valid.reshape(B, -1), torch.full((B, 1), self.use_direct_beam, dtype=torch.bool, device=self.device)], 1)
        wts = valid[..., None] & (prow >= 0) & (prow <= H - 1) & (pcol >= 0) & (pcol <= W - 1)
        if C == 4:
            wts = wts & (smp[:, 3] > 0.5)
        wts = wts.to(self.dtype)
        dy = (ty * smp[:, 1])[..., None] * drow[:, :, None] + (ty * smp[:, 2])[..., None] * dcol[:, :, None]
        dm = tm[..., None] * dM
        M = Ks * S
        return _correlation_residuals(y.reshape(B, M), m.reshape(B, M), dy.reshape(B, M, nP),
                                      dm.reshape(B, M, nP), wts.reshape(B, M))

    def _normal_equations(self, lv: _Level, R: torch.Tensor, p: torch.Tensor, n_img: int, h: int):
        """What a Levenberg-Marquardt step needs: ``JᵀJ`` (B, P, P), ``Jᵀr`` (B, P), ``|r|²``,
        the correlation and the number of valid samples (B,) of :meth:`_evaluate`'s residuals.
        On the CPU (float32) the compiled :func:`~edorient.indexing._refine_kernels.normal_equations`
        computes them in one pass a hypothesis, in float64 (1.5-4.5x faster than the tensor
        operations); elsewhere they come from :meth:`_evaluate`'s residuals and Jacobian."""
        if not self.compiled:
            res, J, corr, nw = self._evaluate(lv, R, p, n_img, h)
            return J.transpose(1, 2) @ J, (J * res[..., None]).sum(1), (res * res).sum(1), corr, nw
        cfg = self.config
        r0, c0 = cv.centre_pixel(cfg.image_size)
        out = _rk.normal_equations(
            lv.feats.numpy(), h, R.contiguous().numpy(), p.contiguous().numpy(), lv.gsel.numpy(),
            lv.sagsel.numpy(), lv.relsel.numpy(), lv.valid.numpy(), lv.nb.numpy(), lv.nb_ok.numpy(),
            lv.offsets.numpy(), lv.g_o.numpy(), float(cfg.resolved_calibration), float(r0), float(c0),
            float(lv.thick), float(lv.amp), float(lv.sigma), float(cfg.direct_beam),
            float(cv.DISPLAY_GAIN), cfg.shape == "sinc2", self.use_direct_beam)
        return tuple(torch.from_numpy(a) for a in out)

    def _tilt_search(self, lv: _Level, R: torch.Tensor, p: torch.Tensor, n_img: int) -> torch.Tensor:
        """Best beam tilt of each grain on a grid (``level.search_deg`` wide, ``search_step_deg``
        steps) around the current orientation; returns the rotated R.

        The objective is the correlation, over the grain's spots, of the blurred image at their
        current centres with the model there: the grain's own peaks at the trial tilt plus the
        tails of its neighbours (the other grain's spots, the direct beam) and the background as
        they are now. A small tilt hardly moves the spots, so the image is sampled once and only
        the excitation errors change; the grains are searched one after the other.
        """
        cfg = self.config
        level = lv.spec
        B, G, K = lv.valid.shape
        H = W = cfg.image_size
        n = round(level.search_deg / level.search_step_deg)
        t = torch.arange(-n, n + 1, dtype=self.dtype, device=self.device) * math.radians(level.search_step_deg)
        tx, ty = torch.meshgrid(t, t, indexing="ij")
        keep = (tx * tx + ty * ty) <= math.radians(level.search_deg) ** 2 + 1e-12
        tx, ty = tx[keep], ty[keep]  # (T,)
        w = torch.stack([p[:, 3], 1 - p[:, 3]], 1) if G == 2 else torch.ones(B, 1, dtype=self.dtype, device=self.device)
        for gi in range(G):
            row, col, Q = self._geometry(lv, R, p)
            Q = Q * lv.amp
            grid = torch.stack([2 * col / (W - 1) - 1, 2 * row / (H - 1) - 1], -1).reshape(n_img, 1, -1, 2)
            masked = lv.feats.shape[1] == 4
            ys = F.grid_sample(lv.feats[:, [0, 3]] if masked else lv.feats[:, :1], grid, mode="bilinear",
                               padding_mode="border", align_corners=True)
            y = _display_value(ys[:, 0].reshape(B, -1))
            inside = ys[:, 1].reshape(B, -1) > 0.5 if masked else None
            # what the others add at each spot: neighbours' tails (with their current peaks) + background
            Nn = lv.nb.shape[-1]
            flat = lv.nb.reshape(B, -1)
            d2 = ((row[..., None] - torch.gather(row, 1, flat).reshape(B, -1, Nn)) ** 2
                  + (col[..., None] - torch.gather(col, 1, flat).reshape(B, -1, Nn)) ** 2)
            tails = (torch.gather(Q, 1, flat).reshape(B, -1, Nn) * lv.nb_ok * torch.exp(-0.5 * d2 / lv.sigma**2)).sum(-1)
            sl = slice(gi * K, (gi + 1) * K)
            other = (tails + p[:, 4, None])[:, sl]
            yg = y[:, sl]
            wts = lv.valid[:, gi] & (row[:, sl] > 0) & (row[:, sl] < H - 1) & (col[:, sl] > 0) & (col[:, sl] < W - 1)
            if inside is not None:
                wts = wts & inside[:, sl]
            wts = wts.to(self.dtype)
            nw = wts.sum(-1, keepdim=True).clamp(min=2)
            yc = wts * (yg - (wts * yg).sum(-1, keepdim=True) / nw)
            gl = torch.einsum("bij,bkj->bki", R[:, gi], lv.gsel[:, gi])
            s0 = gl[..., 2] - lv.sagsel[:, gi]
            peak = lv.amp * w[:, gi, None, None] * lv.relsel[:, gi, :, None]
            best_c = torch.full((B,), -2.0, dtype=self.dtype, device=self.device)
            best_t = torch.zeros(B, dtype=torch.long, device=self.device)
            for lo in range(0, len(tx), 64):
                dx, dy = tx[lo : lo + 64], ty[lo : lo + 64]
                # s changes by (e_x x g)_z dx + (e_y x g)_z dy = g_y dx - g_x dy
                x = (s0[..., None] + gl[..., 1, None] * dx).sub_(gl[..., 0, None] * dy).mul_(lv.thick)  # (B, K, T)
                shp = _sinc2(x) if cfg.shape == "sinc2" else x.square_().mul_(-math.pi).exp_()
                # the model's display values, without the transform's constant 1 / log1p(k): the
                # correlation does not see a scale
                mod = shp.mul_(peak).add_(other[..., None]).clamp_(0, 1).mul_(cv.DISPLAY_GAIN).log1p_()
                c = _weighted_correlations(yc, wts, mod)
                cb, tb = c.max(-1)
                better = cb > best_c
                best_c = torch.where(better, cb, best_c)
                best_t = torch.where(better, tb + lo, best_t)
            rot = torch.stack([tx[best_t], ty[best_t], torch.zeros_like(tx[best_t])], -1)
            R = R.clone()
            R[:, gi] = _orthonormalise(_expmap(rot) @ R[:, gi])
        return R

    def _make_level(self, spec: RefineLevel, feats: torch.Tensor, R: torch.Tensor, p: torch.Tensor,
                    search: bool = True) -> _Level:
        """Reflections (those that can be excited within the level's margin, or its search
        radius plus half a degree) and neighbour lists at the current orientations."""
        m = self.model
        sigma = math.hypot(self.config.spot_sigma_px, spec.blur_px)
        radius = spec.stencil_px if spec.stencil_px is not None else sigma
        offsets = torch.as_tensor(_stencil(radius), dtype=self.dtype, device=self.device)
        g_o = torch.exp(-(offsets**2).sum(-1) / (2 * sigma**2))
        margin = max(spec.margin_deg, spec.search_deg + 0.5 if search and spec.search_deg > 0 else 0.0)
        idx, valid = self._select(R, margin, torch.exp(p[:, 2]), pad_px=3 * sigma)
        amp = (self.config.spot_sigma_px / sigma) ** 2
        lv = _Level(spec, feats, sigma, offsets, g_o, amp,
                    self.config.thickness * spec.relrod_scale, m.g[idx], m.rel[idx], m.sag[idx], valid)
        self._neighbours(lv, R, p)
        return lv

    # -- public API ----------------------------------------------------------------------------
    def refine(self, images01, starts, ratio: float = 0.5, levels=None, valid=None) -> RefineResult:
        """Refine hypotheses ``starts`` (n, h, g, 3, 3) against display images (n, H, W) in [0, 1].

        ``starts[i, j]`` is hypothesis j of image i (one orientation per grain; g = 1 or 2);
        (n, h, 3, 3) means one grain. ``ratio`` is the start value of grain A's weight.
        ``valid`` (n, H, W) bool, optional: the pixels that hold data (e.g. the detector's area
        inside a wider working frame); spots sampled elsewhere do not count.
        Returns the best hypothesis per image with scores, margins and uncertainties.
        """
        imgs = np.asarray(images01, dtype=np.float32)
        if not imgs.flags.writeable:  # torch takes no read-only array without a warning (never written)
            imgs = imgs.copy()
        S = np.asarray(starts, dtype=float)
        if imgs.ndim == 2:
            imgs = imgs[None]
        if S.ndim == 4:
            S = S[:, :, None]
        if S.ndim != 5 or S.shape[-2:] != (3, 3) or S.shape[0] != imgs.shape[0]:
            raise EdorientError(f"starts must be (n, h, g, 3, 3) with n = {imgs.shape[0]}, got {S.shape}")
        size = self.config.image_size
        if imgs.shape[1:] != (size, size):
            raise EdorientError(f"images must be {size} x {size}, got {imgs.shape[1:]}")
        if S.shape[2] not in (1, 2):
            raise EdorientError(f"one or two grains per hypothesis, got {S.shape[2]}")
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != imgs.shape:
                raise EdorientError(f"valid must be (n, {size}, {size}) like the images, got {valid.shape}")
        parts = [self._refine_chunk(imgs[i : i + self.chunk], S[i : i + self.chunk], ratio, levels or self.levels,
                                    None if valid is None else valid[i : i + self.chunk])
                 for i in range(0, len(imgs), self.chunk)]
        return self._finish(parts, S.shape)

    def _refine_chunk(self, imgs: np.ndarray, S: np.ndarray, ratio: float, levels, valid=None) -> dict:
        n, h, G = S.shape[:3]
        dev, dt = self.device, self.dtype
        lin = _to_linear(torch.as_tensor(imgs, dtype=dt, device=dev))
        R = torch.as_tensor(S.reshape(n * h, G, 3, 3), dtype=dt, device=dev)
        p = torch.zeros(n * h, 5, dtype=dt, device=dev)
        p[:, 3] = ratio if G == 2 else 1.0
        nP, o = 3 * G + 5, 3 * G
        free = torch.ones(nP, dtype=torch.bool, device=dev)
        free[o : o + 2] = self.fit_centre
        free[o + 2] = self.fit_scale
        free[o + 3] = self.fit_ratio and G == 2
        freef = free.to(dt)
        eye = torch.eye(nP, dtype=dt, device=dev)
        # background: the median of the linear image
        vt = None if valid is None else torch.as_tensor(np.ascontiguousarray(valid), device=dev)
        if vt is None:
            p[:, 4] = lin.reshape(n, -1).median(dim=1).values.repeat_interleave(h)
        else:  # over the pixels that hold data only; (lin >= 0) 0 where more than half of them are 0,
            # as on every sparse pattern, without a sort per image
            bg = lin.new_zeros(n)
            zeros, held = ((lin == 0) & vt).sum((1, 2)), vt.sum((1, 2))
            for i in torch.nonzero(2 * zeros <= held).flatten().tolist():
                if held[i] > 0:
                    bg[i] = lin[i][vt[i]].median()
            p[:, 4] = bg.repeat_interleave(h)
        # every hypothesis' latest state (pruned ones keep theirs from the level they left at)
        out_R = S.reshape(n, h, G, 3, 3).copy()
        out_p = p.double().cpu().numpy().reshape(n, h, 5).copy()
        out_score = np.full((n, h), -np.inf)
        out_sigma2 = np.full((n, h), np.inf)
        alive = np.tile(np.arange(h), (n, 1))  # (n, k): hypotheses still refined
        filtered: dict[float, torch.Tensor] = {}
        for li, spec in enumerate(levels):
            k = alive.shape[1]
            B = n * k
            if spec.blur_px not in filtered:
                # (with a fourth channel where the image holds data)
                filtered[spec.blur_px] = self._filtered(lin, spec.blur_px, vt)
            lv = self._make_level(spec, filtered[spec.blur_px], R, p)
            if spec.search_deg > 0:
                R = self._tilt_search(lv, R, p, n)
                if spec.search_deg + 0.5 > spec.margin_deg:  # a wide search: select again, narrower
                    lv = self._make_level(spec, filtered[spec.blur_px], R, p, search=False)
            A, gvec, rss, corr, nw = self._normal_equations(lv, R, p, n, k)
            lam = torch.full((B,), 1e-3, dtype=A.dtype, device=dev)
            max_step = math.radians(spec.max_step_deg)
            ff, eye_f = freef.to(A.dtype), eye.to(A.dtype)
            mask2 = ff[:, None] * ff[None, :]
            for _ in range(spec.iterations):
                A_f = A * mask2
                diag = torch.diagonal(A_f, dim1=1, dim2=2)
                A_d = A_f + ((lam[:, None] * diag) + 1e-12 + (1 - ff))[:, :, None] * eye_f
                step = -torch.linalg.solve(A_d, (gvec * ff)[..., None])[..., 0].to(dt)
                rot = step[:, :o].reshape(B, G, 3)
                nrm = rot.norm(dim=-1, keepdim=True)
                rot = rot * torch.clamp(max_step / nrm.clamp(min=1e-12), max=1.0)
                R_t = _orthonormalise(_expmap(rot) @ R)
                p_t = self._clamp(p + step[:, o:])
                A_t, gvec_t, rss_t, corr_t, nw_t = self._normal_equations(lv, R_t, p_t, n, k)
                acc = rss_t < rss
                R = torch.where(acc[:, None, None, None], R_t, R)
                p = torch.where(acc[:, None], p_t, p)
                A = torch.where(acc[:, None, None], A_t, A)
                gvec = torch.where(acc[:, None], gvec_t, gvec)
                rss = torch.where(acc, rss_t, rss)
                corr = torch.where(acc, corr_t, corr)
                nw = torch.where(acc, nw_t, nw)
                lam = torch.where(acc, lam * 0.3, lam * 5.0).clamp(1e-7, 1e7)
            sigma2 = rss.double() / (nw.double() - int(free.sum())).clamp(min=1)
            ar = np.arange(n)[:, None]
            out_R[ar, alive] = R.double().cpu().numpy().reshape(n, k, G, 3, 3)
            out_score[ar, alive] = corr.double().cpu().numpy().reshape(n, k)
            out_p[ar, alive] = p.double().cpu().numpy().reshape(n, k, 5)
            out_sigma2[ar, alive] = sigma2.cpu().numpy().reshape(n, k)
            if li < len(levels) - 1 and self.keep is not None and k > self.keep:
                sel = self._survivors(out_R[ar, alive], out_score[ar, alive], self.keep)  # (n, keep) into alive
                flat = torch.as_tensor((np.arange(n)[:, None] * k + sel).ravel(), device=dev)
                alive = np.take_along_axis(alive, sel, 1)
                R, p = R[flat], p[flat]
        # diagnostics at the optimum of the last level
        k = alive.shape[1]
        ffd = freef.double()
        A = A.double() * (ffd[:, None] * ffd[None, :]) + torch.diag(1 - ffd) + 1e-12 * torch.eye(nP, dtype=torch.float64, device=dev)
        cov = torch.linalg.inv(A) * sigma2[:, None, None]
        out_cov = np.zeros((n, h, nP, nP))
        ar = np.arange(n)[:, None]
        out_cov[ar, alive] = cov.cpu().numpy().reshape(n, k, nP, nP)
        final = np.zeros((n, h), dtype=bool)
        final[ar, alive] = True
        # pruned hypotheses cannot win (their scores are from an earlier level)
        return {"R": out_R, "p": out_p, "cov": out_cov, "score": out_score, "sigma2": out_sigma2, "final": final}

    def _survivors(self, R: np.ndarray, score: np.ndarray, keep: int) -> np.ndarray:
        """(n, keep) indices of the hypotheses to refine further: the best, then for each grain
        the best hypothesis whose orientation of that grain is distinct from the best's (the
        competitor its margin needs), then the next best by score."""
        n, G = R.shape[0], R.shape[2]
        order = np.argsort(-np.where(np.isfinite(score), score, -np.inf), axis=1)
        out = np.empty((n, keep), dtype=np.int64)
        for i in range(n):
            best = order[i, 0]
            chosen = [best]
            for g in range(G):
                mis = misorientation_deg(R[i, :, g], R[i, best, g], self.proper)
                if G == 2:
                    mis = np.minimum(mis, misorientation_deg(R[i, :, 1 - g], R[i, best, g], self.proper))
                for j in order[i]:
                    if mis[j] > self.distinct_deg:
                        if j not in chosen:
                            chosen.append(j)
                        break
            chosen += [j for j in order[i] if j not in chosen]
            out[i] = chosen[:keep]
        return out

    def _clamp(self, p: torch.Tensor) -> torch.Tensor:
        p = p.clone()
        p[:, 0:2] = p[:, 0:2].clamp(-self.max_centre_px, self.max_centre_px)
        lk = math.log1p(self.max_scale_dev)
        p[:, 2] = p[:, 2].clamp(-lk, lk)
        p[:, 3] = p[:, 3].clamp(0.02, 0.98)
        p[:, 4] = p[:, 4].clamp(0.0, 1.0)
        return p

    def _finish(self, parts: list[dict], shape) -> RefineResult:
        n, G = shape[0], shape[2]
        R = np.concatenate([q["R"] for q in parts])
        p = np.concatenate([q["p"] for q in parts])
        cov = np.concatenate([q["cov"] for q in parts])
        score = np.concatenate([q["score"] for q in parts])
        sigma2 = np.concatenate([q["sigma2"] for q in parts])
        final = np.concatenate([q["final"] for q in parts])
        score = np.where(np.isfinite(score), score, -np.inf)
        best = np.argmax(np.where(final, score, -np.inf), axis=1)
        ar = np.arange(n)
        Rb = R[ar, best]
        covb = cov[ar, best] * self.uncertainty_scale**2
        deg2 = np.degrees(1.0) ** 2
        tilt = np.stack([covb[:, 3 * g : 3 * g + 2, 3 * g : 3 * g + 2] for g in range(G)], 1) * deg2
        inpl = np.stack([covb[:, 3 * g + 2, 3 * g + 2] for g in range(G)], 1) * deg2
        unc = np.sqrt(np.clip(np.trace(tilt, axis1=-2, axis2=-1), 0, None))
        # margins: the best hypothesis whose grain-g orientation is distinct
        margin = np.full((n, G), np.inf)
        margin_chi2 = np.full((n, G), np.inf)
        rss = 1.0 - np.clip(score, -1, 1) ** 2
        noise = sigma2[ar, best] * _MARGIN_NOISE_SCALE**2  # not the calibrated scale: the flag's own threshold
        dir_chi2 = np.full((n, G), np.inf)
        laue = self.crystal.laue
        for g in range(G):
            # (dang: the beam directions' angle modulo the Laue group: distinct *labels*, zone axes)
            mis, dang = grain_distances(R, Rb[:, g], g, self.proper, laue)  # (n, h)
            for k, distinct in enumerate((mis > self.distinct_deg, dang > self.distinct_deg)):
                masked = np.where(distinct, score, -np.inf)
                j = masked.argmax(axis=1)
                has = np.isfinite(masked[ar, j])
                chi2 = np.where(has, (rss[ar, j] - rss[ar, best]) / np.maximum(noise, 1e-30), np.inf)
                if k == 0:
                    margin[:, g] = np.where(has, score[ar, best] - masked[ar, j], np.inf)
                    margin_chi2[:, g] = chi2
                else:
                    dir_chi2[:, g] = chi2
        pb = p[ar, best]
        return RefineResult(
            rotations=Rb,
            scores=score[ar, best],
            best=best,
            uncertainty_deg=unc,
            tilt_covariance=tilt,
            inplane_uncertainty_deg=np.sqrt(np.clip(inpl, 0, None)),
            margin=margin,
            margin_chi2=margin_chi2,
            ambiguous=margin_chi2 < self.ambiguity_chi2,
            direction_margin_chi2=dir_chi2,
            direction_ambiguous=dir_chi2 < self.ambiguity_chi2,
            centre_px=pb[:, 0:2],
            calibration_scale=np.exp(pb[:, 2]),
            ratio=pb[:, 3],
            background=pb[:, 4],
            hypothesis_scores=score,
            hypothesis_rotations=R,
            hypothesis_centre_px=p[..., 0:2],
            hypothesis_calibration_scale=np.exp(p[..., 2]),
        )
