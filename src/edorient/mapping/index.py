"""Orientations of every pattern of a chunk: one or two grains, decided per pattern by the fit.

Per pattern (:func:`index_chunk`):

1. **Prepare** it as ``edorient predict`` prepares a pattern for a model (:func:`prepare_pattern`:
   direct beam, background, resampling to the estimator's calibration around the beam, the
   display transform), calling predict's own steps, so improvements there reach the map. Where
   the detector is narrower than that frame, only its area (:func:`detector_area`) is read by
   the refinement and the whole-image fits: the rest holds no data. The detector's pixels to
   ignore (:attr:`MapSettings.detector_mask`: the defects the runner found, the user's mask) are
   set to 0 and left out the same way, and a calibration file's ellipticity is undone first
   (:func:`_prepared_with_area`). The models' relrods are those of :attr:`MapSettings.thickness`
   (the runner fits it on a sample of the scan).
2. **One grain**: the starts of ``edorient predict``'s one-grain chain
   (:func:`edorient.indexing.estimators.build_estimator`: a CNN or template-matching proposal)
   and the template dictionary's best entries, refined together (the refined centre within
   ``max_centre_px``), the best whole-image fit kept (:meth:`Indexer.one_grain`); batched over
   the chunk. With anchors (:meth:`Indexer.index_prepared`, the default for a scan) only every
   8th pattern goes through the whole chain (steps 2-4); the others refine their neighbouring
   anchors' grains, and fall back to the whole chain where those do not fit.
3. **Two grains** (``grains`` 2; auto: only for the patterns whose one-grain fit leaves at
   least ``min_new_spots`` of their spots unexplained, since elsewhere the decision below is one
   grain whatever the two-grain fit; 62 % of the benchmark scan's patterns skip it). In auto
   mode by default the *partner* of the one-grain fit: its refined spots erased, the template
   dictionary's top 4 on what is left (one batched product for the chunk), each and its half
   turn paired with the fit and refined (8 hypotheses a pattern;
   :func:`edorient.indexing.proposals.refine_partners`), the pair that fits the whole image best
   kept. On a tuning scan (seed 1, 32 x 32)
   that found 19 % of the two-grain probes as two instead of 13.5 % with the bicrystal CNN's 16
   hypotheses, 2.1 % false instead of 2.8 %, at 24 instead of 19 patterns/s (one process).
   ``second_grain='model'`` (and ``grains`` 2, ``explained_below``): the estimator chain of
   ``edorient predict`` for two grains.
4. **Decide** (auto): the second grain is reported only where it is real. The pattern's spots
   are found (:func:`edorient.indexing.spots.find_spots`, away from the direct beam) and each
   is *explained* by a model when one of the model's simulated spots (bright enough at the
   grain's refined share) lies within ``match_px`` of it. Two grains when the two-grain fit's
   new grain (the one farther from the one-grain fit) explains at least ``min_new_spots`` spots
   that the one-grain fit leaves unexplained, the weaker grain carries at least ``min_share`` of
   the intensity, and the two differ by more than ``distinct_deg``. (A full-pattern correlation of the two fits was tried first and did not
   separate one- from two-grain patterns, ROC AUC 0.49 on the calibration scan; the refined
   score only samples the image at each model's own spots, so it cannot see spots a model
   lacks.) The thresholds were measured on a simulated scan of another seed than the
   benchmark's (docs/mapping.md).

5. **The neighbour pass** (a scan, after every chunk: :func:`neighbour_candidates`,
   :func:`index_neighbours`, :func:`merge_neighbours`): patterns whose one-grain fit leaves spots
   unexplained are paired with the grains reported around them in the 2-D scan
   (:attr:`MapSettings.neighbour_radius`).

Grain 1 is the stronger one. Each grain: orientation ``R`` (crystal -> lab,
:mod:`edorient.conventions`), label (sector-reduced beam direction), in-plane angle, the
refinement's one-sigma uncertainties and ambiguity flags; per pattern the refined score, the
grain shares, the spot counts of the decision, the direct-beam position in the detector and a virtual bright-field
value (counts inside 4 px of the direct beam).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from edorient.errors import EdorientError
from edorient.indexing.refine import RefineLevel

__all__ = [
    "FIELDS",
    "Indexer",
    "MapSettings",
    "default_runs",
    "get_indexer",
    "index_chunk",
    "prepare_pattern",
    "resolve_runs",
]

log = logging.getLogger(__name__)

#: Spots of the pattern that grain 2 must explain beyond the one-grain fit for a second grain;
#: measured on a simulated scan of another seed than the benchmark's (docs/mapping.md).
SECOND_GRAIN_MIN_SPOTS = 2
#: Spot finding threshold (in noise sigmas, :func:`edorient.indexing.spots.find_spots`).
SPOT_THRESHOLD = 6.0
#: At most this many spots of a pattern (the brightest) count for the second-grain decision;
#: they are kept per pattern (``spots_working_px``) for the neighbour pass.
MAX_PATTERN_SPOTS = 40
#: The neighbour pass's pool: grains reported within this misorientation (degrees) count as one
#: grain when the window's grains are ranked by how many probes report them.
NEIGHBOUR_SAME_DEG = 2.0
#: At most this many of the window's grains (the most reported first) are tried as a pattern's
#: second grain; only those explaining at least ``min_new_spots`` of its unexplained spots at
#: half weight before any refinement are refined.
NEIGHBOUR_POOL = 8
NEIGHBOUR_TRIED = 2
#: A grain's *support* (:func:`neighbour_support`): the one-grain probes within this many probe
#: steps whose grain lies within ``SUPPORT_SAME_DEG`` of it. A paired grain fitted a few degrees
#: off is a grain no probe around it reports alone; on four tuning scans (64 x 64 seeds 4, 5; 32 x
#: 32 seeds 1, 2) support < ``SUPPORT_MIN`` marked 72 of the 154 paired grains > 1° off and 29 of
#: the 1,294 within 1° (radius 5: 72 and 56; within 2°: 72 and 45).
SUPPORT_RADIUS = 8
SUPPORT_SAME_DEG = 1.0
SUPPORT_MIN = 3

#: Anchor stride of a scan (:meth:`Indexer.index_prepared`): tuning scans (32 x 32, seeds 1 and
#: 2) as accurate as 4 and faster; 12 and 16 slower (more patterns fail their pool) and less accurate.
DEFAULT_ANCHOR_STRIDE = 8

#: Pool orientations closer than this (degrees, modulo symmetry) are one hypothesis.
POOL_SAME_DEG = 1.0

#: The refinement of a pattern from its anchors' grains: only the fine level of the default
#: schedule (:data:`edorient.indexing.refine.DEFAULT_LEVELS`), the start being a refined grain,
#: with 2 Levenberg-Marquardt iterations instead of 4 (session 15, tuning scans of seeds 4 and 5:
#: 6-8 % faster, every accuracy figure equal or better; 1 iteration: slower, as more patterns
#: fell back to the whole chain, and fewer pairs found).
POOL_LEVELS = (RefineLevel(blur_px=1.2, iterations=2, margin_deg=1.5, max_step_deg=0.5, search_deg=1.0),)

#: Factor on the refinement's uncertainty in a map, measured on two tuning scans (32 x 32, seeds 1
#: and 2; 1,741 one-grain probes within 1°): the factor bringing 95 % of their errors inside the
#: reported 95 % radius (1.73 sigma) was 1.78 and 2.45, 2.3 pooled. Unscaled, the benchmark scan
#: (seed 0) had 50 % of its inside-grain errors within that radius: a map's errors are mostly a
#: bias shared by a grain's probes (the resampling, the descan), which the curvature cannot see.
MAP_UNCERTAINTY_FACTOR = 2.3

#: An anchor takes a neighbouring anchor's grain where that fits its whole image better by this much.
CONSENSUS_GAIN = 0.02

#: status codes per pattern
STATUS_OK, STATUS_NO_BEAM = 0, 1

#: per-pattern arrays of a chunk result: name -> (trailing shape, dtype, fill value)
FIELDS: dict[str, tuple[tuple[int, ...], str, object]] = {
    "status": ((), "int8", STATUS_OK),
    "n_grains": ((), "int8", 0),
    "rotations": ((2, 3, 3), "float64", np.nan),
    "directions": ((2, 3), "float64", np.nan),
    "inplane_deg": ((2,), "float64", np.nan),
    "uncertainty_deg": ((2,), "float64", np.nan),
    "inplane_uncertainty_deg": ((2,), "float64", np.nan),
    "ambiguous": ((2,), "bool", False),
    "direction_ambiguous": ((2,), "bool", False),
    "share": ((2,), "float64", np.nan),
    "score": ((), "float64", np.nan),
    "spots": ((), "int16", 0),
    "explained1": ((), "float64", np.nan),
    "explained2": ((), "float64", np.nan),
    "new_spots": ((), "int16", 0),
    "centre_px": ((2,), "float64", np.nan),
    "calibration_scale": ((), "float64", np.nan),
    "vbf": ((), "float64", np.nan),
    "image_fit": ((), "float64", np.nan),
    "model_fit": ((), "float64", np.nan),
    "anchor": ((), "bool", False),
    "neighbour_pass": ((), "bool", False),
    "support": ((2,), "int16", -1),
    "spots_working_px": ((MAX_PATTERN_SPOTS, 2), "float32", np.nan),
}

#: The fields :meth:`Indexer.index_prepared` fills (the rest come from the raw pattern).
PREPARED_FIELDS = tuple(k for k in FIELDS if k not in ("status", "centre_px", "vbf"))


@dataclass(frozen=True)
class MapSettings:
    """How each pattern is indexed (everything but the scan and the compute)."""

    crystal: str = "anatase"
    """'anatase' or a CIF path."""
    grains: str = "auto"
    """'1', '2' or 'auto' (two only where the fit says so)."""
    run_single: str | None = None
    """A one-grain run (folder, .pt, or pretrained:NAME) for the proposals; None: template matching."""
    run_bicrystal: str | None = None
    """A two-grain run for the proposals; None: template matching with Method 2's stage 2."""
    min_new_spots: int = SECOND_GRAIN_MIN_SPOTS
    """Pattern spots grain 2 must explain beyond the one-grain fit (see the module docstring)."""
    match_px: float = 2.5
    """A pattern spot is explained by a model spot within this distance (working pixels)."""
    min_share: float = 0.1
    """Smallest intensity share of a reported second grain."""
    distinct_deg: float = 5.0
    """Two reported grains differ by more than this misorientation (degrees)."""
    matcher_directions: int = 400
    """Template dictionary size (template matching)."""
    size: int = 128
    """Working image size of template matching (a run uses its own)."""
    refine: bool = True
    """Refine the proposals (sub-degree orientations, uncertainties); on by default."""
    explained_below: float | None = None
    """A second chance for bad fits: where the refined model explains less than this share of
    the pattern's spots, template matching's proposal (and for two grains the partner pass) is
    refined too (``build_estimator(explained_below=...)``); None: off (the fast default)."""
    second_grain: str | None = None
    """How ``grains`` 'auto' looks for a second grain. None (the default): the *partner* of the
    one-grain fit -- its refined spots erased, the template dictionary's top
    ``partner_candidates`` on what is left (batched,
    :class:`~edorient.indexing.proposals.DictionaryProposals`), each (and its half turn) paired
    with the one-grain fit and refined (:func:`~edorient.indexing.proposals.refine_partners`);
    'model': the two-grain chain of ``run_bicrystal`` (the bicrystal CNN's proposals, 16
    hypotheses a pattern). ``explained_below`` and ``grains`` '2' always use the two-grain chain."""
    partner_candidates: int = 4
    """Dictionary candidates for the partner (see ``second_grain``)."""
    partner_directions: int = 800
    """Directions of the partner's template dictionary (cached on disk like predict's)."""
    chosen_partner_k: int | None = None
    """After the partner search, each grain of the chosen pair gets the dictionary's best this-many
    partners on the pattern with that grain erased (as
    :class:`~edorient.indexing.estimators.DictionaryRefined`'s ``chosen_partner_k``), refined and
    chosen by the whole-image fit again (``edorient map --partner-again K``); None: off. On the
    two tuning scans (32 x 32, seeds 1 / 2, one process) 1 candidate: boundaries grain 1 < 1°
    89.9 -> 89.9 % and 92.7 -> 94.9 %, both grains where two 91.7 -> 91.9 % and 97.1 -> 99.3 %,
    two-grain probes found 47.2 -> 48.3 % and 50.4 -> 51.8 %, inside grains unchanged, at 46.0 ->
    36.5 and 46.3 -> 37.8 patterns/s (2 candidates: 88.8 / 94.9 %, 92.9 / 99.3 %, 47.2 / 51.8 % at
    34-36/s). Off by default: the map's speed is its target's shortfall (docs/benchmarks.md)."""
    dictionary_starts: bool = True
    """One grain: refine the template dictionary's best entries together with the proposal's
    starts and answer with the best whole-image fit (:meth:`Indexer.one_grain`); False: the
    proposal's starts only, the refinement's best (the version before, faster, less accurate)."""
    anchor_stride: int | None = None
    """Every this-many-th pattern of a chunk gets the whole chain; the others refine their
    neighbouring anchors' grains (:meth:`Indexer.index_prepared`); 1: every pattern the whole
    chain. None: :data:`DEFAULT_ANCHOR_STRIDE` for a scan, 1 for a folder of files (neighbouring
    files need not be neighbouring probes)."""
    anchor_rows: int = 4
    """Where a chunk holds whole scan rows (two or more): only every this-many-th row of it holds
    anchors (centred in the chunk), every ``anchor_stride``-th pattern of those rows and the
    row's last (:func:`_anchor_lattice`); every other pattern refines the grains of its four
    nearest anchors in the 2-D scan (:meth:`Indexer.index_prepared`). The anchors of adjacent
    rows see the same grains, so a lattice of them costs less for the same coverage. 1: every
    row holds anchors."""
    pool_fit_ratio: float = 0.8
    """A pattern indexed from its anchors' grains whose answer fits its whole image (the pair's
    fit where it reports two grains) below this share of the best of those anchors' one-grain
    fits gets the whole chain too (the answer that fits better is kept)."""
    dictionary_candidates: int = 3
    """The template dictionary's distinct entries refined beside the proposal's starts (one
    grain). Tuning scans (seeds 1, 2): 3 as accurate as predict's 5 (inside grains < 1° 98.1 % /
    100 % both; two-grain probes found 46 / 39 % against 44 / 40 %) at 35.5-37.4 instead of
    32 patterns/s; 2 found fewer (44 / 34 %)."""
    uncertainty_factor: float = MAP_UNCERTAINTY_FACTOR
    """Factor on the refinement's uncertainties (see :data:`MAP_UNCERTAINTY_FACTOR`)."""
    max_centre_px: float = 1.0
    """Bound of the refinement's direct-beam offset (pixels): the map measures each pattern's
    direct beam, and with 4 px free a few-spot pattern's fit slid the centre by 2 px to a wrong
    orientation 15-17 deg off (tuning scan, seed 1)."""
    neighbour_radius: int = 3
    """The neighbour pass of a scan (:func:`neighbour_candidates`, :func:`index_neighbours`):
    after every chunk is indexed, a pattern whose one-grain fit leaves at least ``min_new_spots``
    of its spots unexplained is paired with the grains reported within this many probe steps in
    the 2-D scan (a boundary's other grain is the neighbouring grain, but a chunk is one stretch
    of a scan row and its anchors need not see it); the pair is kept where it is real by the
    rule above and fits the whole image better (a reported pair: by ``CONSENSUS_GAIN``). 0: off.
    Measured on the tuning scans (docs/mapping.md)."""
    thickness: float | None = None
    """Effective specimen thickness (Å) of the models' relrods (the dictionary, the refinement,
    the whole-image fits); None: the simulator's default (the shipped models' 50 Å)."""
    disc_px: float | None = None
    """Radius (detector pixels) of the probe's diffraction discs, deconvolved from every pattern
    before anything else (:func:`edorient.indexing.discs.deconvolve_discs`: a nano-beam scan's
    discs become the compact spots the models draw); None: measured on the direct beam of a
    sample of the scan (:func:`edorient.mapping.runner._fit_disc`), 0: none."""
    detector_mask: str | None = None
    """An image file of the detector's size, nonzero at the pixels to ignore (dead, hot, gaps, a
    beam stop: :func:`edorient.io.images.read_detector_mask`), joined with the defects found
    (``find_defects``): they are set to 0 and left out of the centre finding, the background and
    every fit. The map writes the mask it used as ``detector_mask.npy`` in its folder."""
    find_defects: bool = True
    """Find dead and hot pixels from a sample of the scan's patterns
    (:func:`edorient.indexing.preprocess.detector_defects`; at least ``DEFECT_MIN_PATTERNS``)."""
    device: str = "cpu"
    """Torch device of the CNN and refinement."""
    torch_threads: int | None = None
    """Torch threads in this process (None: leave torch's default)."""
    voltage_kv: float | None = None
    """Accelerating voltage (kV) of the models (their Ewald sphere); None: the scan file's beam
    energy where it states one (:func:`~edorient.mapping.runner.run_map` fills it in), else 200."""

    def __post_init__(self) -> None:
        if self.grains not in ("1", "2", "auto"):
            raise EdorientError(f"--grains must be auto, 1 or 2, got {self.grains!r}")
        if not 0 <= self.min_share < 0.5:
            raise EdorientError(f"min_share must lie in [0, 0.5), got {self.min_share}")
        if self.anchor_rows < 1:
            raise EdorientError(f"--anchor-rows must be >= 1 (1: anchors in every row), got {self.anchor_rows}")
        if self.anchor_stride is not None and self.anchor_stride < 1:
            raise EdorientError(f"--anchor-stride must be >= 1 (1: every pattern the whole chain), got {self.anchor_stride}")
        if self.dictionary_candidates < 1:
            raise EdorientError(f"dictionary_candidates must be >= 1, got {self.dictionary_candidates}")
        if not self.uncertainty_factor > 0:
            raise EdorientError(f"uncertainty_factor must be > 0, got {self.uncertainty_factor}")
        if not 0 < self.pool_fit_ratio <= 1:
            raise EdorientError(f"pool_fit_ratio must lie in (0, 1], got {self.pool_fit_ratio}")
        if not self.max_centre_px > 0:
            raise EdorientError(f"max_centre_px must be > 0 pixels, got {self.max_centre_px}")
        if self.chosen_partner_k is not None and self.chosen_partner_k < 1:
            raise EdorientError(f"--partner-again must be >= 1 candidate, got {self.chosen_partner_k}")
        if self.neighbour_radius < 0:
            raise EdorientError(f"--neighbour-radius must be >= 0 probe steps (0: off), got {self.neighbour_radius}")
        from edorient.render import MAX_VOLTAGE_KV

        if self.voltage_kv is not None and not 1.0 <= self.voltage_kv <= MAX_VOLTAGE_KV:
            raise EdorientError(f"--kv must lie in 1-{MAX_VOLTAGE_KV:g} kV, got {self.voltage_kv:g}")
        if self.disc_px is not None and not 0 <= self.disc_px <= 16:
            raise EdorientError(f"--disc must be auto, off or a radius in (0, 16] detector pixels, got {self.disc_px}")
        if self.second_grain not in (None, "model"):
            raise EdorientError(f"second_grain must be None (the partner of the one-grain fit) or 'model', "
                                f"got {self.second_grain!r}")

    @property
    def partner(self) -> bool:
        """Whether 'auto' finds the second grain as the partner of the one-grain fit."""
        return self.grains == "auto" and self.second_grain is None and self.refine and self.explained_below is None

    def neighbours_for(self, source_kind: str) -> int:
        """The neighbour pass's radius on a source of this kind (0: none; a folder of files has
        no 2-D neighbourhood, and the pass pairs only the partner chain's one-grain fits)."""
        return int(self.neighbour_radius) if self.partner and source_kind != "files" else 0

    def stride_for(self, source_kind: str) -> int:
        """The anchor stride used on a source of this kind (see ``anchor_stride``)."""
        return int(self.anchor_stride or (1 if source_kind == "files" else DEFAULT_ANCHOR_STRIDE))

    def to_dict(self) -> dict:
        return asdict(self)


