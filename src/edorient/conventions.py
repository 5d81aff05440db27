"""Conventions of edorient: units, frames, orientations, labels, images.

Everything in the package follows this page; change it here and nowhere else.

Units
-----
- Lengths in Å; reciprocal lengths in Å⁻¹ with **no 2π**: ``g = 1/d``.
- Accelerating voltage in kV; specimen thickness in Å.
- Every user-facing angle in degrees (functions take ``degrees: bool`` where radians are useful).

Crystal Cartesian frame
-----------------------
The usual crystallographic convention: **a along x, b in the x-y plane**, c completing a
right-handed set. The *direct matrix* ``A`` has the Cartesian components of a, b, c as its
**columns**, so a fractional position ``f`` sits at ``A @ f``. The *reciprocal matrix*
``B = inv(A).T`` has a*, b*, c* as columns (no 2π), so reflection ``hkl`` has
``g = B @ hkl`` and ``d = 1/|g|``. For tetragonal anatase x ∥ a, y ∥ b, z ∥ c.

Orientation
-----------
An orientation is a rotation matrix ``R`` (3 x 3, det +1) that takes crystal-frame vectors to
the lab frame: ``v_lab = R @ v_crystal``. **Lab z points from the specimen towards the electron
source** (the electrons travel along -z); the detector plane is lab x-y.

- The *beam direction* of ``R`` is ``R.T @ e_z``: the unit vector, in the crystal frame, that
  points from the specimen towards the source. A zone axis ``[u v w]`` is the direction
  ``u a + v b + w c`` (``A @ [u, v, w]``), normalised.
- ``R`` from a beam direction ``d`` and an in-plane angle ``θ``: ``R = Rz(θ) @ R0(d)``, where
  ``R0(d)`` is the smallest rotation that takes ``d`` to ``e_z`` (about the axis ``d × e_z``; a
  half turn about x when ``d = -e_z``) and ``Rz(θ)`` turns the pattern anticlockwise by ``θ``
  about the beam, as seen on the detector.

Labels
------
- The label of a grain is its beam direction reduced to the **fundamental sector** of the
  crystal's Laue group. For anatase (Laue group 4/mmm) the sector is ``x >= y >= 0, z >= 0``,
  the stereographic triangle [001]-[100]-[110]. For any Laue group the sector is the Dirichlet
  cell around :data:`SECTOR_REFERENCE` (for 4/mmm this is exactly the triangle above).
- An orientation is *reported* (``predict``'s ``orientation_matrix``, ``inplane_deg``, hkl labels;
  ``map``'s tables) as its symmetry-equivalent ``R Sᵀ`` (``S`` a proper rotation of the Laue
  group) whose beam direction lies within 2° of the label (of its opposite where no proper
  rotation brings it there: the same pattern), with the smallest in-plane angle among those
  (:func:`edorient.physics.symmetry.reported_rotation`), so one orientation is written one way,
  and fits either side of a zone axis get the same in-plane angle.
- The *angular error* between two directions is the smallest angle between them over the Laue
  group (Laue groups contain the inversion, so ``d`` and ``-d`` are one label).
- The thesis' error (eq. 3.2) is ``|dx| + |dy| + |dz|`` between unit vectors; MAE and σ as eq.
  3.1-3.3.
- A bicrystal label is an unordered pair {A, B}; the thesis order (A = first grain of the pair)
  is kept for the thesis-faithful loss.

Images
------
- Linear intensity, float32, inside the pipeline; stored and displayed as uint8 after the
  display transform ``t(I) = log1p(k I) / log1p(k)`` clipped to [0, 1], with
  ``k = DISPLAY_GAIN``. It is a fixed function (no per-image normalisation), so a bicrystal is
  composed in linear intensity first, ``I = r I_A + (1 - r) I_B``, then transformed.
- Intensity scale: the direct beam's peak is 1; a reflection's peak is
  ``SPOT_SCALE * |F_g|^2 / max_g |F_g|^2 * shape(s_g)``.
- Default image ``224 x 224``; the direct beam sits on the centre pixel ``(row, col) =
  (H // 2, W // 2)``. Lab +x runs along +col, lab +y along -row (up on screen).
- Calibration in Å⁻¹ per pixel; the default puts ``g = DEFAULT_G_EDGE`` (1.5 Å⁻¹, d = 0.67 Å)
  at the edge: ``DEFAULT_G_EDGE / (size // 2)`` (0.01339 Å⁻¹/px at 224).
"""

from __future__ import annotations

import numpy as np

#: Default accelerating voltage (kV), as the thesis' 200 kV microscope.
DEFAULT_VOLTAGE_KV: float = 200.0
#: Default specimen thickness (Å) for the relrod shape factor.
DEFAULT_THICKNESS_A: float = 50.0
#: Default image side (pixels), as the thesis.
DEFAULT_IMAGE_SIZE: int = 224
#: Reciprocal distance (Å⁻¹) that the default calibration puts at the image edge.
DEFAULT_G_EDGE: float = 1.5
#: Gain k of the display transform log1p(k I) / log1p(k).
DISPLAY_GAIN: float = 1000.0
#: Peak intensity of the strongest possible reflection relative to the direct beam (1).
SPOT_SCALE: float = 0.5
#: Default Gaussian spot radius (sigma, pixels).
DEFAULT_SPOT_SIGMA_PX: float = 1.2
#: A point in general position inside the anatase sector x >= y >= 0, z >= 0; the
#: fundamental sector of any Laue group is the Dirichlet cell around it.
SECTOR_REFERENCE: np.ndarray = np.array([0.6, 0.25, 0.76]) / np.linalg.norm([0.6, 0.25, 0.76])
#: Lab unit vector towards the electron source.
E_Z: np.ndarray = np.array([0.0, 0.0, 1.0])


def default_calibration(size: int = DEFAULT_IMAGE_SIZE, g_edge: float = DEFAULT_G_EDGE) -> float:
    """Calibration (Å⁻¹ per pixel) that puts ``g_edge`` at the edge of a ``size`` image.

    Examples
    --------
    >>> round(default_calibration(224), 5)
    0.01339
    """
    return float(g_edge) / (int(size) // 2)


def centre_pixel(height: int, width: int | None = None) -> tuple[int, int]:
    """(row, col) of the direct beam in an ``height x width`` image."""
    width = height if width is None else width
    return int(height) // 2, int(width) // 2
