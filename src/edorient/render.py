"""From crystal and orientation to an image: the simulator used everywhere in edorient.

Images are linear intensity (float32, direct-beam peak 1) until :func:`display_transform`
maps them to [0, 1]; see :mod:`edorient.conventions` for the calibration, centre pixel, axes and
the display transform. A bicrystal is composed in linear intensity (:func:`compose`) and only
then transformed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edorient import conventions as cv
from edorient.errors import EdorientError, check_finite
from edorient.physics.crystal import Crystal
from edorient.physics.pattern import SHAPES, ExcitationBounds, Spots
from edorient.physics.reflections import Reflections, compute_reflections
from edorient.physics.wavelength import electron_wavelength


@dataclass(frozen=True)
class SimulationConfig:
    """Physics and rendering parameters of a simulated pattern.

    Attributes
    ----------
    voltage_kv
        Accelerating voltage (kV).
    thickness
        Specimen thickness (Å) of the relrod shape factor.
    shape
        Shape factor: ``"sinc2"`` (exact kinematic slab) or ``"gaussian"``.
    g_max
        Largest |g| (Å⁻¹) simulated; ``None`` covers the image corners.
    image_size
        Image side in pixels (square images).
    calibration
        Å⁻¹ per pixel; ``None`` puts 1.5 Å⁻¹ at the edge (:func:`conventions.default_calibration`).
    spot_sigma_px
        Gaussian spot radius (pixels).
    min_intensity
        Spots fainter than this (relative to the direct beam) are dropped.
    direct_beam
        Peak intensity of the direct beam (1 by convention; 0 leaves it out).
    """

    voltage_kv: float = cv.DEFAULT_VOLTAGE_KV
    thickness: float = cv.DEFAULT_THICKNESS_A
    shape: str = "sinc2"
    g_max: float | None = None
    image_size: int = cv.DEFAULT_IMAGE_SIZE
    calibration: float | None = None
    spot_sigma_px: float = cv.DEFAULT_SPOT_SIGMA_PX
    min_intensity: float = 1e-4
    direct_beam: float = 1.0

    def __post_init__(self) -> None:
        for name in ("voltage_kv", "thickness", "spot_sigma_px", "min_intensity", "direct_beam"):
            check_finite(name, getattr(self, name))
        if self.voltage_kv <= 0:
            raise EdorientError(f"voltage must be > 0 kV, got {self.voltage_kv}")
        if self.thickness <= 0:
            raise EdorientError(f"thickness must be > 0 Å, got {self.thickness}")
        if self.shape not in SHAPES:
            raise EdorientError(f"unknown shape factor {self.shape!r}: choose one of {', '.join(SHAPES)}")
        if int(self.image_size) != self.image_size or self.image_size < 16:
            raise EdorientError(f"image size must be an integer >= 16 pixels, got {self.image_size}")
        if self.calibration is not None:
            check_finite("calibration", self.calibration)
            if self.calibration <= 0:
                raise EdorientError(f"calibration must be > 0 1/Å per pixel, got {self.calibration}")
        if self.g_max is not None:
            check_finite("g_max", self.g_max)
            if self.g_max <= 0:
                raise EdorientError(f"g_max must be > 0 1/Å, got {self.g_max}")
        if self.spot_sigma_px <= 0:
            raise EdorientError(f"spot sigma must be > 0 pixels, got {self.spot_sigma_px}")

    @property
    def resolved_calibration(self) -> float:
        """Calibration (Å⁻¹ per pixel) actually used."""
        if self.calibration is not None:
            return float(self.calibration)
        return cv.default_calibration(self.image_size)

    @property
    def resolved_g_max(self) -> float:
        """g_max (Å⁻¹) actually used: the image corner plus three spot radii."""
        if self.g_max is not None:
            return float(self.g_max)
        half = self.image_size / 2 + 3 * self.spot_sigma_px
        return float(np.sqrt(2.0) * half * self.resolved_calibration)

    def to_dict(self) -> dict:
        """All fields plus the resolved calibration, g_max and wavelength (JSON-friendly)."""
        d = asdict(self)
        d["resolved_calibration"] = self.resolved_calibration
        d["resolved_g_max"] = self.resolved_g_max
        d["wavelength"] = electron_wavelength(self.voltage_kv)
        return d


class Simulator:
    """Kinematic ED images of one crystal; reflections are computed once.

    Examples
    --------
    >>> from edorient.structures import anatase
    >>> from edorient.physics.orientation import rotation_from_zone_axis
    >>> xtal = anatase()
    >>> sim = Simulator(xtal, SimulationConfig(image_size=64))
    >>> R = rotation_from_zone_axis([0, 0, 1], xtal.direct_matrix)
    >>> img = sim.linear_image(R)
    >>> img.shape, img.dtype, float(img[32, 32]) >= 1.0
    ((64, 64), dtype('float32'), True)
    """

    def __init__(self, crystal: Crystal, config: SimulationConfig | None = None) -> None:
        self.crystal = crystal
        self.config = config or SimulationConfig()
        self.wavelength = electron_wavelength(self.config.voltage_kv)
        self.reflections: Reflections = compute_reflections(crystal, self.config.resolved_g_max)
        c = self.config
        # Speed: per-reflection excitation-error bounds, so only candidate (orientation,
        # reflection) pairs get a shape factor and a position (see ExcitationBounds).
        self._bounds = ExcitationBounds.build(
            self.reflections, self.wavelength, c.thickness, c.shape, c.min_intensity
        )

    # -- spots ---------------------------------------------------------------------------
    def spots(self, rotation: np.ndarray) -> Spots:
        """Excited spots of one orientation (positions in Å⁻¹)."""
        R = _check_rotation_fast(rotation)
        return self._bounds.spots(R)

    def spots_batch(self, rotations: np.ndarray) -> tuple[np.ndarray, ...]:
        """Excited spots of many orientations, flattened over (orientation, reflection).

        Returns ``(orientation, index, position, s, intensity)`` as
        :meth:`ExcitationBounds.pairs <edorient.physics.pattern.ExcitationBounds.pairs>`; the
        spots of orientation ``i`` are those with ``orientation == i``: the same spots as
        :meth:`spots` of ``rotations[i]`` (values equal to float64 rounding).
        """
        R = _check_rotations(rotations)
        return self._bounds.pairs(R)

    def spot_pixels(self, spots: Spots) -> np.ndarray:
        """(row, col) pixel coordinates (float) of ``spots``."""
        return positions_to_pixels(spots.position, self.config.image_size, self.config.resolved_calibration)

    # -- images --------------------------------------------------------------------------
    def linear_image(self, rotation: np.ndarray) -> np.ndarray:
        """Linear-intensity image (float32, H x W) of one orientation."""
        return self.linear_images(np.asarray(rotation)[None])[0]

    def linear_images(self, rotations: np.ndarray) -> np.ndarray:
        """Linear-intensity images (float32, n x H x W) of many orientations."""
        R = _check_rotations(rotations)
        c = self.config
        out = np.empty((len(R), c.image_size, c.image_size), dtype=np.float32)
        for lo in range(0, len(R), _BATCH):  # batches keep the (b, K) arrays in cache
            batch = R[lo : lo + _BATCH]
            img, _, pos, _, inten = self._bounds.pairs(batch)
            _render_batch(
                img, pos, inten, len(batch), c.image_size,
                c.resolved_calibration, c.spot_sigma_px, c.direct_beam, out=out[lo : lo + len(batch)],
            )
        return out


def _check_rotations(rotations: np.ndarray) -> np.ndarray:
    """(n, 3, 3) float array of proper rotations, else the first bad one raises."""
    R = np.asarray(rotations, dtype=float)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise EdorientError(f"rotations must have shape (n, 3, 3), got {R.shape}")
    ok = np.all(np.isfinite(R)) and np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    if not (ok and np.all(np.linalg.det(R) >= 0)):
        for r in R:  # the first bad one raises, with its message
            _check_rotation(r)
    return R


def _check_rotation_fast(rotation: np.ndarray) -> np.ndarray:
    """:func:`_check_rotation` in plain Python floats (~10x cheaper for one 3 x 3); returns R.

    Same test: ``allclose(R Rᵀ, I, atol=1e-6)`` (rtol 1e-5 on the diagonal) and ``det >= 0``;
    anything unusual (wrong shape, NaN) goes to :func:`_check_rotation` for its message.
    """
    R = np.asarray(rotation, dtype=float)
    if R.shape == (3, 3):
        (a, b, c), (d, e, f), (g, h, i) = R.tolist()
        ok = (
            abs(a * a + b * b + c * c - 1.0) <= 1.1e-5
            and abs(d * d + e * e + f * f - 1.0) <= 1.1e-5
            and abs(g * g + h * h + i * i - 1.0) <= 1.1e-5
            and abs(a * d + b * e + c * f) <= 1e-6
            and abs(a * g + b * h + c * i) <= 1e-6
            and abs(d * g + e * h + f * i) <= 1e-6
            and a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) >= 0
        )
        if ok:  # NaN fails every comparison, inf fails the norms
            return R
    _check_rotation(R)
    return R  # allclose's float rounding can differ at the tolerance edge: its verdict stands


def _check_rotation(R: np.ndarray) -> None:
    R = np.asarray(R, dtype=float)
    if R.shape != (3, 3) or not np.all(np.isfinite(R)):
        raise EdorientError(f"an orientation must be a finite 3 x 3 rotation matrix, got shape {R.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise EdorientError("an orientation matrix is not a proper rotation (R R^T != I or det < 0)")


def positions_to_pixels(position: np.ndarray, size: int, calibration: float) -> np.ndarray:
    """Detector positions (gx, gy) in Å⁻¹ -> (row, col) pixels, direct beam at the centre pixel."""
    position = np.asarray(position, dtype=float)
    r0, c0 = cv.centre_pixel(size)
    row = r0 - position[..., 1] / calibration
    col = c0 + position[..., 0] / calibration
    return np.stack([row, col], axis=-1)


def render_spots(
    position: np.ndarray,
    intensity: np.ndarray,
    size: int = cv.DEFAULT_IMAGE_SIZE,
    calibration: float | None = None,
    sigma_px: float = cv.DEFAULT_SPOT_SIGMA_PX,
    direct_beam: float = 1.0,
) -> np.ndarray:
    """Render Gaussian spots to a float32 image of linear intensity.

    Each spot is ``I exp(-r² / (2 σ²))`` centred on its (sub-pixel) position, so a spot's peak
    is its intensity; the direct beam (peak ``direct_beam``) sits on the centre pixel. Spots are
    separable Gaussians, summed on windows where they exceed float32 precision.
    """
    calibration = cv.default_calibration(size) if calibration is None else calibration
    position = np.asarray(position, dtype=float).reshape(-1, 2)
    intensity = np.asarray(intensity, dtype=float).reshape(-1)
    image = np.zeros(len(intensity), dtype=np.intp)
    return _render_batch(image, position, intensity, 1, size, calibration, sigma_px, direct_beam)[0]


#: Orientations per batch in :meth:`Simulator.linear_images`.
_BATCH = 32


def _render_batch(image, position, intensity, n, size, calibration, sigma_px, direct_beam, out=None):
    """``n`` images (float32) of the spots ``(position, intensity)`` that fall on ``image``.

    Speed (benchmarks/bench_simulator.py): each spot only adds its Gaussian on a window of
    half-width ``h`` pixels, where its tail ``exp(-h²/2σ²)`` is below float32's epsilon (the
    full-image products, ``Gy.T @ diag(I) @ Gx``, spent >90% on zeros, and BLAS threads made
    them slower still on few cores). Windows are summed with ``np.bincount`` on a canvas
    padded by the window plus the spot margin (so no edge masks or clipping: what falls off
    the image lands in the padding and is cropped), for ``_GROUP`` images at a time (bins stay
    in cache; one all-images bincount allocated, zeroed and cast 12 MB a batch) and cast
    straight into ``out``. Arrays are (window, spots), so numpy's inner loops run over spots,
    not over 15-pixel rows. Equal to the full sum within float32 rounding of the direct beam's
    peak (1).
    """
    position = np.asarray(position, dtype=float).reshape(-1, 2)
    intensity = np.asarray(intensity, dtype=float).reshape(-1)
    image = np.asarray(image, dtype=np.intp).reshape(-1)
    if direct_beam:
        position = np.concatenate([np.zeros((n, 2)), position])
        intensity = np.concatenate([np.full(n, float(direct_beam)), intensity])
        image = np.concatenate([np.arange(n, dtype=np.intp), image])
    order = np.argsort(image, kind="stable")  # per image: direct beam first, then its spots
    position, intensity, image = position[order], intensity[order], image[order]
    pix = positions_to_pixels(position, size, calibration)
    margin = 4 * sigma_px
    inside = np.all((pix > -margin) & (pix < size - 1 + margin), axis=1)
    pix, intensity, image = pix[inside], intensity[inside], image[inside]
    h = int(np.ceil(sigma_px * np.sqrt(2.0 * np.log(1.0 / np.finfo(np.float32).eps))))
    pad = h + int(np.ceil(margin))  # rint(pix) +- h stays on the padded canvas
    side = size + 2 * pad
    offsets = np.arange(-h, h + 1)[:, None]
    centre = np.rint(pix).astype(np.intp)
    gy = np.exp(-((centre[:, 0] + offsets - pix[:, 0]) ** 2) / (2 * sigma_px**2))  # (w, k)
    gx = np.exp(-((centre[:, 1] + offsets - pix[:, 1]) ** 2) / (2 * sigma_px**2))
    gy *= intensity
    corner = (image * side + centre[:, 0] + (pad - h)) * side + centre[:, 1] + (pad - h)
    window = (np.arange(2 * h + 1)[:, None] * side + np.arange(2 * h + 1)).reshape(-1, 1)
    out = np.empty((n, size, size), dtype=np.float32) if out is None else out
    firsts = np.arange(0, n + _GROUP, _GROUP).clip(max=n)
    ends = np.searchsorted(image, firsts)
    for a, b, lo, hi in zip(firsts[:-1], firsts[1:], ends[:-1], ends[1:]):
        if a == b:
            break
        flat = window + (corner[lo:hi] - a * side * side)  # (w², k_group)
        weights = gy[:, None, lo:hi] * gx[None, :, lo:hi]
        acc = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=(b - a) * side * side)
        out[a:b] = acc.reshape(b - a, side, side)[:, pad : pad + size, pad : pad + size]
    return out


#: Images per bincount in :func:`_render_batch` (2-4 were fastest: bins stay in cache).
_GROUP = 4


def display_transform(image: np.ndarray, invert: bool = False) -> np.ndarray:
    """Linear intensity -> [0, 1]: ``log1p(k I) / log1p(k)`` clipped, k = DISPLAY_GAIN.

    ``invert=True`` gives dark spots on a light ground, as the thesis' figures.
    """
    # Chunks of 2**20 pixels (4 MB) stay in cache; float32 throughout, the same bits as
    # clip(log1p(k clip(I, 0)) / log1p(k), 0, 1).
    k, den = np.float32(cv.DISPLAY_GAIN), np.float32(np.log1p(cv.DISPLAY_GAIN))
    image = np.asarray(image, dtype=np.float32)
    out = np.empty(image.shape, dtype=np.float32)
    flat_in, flat_out = image.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, 1 << 20):
        v = flat_out[start : start + (1 << 20)]
        np.maximum(flat_in[start : start + (1 << 20)], np.float32(0.0), out=v)
        v += np.float32(0.0)  # -0.0 -> +0.0
        v *= k
        np.log1p(v, out=v)
        v /= den
        np.clip(v, 0.0, 1.0, out=v)
    if invert:
        np.subtract(1.0, out, out=out)
    return out


def inverse_display_transform(image01: np.ndarray) -> np.ndarray:
    """Inverse of :func:`display_transform` (for inputs not clipped at 1)."""
    k = cv.DISPLAY_GAIN
    return (np.expm1(np.asarray(image01, dtype=np.float64) * np.log1p(k)) / k).astype(np.float32)


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 (rounded)."""
    return np.round(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)