def default_runs(crystal: str) -> tuple[str | None, str | None]:
    """The shipped models for the built-in anatase; none (template matching) for a CIF."""
    if crystal == "anatase":
        return "pretrained:anatase-single", "pretrained:anatase-bicrystal"
    return None, None


def resolve_runs(runs: list[str] | tuple[str, ...] | None, crystal: str) -> tuple[str | None, str | None]:
    """``--run`` values (up to one one-grain and one two-grain run, in any order) -> (single,
    bicrystal); none given: :func:`default_runs`."""
    if not runs:
        return default_runs(crystal)
    from edorient.evaluation.pipeline import load_run_model

    found: dict[int, str] = {}
    for run in runs:
        g = int(load_run_model(run)[0].config.n_grains)
        if g in found:
            raise EdorientError(f"--run {found[g]} and --run {run} both find {g} grain(s); give at most one "
                                "one-grain and one two-grain run")
        found[g] = str(run)
    return found.get(1), found.get(2)


def prepare_pattern(image: np.ndarray, calibration: float, size: int,
                    calibration_out: float, validity=None) -> tuple[np.ndarray, tuple[float, float]]:
    """One detector pattern -> the estimator's display image (size, size) and the direct beam's
    (row, col), prepared the way ``edorient predict`` prepares a pattern for a model.

    The direct beam of a scan pattern is its brightest blob
    (:func:`edorient.io.images.find_direct_beam`); the rest is
    :func:`edorient.predict.prepare_for_model`, so the map follows the single-pattern
    preprocessing as it improves. ``validity``: :func:`~edorient.indexing.preprocess.validity_mask`'s
    result where the caller has it (e.g. with the detector's bad pixels).
    """
    return _prepare(image, calibration, size, calibration_out, validity)[:2]


