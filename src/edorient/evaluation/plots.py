"""Figures of the evaluation: error histograms, errors on the stereographic triangle, worst images.

Matplotlib with the non-interactive Agg backend; every function writes one PNG of
``figsize * dpi`` pixels (no tight bounding box, so the size is predictable) and returns its
path. Nothing here depends on the simulator: spot positions come in as pixel coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edorient.errors import EdorientError  # noqa: E402

__all__ = [
    "TRIANGLE_CORNERS",
    "plot_error_histograms",
    "plot_stereographic_errors",
    "plot_worst_images",
    "stereographic_from_minus_z",
    "triangle_edges",
]

#: Corners of the 4/mmm stereographic triangle [001], [100], [110] (unit vectors).
TRIANGLE_CORNERS: dict[str, np.ndarray] = {
    "[001]": np.array([0.0, 0.0, 1.0]),
    "[100]": np.array([1.0, 0.0, 0.0]),
    "[110]": np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0),
}


def _save(fig: plt.Figure, path: str | os.PathLike, dpi: int) -> Path:
    from edorient._utils.figures import save_png

    return save_png(fig, path, dpi=dpi)


# ----------------------------------------------------------------------------------------------
# Histograms


def plot_error_histograms(
    path: str | os.PathLike,
    thesis_errors: np.ndarray,
    angular_deg: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    bins: int = 50,
    log: bool = False,
    figsize: tuple[float, float] = (9.0, 3.6),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Histograms of the thesis error (eq. 3.2 summand) and, if given, the angular error.

    Parameters
    ----------
    path
        PNG to write.
    thesis_errors
        ``(n,)`` or ``(n, k)`` (one histogram per column, e.g. per head).
    angular_deg
        Optional ``(n,)`` or ``(n, k)`` angular errors in degrees: a second panel.
    labels
        One label per column (default ``head 1``, ``head 2``, ...).
    bins, log
        Number of bins; a logarithmic count axis.
    figsize, dpi
        The PNG is ``figsize * dpi`` pixels.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    panels = [("thesis error a (|dx|+|dy|+|dz|)", np.asarray(thesis_errors, dtype=float))]
    if angular_deg is not None:
        panels.append(("angular error (degrees, modulo symmetry)", np.asarray(angular_deg, float)))
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
    for ax, (xlabel, data) in zip(axes[0], panels):
        data = data[:, None] if data.ndim == 1 else data
        if data.ndim != 2 or data.shape[0] == 0:
            plt.close(fig)
            raise EdorientError(f"errors must have shape (n,) or (n, k), n > 0; got {data.shape}")
        names = (
            list(labels) if labels is not None else [f"head {j + 1}" for j in range(data.shape[1])]
        )
        finite = data[np.isfinite(data)]
        hi = float(finite.max()) if finite.size else 1.0
        edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
        for j in range(data.shape[1]):
            col = data[:, j][np.isfinite(data[:, j])]
            mean = float(col.mean()) if col.size else float("nan")
            label = f"{names[j]} (mean {mean:.4f})"
            ax.hist(col, bins=edges, histtype="step", log=log, label=label)
            ax.axvline(mean, ls="--", lw=0.8, color=f"C{j}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("samples")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    top = 0.88 if title else 0.95
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=top, wspace=0.25)
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------
# Stereographic triangle


def stereographic_from_minus_z(v: np.ndarray) -> np.ndarray:
    """Stereographic projection from the south pole: ``p = (x, y) / (1 + z)`` of unit ``v``.

    ``v`` is normalised first and, as a Laue group holds the inversion, a direction with
    ``z < 0`` is replaced by ``-v`` so every point falls in the unit disc.

    Examples
    --------
    >>> stereographic_from_minus_z([1.0, 0.0, 0.0]).tolist()
    [1.0, 0.0]
    """
    a = np.asarray(v, dtype=float)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    a = np.where(a[..., 2:3] < 0, -a, a)
    return a[..., :2] / (1.0 + a[..., 2:3])


def _great_arc(a: np.ndarray, b: np.ndarray, n: int = 64) -> np.ndarray:
    """``n`` unit vectors along the shorter great circle arc from ``a`` to ``b`` (slerp)."""
    omega = np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def triangle_edges(n: int = 64) -> list[np.ndarray]:
    """Projected edges of the triangle [001]-[100] (y=0), [001]-[110] (x=y), [100]-[110] (z=0).

    Each is an ``(n, 2)`` array of points of :func:`stereographic_from_minus_z`.
    """
    c = TRIANGLE_CORNERS
    pairs = [("[001]", "[100]"), ("[001]", "[110]"), ("[100]", "[110]")]
    return [stereographic_from_minus_z(_great_arc(c[a], c[b], n)) for a, b in pairs]


def plot_stereographic_errors(
    path: str | os.PathLike,
    true: np.ndarray,
    errors: np.ndarray,
    label: str = "thesis error a",
    cmap: str = "viridis",
    vmax: float | None = None,
    point_size: float = 6.0,
    figsize: tuple[float, float] = (5.5, 4.5),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Errors on the stereographic triangle [001]-[100]-[110], placed at the TRUE direction.

    Parameters
    ----------
    path
        PNG to write.
    true
        ``(n, 3)`` true directions (sector-reduced labels), projected with
        :func:`stereographic_from_minus_z`.
    errors
        ``(n,)`` the error of each sample: the colour.
    label
        Colour bar label.
    cmap, vmax
        Colour map; upper colour limit (default: the 99th percentile, so outliers do not
        wash out the rest).
    point_size, figsize, dpi, title
        Appearance; the PNG is ``figsize * dpi`` pixels.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    t = np.asarray(true, dtype=float)
    e = np.asarray(errors, dtype=float)
    if t.ndim != 2 or t.shape[1] != 3 or e.shape != (t.shape[0],):
        raise EdorientError(f"true must be (n, 3) and errors (n,); got {t.shape}, {e.shape}")
    p = stereographic_from_minus_z(t)
    finite = e[np.isfinite(e)]
    if vmax is None:
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=figsize)
    order = np.argsort(np.where(np.isfinite(e), e, np.inf))  # worst drawn last, on top
    sc = ax.scatter(
        p[order, 0], p[order, 1], c=e[order], s=point_size, cmap=cmap, vmin=0.0, vmax=vmax
    )
    for edge in triangle_edges():
        ax.plot(edge[:, 0], edge[:, 1], color="k", lw=1.0)
    offsets = {"[001]": (-0.03, -0.05), "[100]": (0.01, -0.05), "[110]": (0.01, 0.02)}
    for name, v in TRIANGLE_CORNERS.items():
        q = stereographic_from_minus_z(v)
        ax.annotate(name, q, xytext=q + np.array(offsets[name]), fontsize="small")
    ax.set_aspect("equal")
    ax.set_xlim(-0.06, 1.1)
    ax.set_ylim(-0.08, 0.8)
    ax.set_axis_off()
    fig.colorbar(sc, ax=ax, label=label, shrink=0.8)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------
# Worst images


def _grains(spots: object) -> list[np.ndarray]:
    """One image's spots as a list of ``(m, 2)`` arrays, one per grain."""
    if isinstance(spots, np.ndarray) and spots.ndim == 2:
        groups = [spots]
    elif isinstance(spots, (list, tuple)) and spots and np.ndim(spots[0]) == 2:
        groups = list(spots)
    else:
        arr = np.asarray(spots, dtype=float).reshape(-1, 2) if np.size(spots) else np.zeros((0, 2))
        groups = [arr]
    out = []
    for g in groups:
        a = np.asarray(g, dtype=float).reshape(-1, 2) if np.size(g) else np.zeros((0, 2))
        out.append(a)
    return out