def compose(image_a: np.ndarray, image_b: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """Bicrystal in linear intensity: ``ratio * A + (1 - ratio) * B``."""
    check_finite("ratio", ratio)
    if not 0.0 <= ratio <= 1.0:
        raise EdorientError(f"intensity ratio must lie in [0, 1], got {ratio}")
    a, b = np.asarray(image_a), np.asarray(image_b)
    if a.shape != b.shape:
        raise EdorientError(f"cannot compose images of shapes {a.shape} and {b.shape}")
    return (np.float32(ratio) * a + np.float32(1.0 - ratio) * b).astype(np.float32)


def add_noise(
    image: np.ndarray, dose: float, background: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Poisson noise: ``Poisson(dose * (I + background)) / dose``.

    ``dose`` is the expected number of counts at intensity 1 (the direct beam's peak);
    ``background`` a uniform linear intensity added before counting.
    """
    check_finite("dose", dose)
    check_finite("background", background)
    if dose <= 0:
        raise EdorientError(f"dose must be > 0 counts, got {dose}")
    if background < 0:
        raise EdorientError(f"background must be >= 0, got {background}")
    rng = np.random.default_rng() if rng is None else rng
    lam = dose * (np.clip(image, 0, None).astype(np.float64) + background)
    return (rng.poisson(lam) / dose).astype(np.float32)