def _prepare(image, calibration, size, calibration_out, validity=None, centre=None):
    """:func:`prepare_pattern` and the preprocessing behind it (``centre``: the direct beam where known)."""
    from edorient.io.images import find_direct_beam
    from edorient.predict import prepare_for_model

    centre = find_direct_beam(image) if centre is None else centre
    x, pre = prepare_for_model(image, centre, calibration, size, calibration_out, validity=validity)
    return x, centre, pre


def _virtual_bright_field(image: np.ndarray, centre: tuple[float, float], radius: float = 4.0) -> float:
    """The counts of ``image`` within ``radius`` px of ``centre``: its pixels in that disc summed
    in row-major order (those of a window around the disc, the same pixels and order as a mask
    of the whole image, so the same sum)."""
    h = int(np.ceil(radius)) + 1
    r0, c0 = int(np.floor(centre[0])), int(np.floor(centre[1]))
    rows = np.arange(max(r0 - h, 0), min(r0 + h + 2, image.shape[0]))
    cols = np.arange(max(c0 - h, 0), min(c0 + h + 2, image.shape[1]))
    if not (rows.size and cols.size):
        return 0.0
    inside = (rows[:, None] - centre[0]) ** 2 + (cols[None, :] - centre[1]) ** 2 <= radius * radius
    return float(image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1][inside].sum())


def detector_area(shape: tuple[int, int], centre: tuple[float, float], calibration: float, size: int,
                  calibration_out: float) -> np.ndarray:
    """(size, size) bool: the pixels of a working image (:func:`prepare_pattern`'s frame, the
    direct beam on its centre pixel) that fall on the detector of ``shape``. A detector narrower
    than the working frame leaves an outer ring that holds no data, not dark data: the fits must
    not read it (a pattern's spots there would be missing, and orientations with fewer spots in the
    ring would be preferred)."""
    from edorient.io.images import model_axes

    rows, cols = model_axes(centre, calibration, size, calibration_out)  # resample_to_model's mapping
    in_r = (rows >= 0) & (rows <= shape[0] - 1)
    in_c = (cols >= 0) & (cols <= shape[1] - 1)
    return in_r[:, None] & in_c[None, :]


