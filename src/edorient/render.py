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


#: Ranges checked by :class:`SimulationConfig` before anything is allocated.
MAX_VOLTAGE_KV = 3000.0
MAX_THICKNESS_A = 1e5
MAX_IMAGE_SIZE = 4096
MAX_CALIBRATION = 1.0  # 1/Å per pixel
MAX_G = 6.0  # 1/Å: d = 0.17 Å, where electron scattering factors have died away
MAX_DOSE = 1e12  # counts at the direct beam's peak


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
        # physical and practical ranges, checked before anything is allocated
        if not 1.0 <= self.voltage_kv <= MAX_VOLTAGE_KV:
            raise EdorientError(f"voltage must lie in 1-{MAX_VOLTAGE_KV:g} kV, got {self.voltage_kv:g}")
        if self.thickness > MAX_THICKNESS_A:
            raise EdorientError(f"thickness must be <= {MAX_THICKNESS_A:g} Å (kinematic theory), got {self.thickness:g}")
        if self.image_size > MAX_IMAGE_SIZE:
            mb = 4 * float(self.image_size) ** 2 / 1e6
            raise EdorientError(f"image size {self.image_size} px is too large ({mb:,.0f} MB per image); "
                                f"use <= {MAX_IMAGE_SIZE} px")
        if self.spot_sigma_px > self.image_size / 4:
            raise EdorientError(f"spot sigma {self.spot_sigma_px:g} px is wider than a quarter of the "
                                f"{self.image_size} px image; use a few pixels")
        if self.calibration is not None and self.calibration > MAX_CALIBRATION:
            raise EdorientError(f"calibration {self.calibration:g} 1/Å per pixel is implausible (> {MAX_CALIBRATION:g}); "
                                "typical values are 0.002-0.05 1/Å per pixel (1/nm is 10x 1/Å: divide by 10)")
        if self.resolved_g_max > MAX_G:
            raise EdorientError(f"the image reaches |g| = {self.resolved_g_max:.1f} 1/Å (d = {1 / self.resolved_g_max:.3f} Å), "
                                f"beyond {MAX_G:g} 1/Å where nothing scatters; lower the calibration or g_max")

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

    def linear_images(self, rotations: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Linear-intensity images (float32, n x H x W) of many orientations.

        ``out``: a C-contiguous float32 (n, H, W) array to draw into (returned) instead of a
        new one; reusing it saves the first touch of fresh memory (docs/benchmarks.md).
        """
        R = _check_rotations(rotations)
        out = self._output(len(R), out, "linear_images")
        for lo in range(0, len(R), _BATCH):  # batches keep the (b, K) arrays in cache
            self._draw(R[lo : lo + _BATCH], out[lo : lo + _BATCH])
        return out

    def images(self, rotations: np.ndarray, invert: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """Display images in [0, 1] (float32, n x H x W): :func:`display_transform` of
        :meth:`linear_images`, the same values, done batch by batch in place (the batch is
        still in cache, and no second array is allocated).
        """
        R = _check_rotations(rotations)
        out = self._output(len(R), out, "images")
        for lo in range(0, len(R), _BATCH):
            chunk = out[lo : lo + _BATCH]
            self._draw(R[lo : lo + _BATCH], chunk)
            display_transform(chunk, invert=invert, out=chunk)
        return out

    def bicrystal_images(
        self,
        rotations_a: np.ndarray,
        rotations_b: np.ndarray,
        ratio: float = 0.5,
        invert: bool = False,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Display images of bicrystals: :func:`display_transform` of :func:`compose`
        (``ratio A + (1 - ratio) B`` in linear intensity) of grains ``a[i]`` and ``b[i]``.

        The same values as composing :meth:`linear_images` of both, done batch by batch in place.
        """
        _check_ratio(ratio)
        Ra, Rb = _check_rotations(rotations_a), _check_rotations(rotations_b)
        if Ra.shape != Rb.shape:
            raise EdorientError(f"bicrystal_images: {len(Ra)} orientations of grain A but {len(Rb)} of grain B")
        out = self._output(len(Ra), out, "bicrystal_images")
        size = self.config.image_size
        other = np.empty((min(_BATCH, len(Ra)), size, size), dtype=np.float32)
        ra, rb = np.float32(ratio), np.float32(1.0 - ratio)
        for lo in range(0, len(Ra), _BATCH):
            chunk = out[lo : lo + _BATCH]
            b = other[: len(chunk)]
            self._draw(Ra[lo : lo + _BATCH], chunk)
            self._draw(Rb[lo : lo + _BATCH], b)
            chunk *= ra  # = compose(A, B, ratio), same float32 operations
            b *= rb
            chunk += b
            display_transform(chunk, invert=invert, out=chunk)
        return out

    def _output(self, n: int, out: np.ndarray | None, name: str) -> np.ndarray:
        shape = (n, self.config.image_size, self.config.image_size)
        if out is None:
            return np.empty(shape, dtype=np.float32)
        if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise EdorientError(f"{name}: out must be a C-contiguous float32 array of shape {shape}")
        return out

    def _draw(self, R: np.ndarray, out: np.ndarray) -> None:
        """Linear images of checked rotations ``R`` into ``out`` (len(R), H, W)."""
        c = self.config
        img, _, pos, _, inten = self._bounds.pairs(R)
        _render_batch(
            img, pos, inten, len(R), c.image_size,
            c.resolved_calibration, c.spot_sigma_px, c.direct_beam, out=out,
        )


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


#: Orientations per batch in :meth:`Simulator.linear_images` (the candidate products and the
#: (batch, spots) arrays stay in cache).
_BATCH = 32


def spot_half_width(sigma_px: float) -> int:
    """Half-width ``h`` (pixels) of a spot's window: ``exp(-h² / 2σ²)`` < float32 epsilon."""
    return int(np.ceil(sigma_px * np.sqrt(2.0 * np.log(1.0 / np.finfo(np.float32).eps))))


def _render_batch(image, position, intensity, n, size, calibration, sigma_px, direct_beam, out=None):
    """``n`` images (float32) of the spots ``(position, intensity)`` that fall on ``image``.

    The drawing is one compiled kernel (:mod:`edorient._render_kernels`): every spot adds its
    separable Gaussian on a (2h + 1)² window around its centre, clipped to the image, where
    ``h`` (:func:`spot_half_width`, 7 px at σ = 1.2) puts the tail below float32's epsilon, so
    the image equals the full sum of Gaussians within float32 rounding of the direct beam's
    peak (1). Spots more than 4σ off the image are left out. Images are drawn straight into
    ``out`` (a C-contiguous float32 (n, size, size) array is used as is, nothing allocated).
    History and speed: docs/benchmarks.md, Simulator (this replaced a numpy ``bincount``
    renderer, ~10x slower, whose dense float64 canvas dominated).
    """
    from edorient import _render_kernels as kernels  # numba: imported when first drawing

    position = np.asarray(position, dtype=float).reshape(-1, 2)
    intensity = np.asarray(intensity, dtype=float).reshape(-1)
    image = np.asarray(image, dtype=np.intp).reshape(-1)
    if len(image) and np.any(image[1:] < image[:-1]):  # spots of an image must be contiguous
        order = np.argsort(image, kind="stable")
        position, intensity, image = position[order], intensity[order], image[order]
    pix = positions_to_pixels(position, size, calibration)
    rows, cols = np.ascontiguousarray(pix[:, 0]), np.ascontiguousarray(pix[:, 1])
    starts = np.searchsorted(image, np.arange(n + 1)).astype(np.int64)
    r0, c0 = cv.centre_pixel(size)
    args = (float(r0), float(c0), float(direct_beam), float(sigma_px), spot_half_width(sigma_px), 4.0 * sigma_px)
    target = out
    if out is None or out.dtype != np.float32 or not out.flags.c_contiguous or out.shape != (n, size, size):
        target = np.empty((n, size, size), dtype=np.float32)
    kernels._render_2d(starts, rows, cols, np.ascontiguousarray(intensity), *args, target)
    if out is None:
        return target
    if target is not out:
        out[...] = target
    return out


def display_transform(image: np.ndarray, invert: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Linear intensity -> [0, 1]: ``log1p(k I) / log1p(k)`` clipped, k = DISPLAY_GAIN.

    ``invert=True`` gives dark spots on a light ground, as the thesis' figures. Negative
    intensities count as 0 and NaN stays NaN. ``out`` (float32, the image's shape; may be the
    image itself) receives the result instead of a new array.

    Computed in float32 as ``log(1 + k clip(I, 0, 1)) / log1p(k)`` (the same thing, as the
    transform reaches 1 at I = 1), capped at 1 against rounding: numpy's float32 ``log`` is SIMD
    (~3x faster than its ``log1p``; the element-wise steps around it are two compiled loops in
    :mod:`edorient._render_kernels`), and rounding ``1 + kI`` moves the result by
    less than 1.2e-7 on the [0, 1] scale (two float32 ulps at 1; 3e-5 of a uint8 step).

    Examples
    --------
    >>> display_transform(np.array([-1.0, 0.0, 1.0, 2.0], dtype=np.float32)).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    from edorient import _render_kernels as kernels  # numba: imported when first used

    k, den = np.float32(cv.DISPLAY_GAIN), np.float32(np.log1p(cv.DISPLAY_GAIN))
    image = np.asarray(image, dtype=np.float32)
    if out is None:
        out = np.empty(image.shape, dtype=np.float32)
    elif out.shape != image.shape or out.dtype != np.float32:
        raise EdorientError(f"display_transform: out must be float32 of shape {image.shape}")
    in_place = out is image and out.flags.c_contiguous
    if not in_place and np.shares_memory(image, out):  # overlapping views: read from a copy
        image = image.copy()
    flat_in = image.reshape(-1)
    flat_out = out.reshape(-1) if out.flags.c_contiguous else np.empty(out.size, dtype=np.float32)
    step = 1 << 18  # 1 MB chunks stay in cache across the passes
    for start in range(0, flat_in.size, step):
        v = flat_out[start : start + step]
        if not in_place:
            np.copyto(v, flat_in[start : start + step])
        kernels._display_pre(v, k)  # 1 + k clip(I, 0, 1)
        np.log(v, out=v)  # numpy's SIMD float32 log
        kernels._display_post(v, den)  # min(v / den, 1)
    if not out.flags.c_contiguous:
        out[...] = flat_out.reshape(out.shape)
    if invert:
        np.subtract(np.float32(1.0), out, out=out)
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
    _check_ratio(ratio)
    a, b = np.asarray(image_a), np.asarray(image_b)
    if a.shape != b.shape:
        raise EdorientError(f"cannot compose images of shapes {a.shape} and {b.shape}")
    return (np.float32(ratio) * a + np.float32(1.0 - ratio) * b).astype(np.float32)


def _check_ratio(ratio: float) -> None:
    check_finite("ratio", ratio)
    if not 0.0 <= ratio <= 1.0:
        raise EdorientError(f"intensity ratio must lie in [0, 1], got {ratio}")


def add_noise(
    image: np.ndarray, dose: float, background: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Poisson noise: ``Poisson(dose * (I + background)) / dose``.

    ``dose`` is the expected number of counts at intensity 1 (the direct beam's peak);
    ``background`` a uniform linear intensity added before counting.
    """
    check_finite("dose", dose)
    check_finite("background", background)
    if not 0 < dose <= MAX_DOSE:
        raise EdorientError(f"dose must lie in (0, {MAX_DOSE:g}] counts, got {dose:g}")
    if not 0 <= background <= 1e3:
        raise EdorientError(f"background must lie in [0, 1000] (relative to the direct beam), got {background:g}")
    rng = np.random.default_rng() if rng is None else rng
    lam = dose * (np.clip(image, 0, None).astype(np.float64) + background)
    return (rng.poisson(lam) / dose).astype(np.float32)