def plot_worst_images(
    path: str | os.PathLike,
    images: np.ndarray,
    true_spots: Sequence[object],
    pred_spots: Sequence[object],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_inches: float = 2.5,
    dpi: int = 100,
    marker_size: float = 30.0,
) -> Path:
    """A grid of images with the true and the predicted spot positions overlaid.

    Parameters
    ----------
    path
        PNG to write.
    images
        ``(n, H, W)`` images (any scale; shown in grey, ``vmin``/``vmax`` per image). Pick
        them with :func:`edorient.evaluation.metrics.worst_indices`.
    true_spots, pred_spots
        Per image, the spot pixel coordinates ``(row, col)``: an ``(m, 2)`` array, or a list
        of such arrays, one per grain (grain ``j`` gets colour ``j``). True spots are drawn
        as open circles, predicted ones as crosses.
    titles
        One title per image (e.g. its id and errors).
    ncols, panel_inches, dpi
        Grid columns; the side of one panel in inches. The PNG is
        ``ncols * panel_inches * dpi`` by ``nrows * panel_inches * dpi`` pixels.
    marker_size
        Marker area (points²).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 3 or imgs.shape[0] == 0:
        raise EdorientError(f"images must have shape (n, H, W) with n > 0, got {imgs.shape}")
    n = imgs.shape[0]
    if len(true_spots) != n or len(pred_spots) != n:
        raise EdorientError(
            f"need one spot list per image: {n} images, {len(true_spots)} true,"
            f" {len(pred_spots)} predicted"
        )
    if titles is not None and len(titles) != n:
        raise EdorientError(f"need one title per image: {n} images, {len(titles)} titles")
    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * panel_inches, nrows * panel_inches), squeeze=False
    )
    colours = ["tab:red", "tab:cyan", "tab:orange", "tab:green"]
    h, w = imgs.shape[1:]
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(imgs[i], cmap="gray", interpolation="nearest")
        for j, s in enumerate(_grains(true_spots[i])):
            ax.scatter(
                s[:, 1], s[:, 0], s=marker_size, facecolors="none",
                edgecolors=colours[j % len(colours)], linewidths=0.8,
            )
        for j, s in enumerate(_grains(pred_spots[i])):
            ax.scatter(
                s[:, 1], s[:, 0], s=marker_size * 0.6, marker="x",
                color=colours[j % len(colours)], linewidths=0.8,
            )
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        if titles is not None:
            ax.set_title(titles[i], fontsize="x-small")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.04, hspace=0.15)
    return _save(fig, path, dpi)