def _prepared_with_area(raw: np.ndarray, calibration: float, size: int, calibration_out: float,
                        bad: np.ndarray | None = None, distortion: tuple[float, float] | None = None
                        ) -> tuple[np.ndarray, tuple[float, float], np.ndarray, np.ndarray]:
    """:func:`prepare_pattern` of one detector pattern with its ``bad`` pixels (True: ignore; None:
    none) set to 0 and left out, and the detector's elliptical ``distortion`` (ellipticity, angle)
    undone about its direct beam (:func:`~edorient.indexing.calibration.undistort_image`, as
    ``edorient predict`` does with a calibration file); returns (image, centre, the working pixels
    that hold data, the detector pattern as prepared). Those pixels are the :func:`detector_area`
    where the preprocessing found every pixel valid; else also its mask (the bad pixels, flat
    patches, saturated pixels, a beam stop) resampled like the image, as predict's fits read."""
    from edorient.indexing.preprocess import with_bad_pixels

    image = raw if bad is None else np.where(bad, 0.0, np.asarray(raw, dtype=np.float64))
    centre = None
    if distortion is not None and distortion[0] != 1.0:
        from edorient.indexing.calibration import Calibration, undistort_image
        from edorient.io.images import find_direct_beam

        centre = find_direct_beam(image)
        cal = Calibration(calibration, ellipticity=float(distortion[0]), angle_deg=float(distortion[1]))
        image = undistort_image(image, cal, centre)
        if bad is not None:  # the ignored pixels follow the image (any resampled sample touching one)
            bad = undistort_image(bad.astype(np.float32), cal, centre) > 0.01
    image, validity = with_bad_pixels(image, bad) if bad is not None else (image, None)
    x, centre, pre = _prepare(image, calibration, size, calibration_out, validity, centre)
    area = detector_area(raw.shape, centre, calibration, size, calibration_out)
    if not pre.mask.all():
        from edorient.io.images import resample_to_model

        area &= resample_to_model(pre.mask.astype(np.float32), centre, calibration, size, calibration_out) > 0.99
    return x, centre, area, image


def _masks_or_none(masks: np.ndarray) -> np.ndarray | None:
    """The working images' detector areas, or None where every pixel of every image is on the
    detector (then the fits read the whole frame, as without a mask)."""
    return None if masks.all() else masks


