"""Plots write PNG files of the expected pixel size; the projection puts corners where known."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edorient.errors import EdorientError
from edorient.evaluation.plots import (
    plot_error_histograms,
    plot_stereographic_errors,
    plot_worst_images,
    stereographic_from_minus_z,
    triangle_edges,
)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_stereographic_projection_known_points():
    r2 = np.sqrt(2.0)
    v = np.array([[0, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, -1], [-1, 0, -1]], float)
    p = stereographic_from_minus_z(v)
    # [001] -> 0 ; [100] -> (1, 0) ; [110] -> (1/√2, 1/√2)
    # [101]/√2 -> (1/√2) / (1 + 1/√2) = tan(22.5°) = √2 - 1 ; [00-1] -> inverted to [001]
    # [-10-1] -> inverted to [101]
    expected = [[0, 0], [1, 0], [1 / r2, 1 / r2], [r2 - 1, 0], [0, 0], [r2 - 1, 0]]
    np.testing.assert_allclose(p, expected, atol=1e-12)


def test_triangle_edges_lie_on_their_great_circles():
    e001_100, e001_110, e100_110 = triangle_edges(32)
    np.testing.assert_allclose(e001_100[:, 1], 0.0, atol=1e-12)  # y = 0
    np.testing.assert_allclose(e001_110[:, 0], e001_110[:, 1], atol=1e-12)  # x = y
    np.testing.assert_allclose(np.hypot(*e100_110.T), 1.0, atol=1e-12)  # equator: unit circle
    np.testing.assert_allclose(e001_100[[0, -1]], [[0, 0], [1, 0]], atol=1e-12)


def test_histograms_png(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.exponential(0.3, size=(200, 2))
    deg = rng.exponential(3.0, size=(200, 2))
    path = plot_error_histograms(tmp_path / "h.png", a, deg, figsize=(4, 3), dpi=50)
    assert path.stat().st_size > 1000
    assert png_size(path) == (200, 150)  # 4 x 50, 3 x 50
    path1 = plot_error_histograms(tmp_path / "h1.png", a[:, 0], log=True, title="t")
    assert png_size(path1) == (900, 360)  # the default 9 x 3.6 inches at 100 dpi


def test_stereographic_png(tmp_path):
    rng = np.random.default_rng(1)
    v = np.abs(rng.normal(size=(300, 3)))
    v[:, :2] = np.sort(v[:, :2], axis=1)[:, ::-1]  # x >= y >= 0, z >= 0
    err = rng.random(300)
    path = plot_stereographic_errors(tmp_path / "sub" / "s.png", v, err, title="errors")
    assert path.stat().st_size > 1000
    assert png_size(path) == (550, 450)
    with pytest.raises(EdorientError):
        plot_stereographic_errors(tmp_path / "x.png", v, err[:10])


def test_worst_images_png(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.random((5, 32, 32)).astype(np.float32)
    true_spots = [[np.array([[16, 16], [10, 20]]), np.array([[5, 5]])] for _ in range(5)]
    pred_spots = [np.array([[15, 17]]) for _ in range(4)] + [np.zeros((0, 2))]
    path = plot_worst_images(
        tmp_path / "w.png", imgs, true_spots, pred_spots,
        titles=[f"#{i}" for i in range(5)], ncols=3, panel_inches=2.0, dpi=50,
    )
    assert path.stat().st_size > 1000
    assert png_size(path) == (300, 200)  # 3 columns x 2 rows of 2-inch panels at 50 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.png"]
    with pytest.raises(EdorientError):
        plot_worst_images(tmp_path / "x.png", imgs, true_spots[:4], pred_spots)
