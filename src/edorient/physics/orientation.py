"""Orientations as rotation matrices: from beam directions and zone axes, and back.

Conventions (see :mod:`edorient.conventions`): an orientation ``R`` takes crystal-frame
vectors to the lab frame, ``v_lab = R @ v_crystal``; lab z points from the specimen towards
the electron source. The *beam direction* of ``R`` is ``R.T @ e_z`` (crystal frame), and

    R = Rz(theta) @ R0(d)

where ``R0(d)`` is the smallest rotation taking ``d`` to ``e_z`` (about ``d x e_z``; a half
turn about x when ``d = -e_z``) and ``Rz(theta)`` turns the pattern anticlockwise by
``theta`` about the beam as seen on the detector. All functions broadcast over leading
dimensions; angles are in degrees.

Examples
--------
>>> import numpy as np
>>> R = rotation_from_direction([1.0, 0.0, 0.0], inplane_deg=30.0)
>>> beam_direction(R).round(6).tolist()
[1.0, 0.0, 0.0]
>>> round(float(inplane_angle(R)), 6)
30.0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from edorient.errors import EdorientError
from edorient.physics.symmetry import LaueGroup
from edorient.physics.symmetry import _as_unit_vectors as _unit

__all__ = [
    "beam_direction",
    "inplane_angle",
    "random_rotations",
    "rotation_from_direction",
    "rotation_from_zone_axis",
    "rz",
    "sample_sector_directions",
    "sector_triangle_4mmm",
    "stereographic",
]


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def rz(theta_deg: ArrayLike) -> np.ndarray:
    """Anticlockwise rotation about lab z by ``theta_deg`` degrees, (..., 3, 3).

    Examples
    --------
    >>> rz(90.0).round(6).tolist()
    [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    t = np.radians(np.asarray(theta_deg, dtype=float))
    c, s = np.cos(t), np.sin(t)
    out = np.zeros(t.shape + (3, 3))
    out[..., 0, 0] = c
    out[..., 0, 1] = -s
    out[..., 1, 0] = s
    out[..., 1, 1] = c
    out[..., 2, 2] = 1.0
    return out


def _r0(d: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit ``d`` (..., 3) to e_z (Rodrigues), (..., 3, 3).

    With k = d x e_z = (dy, -dx, 0) and K its cross-product matrix, R0 = I + K + K^2/(1 + dz).
    1/(1 + dz) is computed as (1 - dz)/(dx^2 + dy^2) for dz < 0, which keeps full relative
    precision near -e_z; exactly at -e_z R0 is the half turn about x.
    """
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    s2 = dx * dx + dy * dy
    antipode = (dz < 0) & (s2 == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(dz >= 0, 1.0 / (1.0 + dz), (1.0 - dz) / np.where(s2 > 0, s2, 1.0))
    out = np.zeros(d.shape[:-1] + (3, 3))
    # K = [[0, 0, -dx], [0, 0, -dy], [dx, dy, 0]];  K^2 = [[-dx^2, -dx dy, 0],
    #      [-dx dy, -dy^2, 0], [0, 0, -(dx^2 + dy^2)]]
    out[..., 0, 0] = 1.0 - f * dx * dx
    out[..., 0, 1] = -f * dx * dy
    out[..., 0, 2] = -dx
    out[..., 1, 0] = -f * dx * dy
    out[..., 1, 1] = 1.0 - f * dy * dy
    out[..., 1, 2] = -dy
    out[..., 2, 0] = dx
    out[..., 2, 1] = dy
    out[..., 2, 2] = 1.0 - f * s2
    if np.any(antipode):
        out[antipode] = np.diag([1.0, -1.0, -1.0])
    return out + 0.0  # no negative zeros


def rotation_from_direction(d: ArrayLike, inplane_deg: ArrayLike = 0.0) -> np.ndarray:
    """Orientation with beam direction ``d`` and in-plane angle ``inplane_deg``.

    Parameters
    ----------
    d
        (..., 3) beam direction in the crystal Cartesian frame (pointing from the specimen
        to the source); any non-zero length.
    inplane_deg
        In-plane angle theta (degrees), scalar or broadcastable to ``d.shape[:-1]``.

    Returns
    -------
    numpy.ndarray
        (..., 3, 3) proper rotations ``R = Rz(theta) @ R0(d)`` with ``R.T @ e_z == d/|d|``.

    Raises
    ------
    EdorientError
        On zero or non-finite directions or angles.

    Examples
    --------
    >>> rotation_from_direction([0, 0, -1]).tolist()
    [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]
    >>> rotation_from_direction([1, 0, 0]).round(6).tolist()
    [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    u = _unit(d, "beam direction")
    theta = np.asarray(inplane_deg, dtype=float)
    if not np.all(np.isfinite(theta)):
        raise EdorientError(f"inplane_deg must be finite, got {theta.tolist()}")
    shape = np.broadcast_shapes(u.shape[:-1], theta.shape)
    u = np.broadcast_to(u, shape + (3,))
    r0 = _r0(u)
    if theta.ndim == 0 and theta == 0.0:
        return r0
    return rz(np.broadcast_to(theta, shape)) @ r0


def rotation_from_zone_axis(
    uvw: ArrayLike, direct_matrix: ArrayLike, inplane_deg: ArrayLike = 0.0
) -> np.ndarray:
    """Orientation that looks down zone axis ``[u v w]``.

    Parameters
    ----------
    uvw
        (..., 3) zone-axis indices; the direction is ``u a + v b + w c = A @ uvw``.
    direct_matrix
        (3, 3) direct matrix ``A`` (Å), columns a, b, c in the crystal Cartesian frame.
    inplane_deg
        In-plane angle (degrees), as :func:`rotation_from_direction`.

    Returns
    -------
    numpy.ndarray
        (..., 3, 3) rotations.

    Raises
    ------
    EdorientError
        On a zero or non-finite zone axis (named in the message) or a bad direct matrix.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.7845, 3.7845, 9.5143])
    >>> beam_direction(rotation_from_zone_axis([1, 0, 1], A)).round(4).tolist()
    [0.3696, 0.0, 0.9292]
    """
    z = np.asarray(uvw, dtype=float)
    if z.ndim == 0 or z.shape[-1] != 3:
        raise EdorientError(f"zone axis must have 3 indices [u v w], got shape {z.shape}")
    bad = ~np.all(np.isfinite(z), axis=-1) | np.all(z == 0, axis=-1)
    if np.any(bad):
        first = z[bad][0] if z.ndim > 1 else z
        raise EdorientError(
            f"zone axis {np.asarray(first).tolist()} is not a direction: "
            "give finite indices [u v w], not all zero"
        )
    a = np.asarray(direct_matrix, dtype=float)
    if a.shape != (3, 3) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a)) < 1e-12:
        raise EdorientError("direct_matrix must be a finite, non-singular (3, 3) array")
    return rotation_from_direction(z @ a.T, inplane_deg)


def _check_rotations(r: ArrayLike, name: str = "R") -> np.ndarray:
    arr = np.asarray(r, dtype=float)
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise EdorientError(f"{name} must have shape (..., 3, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise EdorientError(f"{name} must be finite numbers")
    return arr


def beam_direction(r: ArrayLike) -> np.ndarray:
    """Beam direction ``R.T @ e_z`` (the third row of R), (..., 3).

    Examples
    --------
    >>> import numpy as np
    >>> beam_direction(np.eye(3)).tolist()
    [0.0, 0.0, 1.0]
    """
    return _check_rotations(r)[..., 2, :].copy()


def inplane_angle(r: ArrayLike, degrees: bool = True) -> np.ndarray:
    """In-plane angle theta of ``R = Rz(theta) @ R0(beam_direction(R))``.

    Parameters
    ----------
    r
        (..., 3, 3) proper rotations.
    degrees
        Degrees (default) or radians.

    Returns
    -------
    numpy.ndarray
        (...,) theta in [0, 360) degrees (or [0, 2 pi)).

    Examples
    --------
    >>> float(inplane_angle(rotation_from_direction([1, 2, 3], 250.0)).round(9))
    250.0
    """
    arr = _check_rotations(r)
    m = arr @ np.swapaxes(_r0(_unit(arr[..., 2, :], "beam direction")), -1, -2)
    theta = np.mod(np.arctan2(m[..., 1, 0], m[..., 0, 0]), 2 * np.pi)
    theta = np.where(theta >= 2 * np.pi, 0.0, theta)
    if degrees:
        theta = np.degrees(theta)
        theta = np.where(theta >= 360.0, 0.0, theta)
    return theta


def random_rotations(n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``n`` rotations uniform (Haar) on SO(3), (n, 3, 3).

    Unit quaternions from normalised 4-D normal vectors are uniform on S^3, hence their
    rotations uniform on SO(3) (Shoemake 1992, *Graphics Gems III*, "Uniform random
    rotations").

    Parameters
    ----------
    n
        Number of rotations (>= 0).
    rng
        ``numpy.random.Generator``, or a seed for ``numpy.random.default_rng``.

    Examples
    --------
    >>> R = random_rotations(4, rng=0)
    >>> R.shape, bool(np.allclose(np.linalg.det(R), 1.0))
    ((4, 3, 3), True)
    """
    n = int(n)
    if n < 0:
        raise EdorientError(f"n must be >= 0, got {n}")
    q = _as_rng(rng).standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    out = np.empty((n, 3, 3))
    out[:, 0, 0] = 1 - 2 * (y * y + z * z)
    out[:, 0, 1] = 2 * (x * y - z * w)
    out[:, 0, 2] = 2 * (x * z + y * w)
    out[:, 1, 0] = 2 * (x * y + z * w)
    out[:, 1, 1] = 1 - 2 * (x * x + z * z)
    out[:, 1, 2] = 2 * (y * z - x * w)
    out[:, 2, 0] = 2 * (x * z - y * w)
    out[:, 2, 1] = 2 * (y * z + x * w)
    out[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def sample_sector_directions(
    n: int, laue: LaueGroup, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """``n`` directions uniform over the fundamental sector of ``laue``, (n, 3).

    Uniform on the sphere (normalised 3-D normals), then :meth:`LaueGroup.reduce`; the
    sector is a fundamental domain, so the result is uniform over it.

    Examples
    --------
    >>> from edorient.physics.symmetry import laue_group
    >>> d = sample_sector_directions(5, laue_group("4/mmm"), rng=1)
    >>> bool(np.all((d[:, 0] >= d[:, 1]) & (d[:, 1] >= 0) & (d[:, 2] >= 0)))
    True
    """
    n = int(n)
    if n < 0:
        raise EdorientError(f"n must be >= 0, got {n}")
    v = _as_rng(rng).standard_normal((n, 3))
    return laue.reduce(v) if n else np.zeros((0, 3))


def stereographic(v: ArrayLike) -> np.ndarray:
    """Stereographic projection from -z onto the x-y plane, (..., 2).

    ``(x, y) / (1 + z)`` for unit ``v`` (normalised here): e_z maps to the origin, the
    equator to the unit circle; -z maps to infinity.

    Examples
    --------
    >>> stereographic([[0, 0, 1], [1, 0, 0], [1, 1, 0]]).round(4).tolist()
    [[0.0, 0.0], [1.0, 0.0], [0.7071, 0.7071]]
    """
    u = _unit(v, "v")
    with np.errstate(divide="ignore", invalid="ignore"):
        return u[..., :2] / (1.0 + u[..., 2:3])


def sector_triangle_4mmm() -> np.ndarray:
    """Unit corner directions [001], [100], [110] of the 4/mmm sector, (3, 3), for plots.

    Examples
    --------
    >>> sector_triangle_4mmm().round(4).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.7071, 0.7071, 0.0]]
    """
    return np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5), 0.0]])