class Indexer:
    """The estimators of one :class:`MapSettings`, built once per process."""

    def __init__(self, settings: MapSettings) -> None:
        from edorient.indexing.estimators import build_estimator
        from edorient.render import SimulationConfig, Simulator
        from edorient.structures import get_crystal

        self.settings = settings
        if settings.torch_threads:
            import torch

            torch.set_num_threads(int(settings.torch_threads))
        self.crystal = get_crystal(settings.crystal)
        models, size = {}, None
        for key, run, g in (("1", settings.run_single, 1), ("2", settings.run_bicrystal, 2)):
            if run is None or not self._needs(g) or (g == 2 and settings.partner):
                continue
            from edorient.evaluation.pipeline import load_run_model

            model, s = load_run_model(run)
            if int(model.config.n_grains) != g:
                raise EdorientError(f"the model of {run} finds {int(model.config.n_grains)} grain(s); it cannot be "
                                    f"the {g}-grain model")
            if size is not None and s != size:
                raise EdorientError(f"the one- and two-grain models take different image sizes ({size}, {s})")
            models[key], size = model, s
        self.size = int(size or settings.size)
        from edorient import conventions as cv

        kv = float(cv.DEFAULT_VOLTAGE_KV if settings.voltage_kv is None else settings.voltage_kv)
        self.sim = Simulator(self.crystal, SimulationConfig(image_size=self.size, voltage_kv=kv) if settings.thickness
                             is None else SimulationConfig(image_size=self.size, thickness=float(settings.thickness),
                                                           voltage_kv=kv))
        extra = {}
        if settings.explained_below is not None:
            import inspect

            if "explained_below" not in inspect.signature(build_estimator).parameters:
                raise EdorientError("this edorient's estimators have no second chance for bad fits; leave out "
                                    "--second-chance")
            extra["explained_below"] = float(settings.explained_below)
        self.estimators = {str(g): build_estimator(self.sim, g, model=models.get(str(g)), refine=settings.refine,
                                                   matcher_directions=settings.matcher_directions,
                                                   device=settings.device, **extra)
                           for g in (1, 2) if self._needs(g) and not (g == 2 and settings.partner)}
        for est in self.estimators.values():  # the map measures each pattern's direct beam: little room for the centre
            if settings.refine:
                est.refiner.max_centre_px = float(settings.max_centre_px)
                est.refiner.uncertainty_scale *= float(settings.uncertainty_factor)
        self.proposer = None
        if settings.refine and (settings.partner or settings.dictionary_starts):
            from edorient.indexing.estimators import DICTIONARY_MAX_FREQUENCY
            from edorient.indexing.matching import TemplateMatcher
            from edorient.indexing.proposals import DictionaryProposals

            # the angular frequencies up to DICTIONARY_MAX_FREQUENCY only, read on all 360
            # angles: on the tuning scans (64 x 64, seeds 4 and 5) every result identical to all
            # 181 frequencies (the same candidates), 3 % faster, a third of the dictionary's
            # memory; 180 angles instead: no faster, inside grains' p90 0.075 -> 0.160 deg (seed 4)
            matcher = TemplateMatcher(self.sim, n_directions=settings.partner_directions, cache=True,
                                      max_frequency=DICTIONARY_MAX_FREQUENCY)
            self.proposer = DictionaryProposals(matcher, k=settings.partner_candidates)
        from edorient.indexing.refine import proper_rotations

        self.proper = proper_rotations(self.crystal.laue)
        self._bad: np.ndarray | None = None  # the detector mask, read at the first pattern (its shape)

    def bad_pixels(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The detector's pixels to ignore (:attr:`MapSettings.detector_mask`) for patterns of
        ``shape``, or None."""
        if self.settings.detector_mask is None:
            return None
        if self._bad is None or self._bad.shape != tuple(shape):
            from edorient.io.images import read_detector_mask

            self._bad = read_detector_mask(self.settings.detector_mask, tuple(shape))
        return self._bad

    def _needs(self, g: int) -> bool:
        return self.settings.grains == "auto" or self.settings.grains == str(g)

    # -- the per-chunk work ------------------------------------------------------------------
    def pattern_spots(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """(k, 2) spots (row, col) of a display image, away from the direct beam
        (:func:`edorient.indexing.spots.working_spots`); with ``valid`` (the pixels that hold data)
        the others are filled from their neighbours first (a gap or a masked hot pixel cutting a
        spot in two would make two spots, one of them unexplained)."""
        from edorient.indexing.spots import working_spots

        return working_spots(x, threshold=SPOT_THRESHOLD, max_spots=MAX_PATTERN_SPOTS, valid=valid)

    def explained(self, peaks: np.ndarray, R: np.ndarray, weight: float) -> np.ndarray:
        """(k,) whether each pattern spot has a spot of orientation ``R`` (peak x ``weight`` >=
        2e-3 of the direct beam) within ``match_px`` (:func:`edorient.indexing.spots.spots_explained_by`)."""
        from edorient.indexing.spots import spots_explained_by

        return spots_explained_by(self.sim, peaks, R, weight, self.settings.match_px)

    def run(self, x: np.ndarray, g: int) -> dict:
        """The estimator chain for ``g`` grains on display images x (n, H, W)."""
        return self._run(x, g)[0]

    def _run(self, x: np.ndarray, g: int, valid=None) -> tuple[dict, object]:
        """:meth:`run` and the RefineResult behind it (None unrefined)."""
        if g == 1 and self.settings.dictionary_starts and self.proposer is not None and self.settings.explained_below is None:
            res, fit = self.one_grain(x, valid)
            return self._fit_outputs(res, fit), res
        est = self.estimators[str(g)].estimate(x)
        return self._outputs(est.rotations, est.directions, est.scores, est.refinement, g), est.refinement

    def one_grain(self, x: np.ndarray, valid=None):
        """(one-grain RefineResult, (n,) whole-image fit) of display images x (n, H, W): the
        one-grain chain's starts (the proposal, its other mirror family, their half turns) and the
        template dictionary's ``dictionary_candidates`` best distinct entries (each family, half
        turns) refined together; the answer is the refined hypothesis whose model fits the whole
        image best (:meth:`_choose`)."""
        from edorient.indexing.proposals import with_half_turns

        est = self.estimators["1"]
        starts = est.hypotheses(x, est.base.estimate(x))
        cand, _ = self.proposer.candidates(x, k=self.settings.dictionary_candidates, other_family=True)
        return self._choose(est.refiner.refine(x, np.concatenate([starts, with_half_turns(cand)[:, :, None]], axis=1), valid=valid),
                            x, valid=valid)

    def run_partner(self, x: np.ndarray, single, valid=None) -> dict:
        """Two grains of display images x (n, H, W) from their refined one-grain fits ``single``
        (a RefineResult): the fit and its partner (see :attr:`MapSettings.second_grain`)."""
        from edorient.indexing.proposals import refine_partners

        refiner = self.estimators["1"].refiner
        res, fit = self._choose(refine_partners(refiner, self.proposer, x, single, valid=valid), x, valid=valid)
        if self.settings.chosen_partner_k and len(x):
            from edorient.indexing.estimators import chosen_partner_pass

            res, _, fit, _ = chosen_partner_pass(refiner, self.proposer, self.sim, x, res, self.settings.chosen_partner_k)
        return self._fit_outputs(res, fit)

    def _fit_outputs(self, res, fit: np.ndarray) -> dict:
        """:meth:`_outputs` of a refined result chosen by its whole-image fit ``fit``: kept as
        ``image_fit`` (one grain) or ``model_fit`` (two)."""
        g = res.rotations.shape[1]
        out = self._outputs(res.rotations, self.crystal.laue.reduce(res.rotations[..., 2, :]),
                            np.repeat(res.scores[:, None], g, axis=1), res, g)
        out["image_fit" if g == 1 else "model_fit"] = fit
        return out

    def _outputs(self, rotations, directions, scores, ref, g: int) -> dict:
        from edorient.physics.orientation import inplane_angle
        from edorient.physics.symmetry import reported_rotation

        n = len(rotations)
        # (the same orientations written as predict writes them: the same in-plane angles)
        rotations = reported_rotation(rotations, self.crystal.laue)
        out = {"rotations": rotations, "directions": directions}

        out["inplane_deg"] = inplane_angle(rotations.reshape(-1, 3, 3)).reshape(n, g)
        if ref is not None:
            out.update(uncertainty_deg=ref.uncertainty_deg, inplane_uncertainty_deg=ref.inplane_uncertainty_deg,
                       ambiguous=ref.ambiguous, direction_ambiguous=ref.direction_ambiguous, score=ref.scores,
                       calibration_scale=ref.calibration_scale)
            share = np.stack([ref.ratio, 1 - ref.ratio], 1) if g == 2 else np.ones((n, 1))
        else:
            out["score"] = scores.mean(1)
            share = np.full((n, g), 1.0 / g)
        out["share"] = share
        return out

    def index(self, raw: np.ndarray, calibration: float, first_index: int = 0, anchor_stride: int | None = None,
              distortion: tuple[float, float] | None = None, row_length: int | None = None) -> dict:
        """Results (see :data:`FIELDS`) of raw detector patterns (n, H, W) (``anchor_stride``: see
        :meth:`index_prepared`; ``distortion``: the detector's (ellipticity, angle), undone first;
        ``row_length``: the scan's row length, where the patterns are probes of a scan from probe
        ``first_index`` on)."""
        res = _filled(len(raw))
        x, area, ok = self.prepare(raw, calibration, first_index, distortion, res)
        idx = np.flatnonzero(ok)
        rows = None
        if row_length and first_index % row_length == 0 and whole_rows(len(raw), row_length):
            rows = np.stack(divmod(idx, int(row_length)), 1)  # (row in the chunk, col) of each
        if idx.size:
            for k, v in self.index_prepared(x[idx], anchor_stride, valid=_masks_or_none(area[idx]), grid=rows).items():
                res[k][idx] = v
        return res

    def prepare(self, raw: np.ndarray, calibration: float, first_index: int = 0,
                distortion: tuple[float, float] | None = None, res: dict | None = None):
        """(working images (n, size, size), the pixels of each that hold data, (n,) whether it has
        a direct beam) of raw detector patterns (n, H, W); ``res`` (a :data:`FIELDS` result), where
        given, gets each pattern's status, direct-beam position and virtual bright field."""
        n = len(raw)
        ignore = self.bad_pixels(raw.shape[1:])
        use = slice(None) if ignore is None else ~ignore  # NaN in the pixels to ignore (a reader's gap) is fine
        broken = ~np.isfinite(raw[:, use].reshape(n, -1)).all(1)
        if broken.any():
            raise EdorientError(f"pattern {first_index + int(np.flatnonzero(broken)[0])} (row-major probe index) holds "
                                "NaN or infinite pixels; clean the scan first, or give them in --mask")
        if self.settings.disc_px:  # a convergent probe's discs back to spots (the ignored pixels left out)
            from edorient.indexing.discs import deconvolve_discs

            raw = deconvolve_discs(raw, float(self.settings.disc_px), valid=None if ignore is None else ~ignore)
        x = np.zeros((n, self.size, self.size), dtype=np.float32)
        area = np.ones((n, self.size, self.size), dtype=bool)
        ok = np.zeros(n, dtype=bool)
        cal_out = self.sim.config.resolved_calibration
        for i, im in enumerate(raw):
            try:
                x[i], centre, area[i], im = _prepared_with_area(im, calibration, self.size, cal_out, ignore, distortion)
            except EdorientError:  # no direct beam (vacuum, a blank frame): flagged, not fatal
                if res is not None:
                    res["status"][i] = STATUS_NO_BEAM
                continue
            ok[i] = True
            if res is not None:
                res["centre_px"][i] = centre
                res["vbf"][i] = _virtual_bright_field(im, centre)
        return x, area, ok

    def thickness_fits(self, xs: np.ndarray, valid: np.ndarray | None, thicknesses) -> dict[float, float]:
        """The median whole-image fit of prepared images xs at each effective thickness (Å): their
        one-grain answers at this indexer's thickness, refined again at each (the default schedule:
        its tilt search reaches the ~1° by which a wrong thickness tilts the answer) and fitted to
        the whole image (:func:`~edorient.indexing.proposals.image_fit_choice`) with that thickness'
        relrods. See :func:`edorient.mapping.runner._fit_thickness`."""
        from dataclasses import replace as dc_replace

        from edorient.indexing.proposals import image_fit_choice
        from edorient.indexing.refine import DEFAULT_LEVELS, Refiner
        from edorient.render import Simulator

        start = self._run(xs, 1, valid)[0]["rotations"][:, 0]
        out = {}
        for t in thicknesses:
            cfg = dc_replace(self.sim.config, thickness=float(t))
            ref = Refiner(self.crystal, cfg, device=self.settings.device)
            ref.max_centre_px = float(self.settings.max_centre_px)
            res = ref.refine(xs, start[:, None, None], levels=DEFAULT_LEVELS, valid=valid)
            out[float(t)] = float(np.nanmedian(image_fit_choice(Simulator(self.crystal, cfg), res, xs, valid=valid)[1]))
        return out

    def index_prepared(self, xs: np.ndarray, anchor_stride: int | None = None, valid: np.ndarray | None = None,
                       grid: np.ndarray | None = None) -> dict:
        """Per-pattern results of prepared display images xs (n, size, size), in order.

        With an anchor stride s > 1 (``anchor_stride``, else the settings', else
        :data:`DEFAULT_ANCHOR_STRIDE`; and refinement), every s-th pattern (and the last) is an
        *anchor* indexed by the whole chain (:meth:`index_full`) and then against its two
        neighbouring anchors' grains on either side, keeping those where their model fits its whole
        image better by :data:`CONSENSUS_GAIN`; each other pattern refines the
        grains reported at its two nearest anchors on either side (:meth:`index_full` with a
        pool), and one whose answer's whole-image fit (its pair's where it reports two grains)
        falls below ``pool_fit_ratio`` of those anchors' best is indexed by the whole chain too
        (a grain no anchor saw); the answer that fits its whole image better is kept (``anchor``
        True where the whole chain's).

        ``grid`` ((n, 2) row in the chunk and column of each pattern, where the chunk holds whole
        scan rows): the anchors form a lattice, every ``anchor_rows``-th row of the chunk
        (centred) at the stride above (:func:`_anchor_lattice`), and "nearest" is in the 2-D scan.
        """
        n = len(xs)
        s = int(anchor_stride or self.settings.anchor_stride or DEFAULT_ANCHOR_STRIDE)
        if s <= 1 or not self.settings.refine or n < 3 or self.settings.grains == "2":
            return self.index_full(xs, valid=valid)
        lattice = grid is not None and self.settings.anchor_rows > 1
        anc = _anchor_lattice(grid, s, self.settings.anchor_rows) if lattice else np.unique(np.r_[np.arange(0, n, s), n - 1])
        rest = np.setdiff1d(np.arange(n), anc)
        out = _filled(n, PREPARED_FIELDS)
        # each pattern's spots once (anchors and re-indexed patterns are fitted twice)
        peaks = ([self.pattern_spots(x, None if valid is None else valid[i]) for i, x in enumerate(xs)]
                 if self.settings.grains == "auto" else None)

        def pk(rows):
            return None if peaks is None else [peaks[i] for i in rows]

        def vk(rows):
            return None if valid is None else valid[rows]

        ra = self.index_full(xs[anc], spots=pk(anc), valid=vk(anc))
        # each anchor against its neighbouring anchors' grains too: where one of those fits its
        # whole image better, a search that failed on this pattern alone is repaired
        near_a = (np.c_[np.arange(len(anc)), _nearest(grid[anc], grid[anc], 5)[:, 1:]] if lattice else
                  np.clip(np.arange(len(anc))[:, None] + np.array([0, -1, 1, -2, 2]), 0, len(anc) - 1))
        rc = self.index_full(xs[anc], pool=self._pools(ra, near_a), spots=pk(anc), valid=vk(anc))
        better = np.flatnonzero(rc["model_fit"] > ra["model_fit"] + CONSENSUS_GAIN)
        for k in ra:
            if k != "anchor":
                ra[k][better] = rc[k][better]
        if lattice:
            near = _nearest(grid[rest], grid[anc], 4)
        else:
            pos = np.searchsorted(anc, rest)
            near = np.stack([np.clip(pos + d, 0, len(anc) - 1) for d in (-1, 0, -2, 1)], 1)  # (r, 4) anchor rows
        rr = self.index_full(xs[rest], pool=self._pools(ra, near), spots=pk(rest), valid=vk(rest))
        # the answer's own whole-image fit (the pair's where two grains are reported): judged by
        # its one-grain fit, a boundary probe's good pair fell below the floor and went through the
        # whole chain (tuning scans of seeds 4 and 5: 117 and 196 patterns, 302 of them at boundaries),
        # and the chain's single grain could replace the pair. By the answer's fit: 9 and
        # 19 % faster, boundaries' grain 1 within 1 deg 96.3 -> 98.0 % and 96.2 -> 97.8 %
        floor = np.nanmax(ra["image_fit"][near], axis=1) * self.settings.pool_fit_ratio
        again = np.flatnonzero(~(rr["model_fit"] >= floor))  # NaN (no pool) too
        rr["anchor"][:] = False
        if again.size:
            rb = self.index_full(xs[rest[again]], spots=pk(rest[again]), valid=vk(rest[again]))
            take = again[~(rb["model_fit"] <= rr["model_fit"][again])]  # the whole chain unless the pool fits better
            rows = np.flatnonzero(np.isin(again, take))
            for k in rr:
                rr[k][take] = rb[k][rows]
            log.debug("%d of %d pooled patterns below the floor went through the whole chain; %d took its answer",
                      again.size, rest.size, take.size)
        for k in out:
            out[k][anc] = ra[k]
            out[k][rest] = rr[k]
        return out

    def index_full(self, xs: np.ndarray, pool: list | None = None, spots: list | None = None,
                   valid: np.ndarray | None = None) -> dict:
        """Per-pattern results of prepared images xs (n, size, size) by the whole chain; with
        ``pool`` (per image a list of orientations (3, 3), e.g. its neighbours' grains) only those
        are refined: as one grain, and for a second grain each paired with the one-grain fit.
        ``spots``: each image's :meth:`pattern_spots`, where already found."""
        n = len(xs)
        res = _filled(n, PREPARED_FIELDS)
        res["anchor"][:] = pool is None
        if pool is not None:
            one, single = self._pooled_one(xs, pool, valid)
        elif self._needs(1):
            one, single = self._run(xs, 1, valid)
        else:
            one, single = None, None
        if one is not None and "image_fit" in one:
            res["image_fit"][:] = res["model_fit"][:] = one.pop("image_fit")
        # which patterns get the two-grain chain: all (--grains 2), none (1), or (auto) those whose
        # one-grain fit leaves at least min_new_spots of their spots unexplained -- elsewhere a
        # second grain could not explain enough new spots, so the decision is one grain anyway
        if self.settings.grains == "auto":
            peaks, h1s = [], []
            for j in range(n):
                pk = self.pattern_spots(xs[j], None if valid is None else valid[j]) if spots is None else spots[j]
                h1 = self.explained(pk, one["rotations"][j, 0], 1.0)
                peaks.append(pk)
                h1s.append(h1)
                res["spots"][j] = len(pk)
                res["spots_working_px"][j, : len(pk)] = pk[:MAX_PATTERN_SPOTS]
                if len(pk):
                    res["explained1"][j] = h1.mean()
            sub = np.flatnonzero([(~h).sum() >= self.settings.min_new_spots for h in h1s])
        else:
            sub = np.arange(n) if self._needs(2) else np.zeros(0, dtype=int)
        if not sub.size:
            two = None
        elif pool is not None:
            two, sub = self._pooled_pairs(xs, single, pool, sub, valid)
        elif self.settings.partner and single is not None:
            from edorient.indexing.estimators import take_rows

            two = self.run_partner(xs[sub], take_rows(single, sub), None if valid is None else valid[sub])
        else:
            two = self.run(xs[sub], 2)
        pair_fit = None if two is None else two.pop("model_fit", None)
        if two is not None:
            # grain 1 is the stronger one
            swap = two["share"][:, 1] > two["share"][:, 0]
            for k, v in two.items():
                if np.ndim(v) >= 2 and v.shape[1] == 2:
                    two[k] = np.where(swap.reshape((-1,) + (1,) * (v.ndim - 1)), v[:, ::-1], v)
        use_two = np.zeros(n, dtype=bool)
        if self.settings.grains == "2":
            use_two[:] = True
        elif self.settings.grains == "auto" and sub.size:
            from edorient.indexing.refine import misorientation_deg

            new = np.zeros(sub.size, dtype=int)
            # the pair's new grain is the one farther from the one-grain fit: the weaker one as a
            # rule, but where the fit's grain came out weaker in the pair (near 0.5:0.5) counting the
            # weaker grain's new spots found none (tuning scans: 40 of 42 boundary probes refined with
            # their true pair and refused, the pair explaining every spot)
            d1 = np.stack([misorientation_deg(two["rotations"][:, g], one["rotations"][sub, 0], self.proper)
                           for g in (0, 1)], 1)
            newer = np.where(d1[:, 0] > d1[:, 1], 0, 1)
            for m, j in enumerate(sub):
                pk = peaks[j]
                hA = self.explained(pk, two["rotations"][m, 0], two["share"][m, 0])
                hB = self.explained(pk, two["rotations"][m, 1], two["share"][m, 1])
                if len(pk):
                    res["explained2"][j] = (hA | hB).mean()
                new[m] = res["new_spots"][j] = int(((hA if newer[m] == 0 else hB) & ~h1s[j]).sum())
            mis = misorientation_deg(two["rotations"][:, 0], two["rotations"][:, 1], self.proper)
            use_two[sub] = ((new >= self.settings.min_new_spots)
                            & (two["share"][:, 1] >= self.settings.min_share) & (mis > self.settings.distinct_deg))
        row2 = np.full(n, -1)
        row2[sub] = np.arange(sub.size)
        for j in range(n):
            src, g, r = (two, 2, row2[j]) if use_two[j] else (one, 1, j)
            res["n_grains"][j] = g
            if g == 2:
                res["model_fit"][j] = np.nan if pair_fit is None else pair_fit[r]
            for k, v in src.items():
                if k in ("score", "calibration_scale"):
                    res[k][j] = v[r]
                else:
                    res[k][j, :g] = v[r]
        return res

    def _pools(self, found: dict, rows: np.ndarray) -> list:
        """Per row of ``rows`` (anchor indices into ``found``, an :meth:`index_full` result) the
        distinct grains those anchors reported."""
        return [self._distinct([R for a in dict.fromkeys(row.tolist()) for R in found["rotations"][a, : int(found["n_grains"][a])]])
                for row in rows]

    def _distinct(self, rotations: list) -> list:
        """``rotations`` without those within ``POOL_SAME_DEG`` of an earlier one (modulo the crystal's symmetry)."""
        from edorient.indexing.refine import misorientation_deg

        kept: list = []
        for R in rotations:
            if not kept or (misorientation_deg(np.stack(kept), np.broadcast_to(R, (len(kept), 3, 3)), self.proper)
                            > POOL_SAME_DEG).all():
                kept.append(R)
        return kept

    def _pooled_one(self, xs: np.ndarray, pool: list, valid=None) -> tuple[dict, object]:
        """One grain from each image's pool (refined, the best whole-image fit)."""
        res, fit = self._refine_each(xs, [np.stack(p)[:, None] for p in pool], valid)
        return self._fit_outputs(res, fit), res

    def _pooled_pairs(self, xs: np.ndarray, single, pool: list, sub: np.ndarray, valid=None) -> tuple[dict | None, np.ndarray]:
        """Two grains for images ``sub``: the one-grain fit paired with each pool orientation
        distinct from it (refined, the best whole-image fit); images with none are dropped from ``sub``."""
        from edorient.indexing.refine import misorientation_deg

        pairs, keep = [], []
        for j in sub:
            R = single.rotations[j, 0]
            other = [P for P in pool[j] if misorientation_deg(R[None], P[None], self.proper)[0] > self.settings.distinct_deg]
            if other:
                pairs.append(np.stack([np.stack([R, P]) for P in other]))
                keep.append(j)
        if not keep:
            return None, np.zeros(0, dtype=int)
        keep = np.asarray(keep)
        res, fit = self._refine_each(xs[keep], pairs, None if valid is None else valid[keep])
        return self._fit_outputs(res, fit), keep

    def _refine_each(self, xs: np.ndarray, hypotheses: list, valid=None):
        """(RefineResult, (n,) whole-image fit) of images xs, each refining its own hypotheses
        (``hypotheses[i]``: (h_i, g, 3, 3)) at :data:`POOL_LEVELS`, its answer the best fit to
        its whole image (:meth:`_choose`). Images with as many hypotheses are refined together:
        padded to the largest count, a chunk's pools (1 to 4 grains, 1.6 to 2.1 on average)
        refined 1.9x the hypotheses they hold (benchmark scan, seed 0)."""
        from edorient.indexing.estimators import concat_results, take_rows

        ref = self.estimators["1"].refiner
        sizes = np.array([len(h) for h in hypotheses])
        parts, order = [], []
        for h in np.unique(sizes):
            rows = np.flatnonzero(sizes == h)
            vk = None if valid is None else valid[rows]
            H = np.stack([hypotheses[i] for i in rows])
            parts.append(self._choose(ref.refine(xs[rows], H, levels=POOL_LEVELS, valid=vk), xs[rows], POOL_LEVELS, vk))
            order.append(rows)
        back = np.argsort(np.concatenate(order))
        return take_rows(concat_results([q[0] for q in parts]), back), np.concatenate([q[1] for q in parts])[back]

    def _choose(self, res, xs: np.ndarray, levels=None, valid=None):
        """(res with each image's answer the refined hypothesis that fits the whole image best,
        refined again where that changed; (n,) its whole-image fit)."""
        from edorient.indexing.estimators import rechoose_by_image_fit

        res, _, fit = rechoose_by_image_fit(self.estimators["1"].refiner, self.sim, res, xs, levels=levels, valid=valid)
        return res, fit


def whole_rows(n: int, row_length: int) -> bool:
    """Whether ``n`` probes make two or more whole scan rows of ``row_length`` (a chunk whose
    anchors form a lattice, :func:`_anchor_lattice`)."""
    return n % row_length == 0 and n >= 2 * row_length


def _anchor_lattice(grid: np.ndarray, stride: int, row_stride: int) -> np.ndarray:
    """Indices into ``grid`` ((n, 2) row in the chunk, column) of the anchors: every
    ``row_stride``-th of the chunk's rows, centred (:func:`_centred`: its first and last rows
    about equally far from an anchor row), and in each every ``stride``-th column and the row's
    last pattern. Forcing the chunk's last row in as well (the lattice before) made 3 anchor rows
    of a chunk of 8 instead of 2; without it the tuning scans (seeds 4 and 5) mapped 8 and 2 %
    faster, boundaries and pairs as accurate or more, inside grains' median 0.045 -> 0.048 and
    0.042 -> 0.048 deg. Centring the columns too (no forced last pattern) lost 14 inside-grain
    probes of seed 4 (a grain 3.9 deg off that fits their patterns as well)."""
    rows = np.unique(grid[:, 0])
    out = []
    for r in rows[_centred(len(rows), row_stride)]:
        here = np.flatnonzero(grid[:, 0] == r)
        cols = grid[here, 1]
        pick = (cols - cols.min()) % stride == 0
        pick[np.argmax(cols)] = True
        out.append(here[pick])
    return np.unique(np.concatenate(out))


def _centred(n: int, stride: int) -> np.ndarray:
    """Every ``stride``-th of ``n`` positions, offset so that the first and the last lie about
    equally far from the nearest one taken (at least one taken)."""
    return np.arange(((n - 1) % stride) // 2, n, stride)


def _nearest(points: np.ndarray, anchors: np.ndarray, k: int) -> np.ndarray:
    """(len(points), k) indices into ``anchors`` of each point's ``k`` nearest (2-D distance,
    ties by the anchors' order; repeated where there are fewer)."""
    d = ((points[:, None, :].astype(float) - anchors[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    if order.shape[1] < k:
        order = np.concatenate([order, np.repeat(order[:, -1:], k - order.shape[1], 1)], 1)
    return order


def _filled(n: int, names=None) -> dict:
    """Result arrays of ``n`` patterns at their fill values: every field of :data:`FIELDS`, or ``names``."""
    return {k: np.full((n,) + shp, fill, dtype=dt) for k, (shp, dt, fill) in FIELDS.items()
            if names is None or k in names}


@functools.lru_cache(maxsize=2)
def get_indexer(settings: MapSettings) -> Indexer:
    """The :class:`Indexer` of ``settings``, built once per process (a Dask worker keeps it)."""
    return Indexer(settings)


def index_chunk(source, start: int, stop: int, settings: MapSettings) -> dict:
    """Read patterns ``start:stop`` of ``source`` (:class:`~edorient.mapping.scan.ScanSource`) and
    index them; the chunk task of :func:`edorient.mapping.run_map` (runs in a Dask worker)."""
    t0 = time.perf_counter()
    raw = source.read(start, stop)
    t1 = time.perf_counter()
    ix = get_indexer(settings)  # built at a worker's first chunk (models, dictionaries): setup, not indexing
    t2 = time.perf_counter()
    res = ix.index(raw, source.calibration, first_index=start, anchor_stride=settings.stride_for(source.layout),
                   distortion=source.distortion, row_length=None if source.layout == "files" else int(source.shape[1]))
    res["read_s"] = np.float64(t1 - t0)
    res["setup_s"] = np.float64(t2 - t1)
    res["index_s"] = np.float64(time.perf_counter() - t2)
    return res


# -- the neighbour pass: a boundary's other grain from the 2-D neighbourhood --------------------
def _window(i: int, shape: tuple[int, int], radius: int) -> np.ndarray:
    """Row-major indices of the probes within ``radius`` steps (rows and columns) of probe ``i``
    of a scan of ``shape``, probe ``i`` itself left out."""
    ny, nx = shape
    r, c = divmod(int(i), nx)
    rr = np.arange(max(r - radius, 0), min(r + radius + 1, ny))
    cc = np.arange(max(c - radius, 0), min(c + radius + 1, nx))
    win = (rr[:, None] * nx + cc[None, :]).ravel()
    return win[win != i]


def neighbour_candidates(results: dict, shape: tuple[int, int], settings: MapSettings, proper) -> tuple[np.ndarray, list]:
    """(indices, pools) of the neighbour pass (see :attr:`MapSettings.neighbour_radius`).

    A candidate is a pattern whose one-grain fit leaves at least ``min_new_spots`` of its spots
    unexplained (reported with one grain or two: a pair can be repaired too); its pool (h, 3, 3)
    is its own grain 1 followed by the grains reported at the
    probes within ``neighbour_radius`` steps (rows and columns of the scan ``shape``), those
    within :data:`NEIGHBOUR_SAME_DEG` of each other counted as one, ranked by how many probes
    report them, without those within ``distinct_deg`` of grain 1, at most
    :data:`NEIGHBOUR_POOL`. Candidates whose window reports no other grain are left out."""
    from edorient.indexing.refine import misorientation_deg

    ok = results["status"] == STATUS_OK
    ng = results["n_grains"].astype(int)
    R = results["rotations"]
    unexplained = results["spots"] - np.round(np.nan_to_num(results["explained1"]) * results["spots"])
    cand = np.flatnonzero(ok & (ng >= 1) & (unexplained >= settings.min_new_spots))
    out_i, pools = [], []
    for i in cand:
        win = _window(i, shape, int(settings.neighbour_radius))
        win = win[ok[win]]
        rots = [R[j, g] for j in win for g in range(ng[j])]
        if not rots:
            continue
        A = np.stack(rots)
        left = np.ones(len(A), dtype=bool)
        grains, counts = [], []
        while left.any():  # greedy: each remaining grain with those within NEIGHBOUR_SAME_DEG of it
            q = int(np.flatnonzero(left)[0])
            same = left & (misorientation_deg(A, np.broadcast_to(A[q], A.shape), proper) < NEIGHBOUR_SAME_DEG)
            grains.append(A[q])
            counts.append(int(same.sum()))
            left &= ~same
        G = np.stack(grains)[np.argsort(-np.asarray(counts), kind="stable")]
        G = G[misorientation_deg(G, np.broadcast_to(R[i, 0], G.shape), proper) > settings.distinct_deg][:NEIGHBOUR_POOL]
        if len(G):
            out_i.append(int(i))
            pools.append(np.concatenate([R[i, :1], G]))
    return np.asarray(out_i, dtype=np.int64), pools


def index_neighbours(source, indices: np.ndarray, pools: list, spots: np.ndarray, settings: MapSettings) -> dict:
    """The neighbour pass on the patterns ``indices`` of ``source`` (a task of
    :func:`edorient.mapping.run_map`): per pattern its pool (:func:`neighbour_candidates`) and its
    spots (``spots_working_px`` rows, NaN-padded). The pool's grains that explain at least
    ``min_new_spots`` of the spots grain 1 leaves unexplained, drawn at half weight as they are
    (at most :data:`NEIGHBOUR_TRIED`), are refined with grain 1 as one grain and as its pair
    (:meth:`Indexer.index_full` with the pool); patterns where none does are not read. Returns
    ``{"index": (m,) the patterns refined, **their index_full results}``."""
    ix = get_indexer(settings)
    keep, pool, peaks = [], [], []
    for i, P, S in zip(indices, pools, spots):
        pk = np.asarray(S, dtype=np.float64)
        pk = pk[np.isfinite(pk[:, 0])]
        h1 = ix.explained(pk, P[0], 1.0)
        others = [B for B in P[1:] if int((ix.explained(pk, B, 0.5) & ~h1).sum()) >= settings.min_new_spots]
        if others:
            keep.append(int(i))
            pool.append([P[0]] + others[:NEIGHBOUR_TRIED])
            peaks.append(pk)
    out = {"index": np.asarray(keep, dtype=np.int64)}
    if not keep:
        return out
    cal_out = ix.sim.config.resolved_calibration
    prepared = [_prepared_with_area(raw, source.calibration, ix.size, cal_out, ix.bad_pixels(raw.shape), source.distortion)
                for raw in (source.read(i, i + 1)[0] for i in keep)]
    xs, area = np.stack([q[0] for q in prepared]), np.stack([q[2] for q in prepared])
    out.update(ix.index_full(xs, pool=pool, spots=peaks, valid=_masks_or_none(area)))
    return out


def merge_neighbours(results: dict, found: dict) -> int:
    """Take the neighbour pass's results ``found`` (:func:`index_neighbours`, ``index`` into
    ``results``) where they report two grains that fit the whole image better than the pattern's
    answer (by :data:`CONSENSUS_GAIN` where that answer is a pair already, as an anchor takes its
    neighbours' pair); in place. Returns how many patterns changed."""
    idx = found["index"]
    if not len(idx):
        return 0
    gain = np.where(results["n_grains"][idx] == 2, CONSENSUS_GAIN, 0.0)
    take = (found["n_grains"] == 2) & (found["model_fit"] >= results["model_fit"][idx] + gain)
    rows = idx[take]
    for k in PREPARED_FIELDS:
        if k in found and k not in ("anchor", "neighbour_pass"):
            results[k][rows] = found[k][take]
    results["neighbour_pass"][rows] = True
    return int(take.sum())


def neighbour_support(results: dict, shape: tuple[int, int], proper, radius: int = SUPPORT_RADIUS) -> np.ndarray:
    """(n, 2) each reported grain's support: how many one-grain probes within ``radius`` steps
    (rows and columns of the scan ``shape``; the probe itself left out) report a grain within
    :data:`SUPPORT_SAME_DEG` of it; -1 where no grain is reported. A grain of a real polycrystal
    is seen alone somewhere near its boundary; a low count marks a grain worth doubting (a pair's
    second grain fitted a few degrees off, a rare wrong grain 1), which the fit's own curvature
    uncertainty does not show."""
    from edorient.indexing.refine import misorientation_deg

    out = np.full((len(results["status"]), 2), -1, dtype=np.int16)
    ok = results["status"] == STATUS_OK
    ng = np.where(ok, results["n_grains"], 0).astype(int)
    alone = ok & (ng == 1)
    R = results["rotations"]
    for i in np.flatnonzero(ng > 0):
        win = _window(i, shape, radius)
        win = win[alone[win]]
        for g in range(ng[i]):
            if not len(win):
                out[i, g] = 0
                continue
            d = misorientation_deg(R[win, 0], np.broadcast_to(R[i, g], (len(win), 3, 3)), proper)
            out[i, g] = int((d < SUPPORT_SAME_DEG).sum())
    return out
