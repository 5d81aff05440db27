"""Losses, metrics and the torch sector reduction, against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from edorient.errors import EdorientError
from edorient.training import build_loss, epoch_metrics, laue_4mmm_ops, reduce_to_sector, symmetric_angle

OPS = laue_4mmm_ops()


def _unit(*v):
    v = torch.tensor(v, dtype=torch.float32)
    return v / v.norm()


def test_4mmm_group_is_16_distinct_orthogonal_ops():
    assert OPS.shape == (16, 3, 3)
    assert torch.allclose(OPS @ OPS.transpose(1, 2), torch.eye(3).expand(16, 3, 3))
    assert len({tuple(o.flatten().tolist()) for o in OPS}) == 16
    assert any(torch.equal(o, -torch.eye(3)) for o in OPS)  # inversion (Laue group)


def test_reduce_matches_the_4mmm_sector_formula(rng):
    # 4/mmm sector x >= y >= 0, z >= 0: the representative is (max|x,y|, min|x,y|, |z|).
    v = rng.normal(size=(500, 3))
    red = reduce_to_sector(torch.as_tensor(v), OPS.double()).numpy()
    a = np.abs(v)
    expect = np.stack([np.maximum(a[:, 0], a[:, 1]), np.minimum(a[:, 0], a[:, 1]), a[:, 2]], 1)
    np.testing.assert_allclose(red, expect, atol=1e-12)


def test_reduce_agrees_with_physics_laue_group_on_another_group(rng):
    sym = pytest.importorskip("edorient.physics.symmetry")
    for name in ("m-3m", "6/mmm", "2/m"):
        g = sym.laue_group(name)
        v = rng.normal(size=(200, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ours = reduce_to_sector(torch.as_tensor(v), torch.as_tensor(np.array(g.ops))).numpy()
        np.testing.assert_allclose(ours, g.reduce(v), atol=1e-9)


def test_symmetric_angle_by_hand():
    # [100] and [010] are equivalent in 4/mmm; [100] to [001] is 90 deg; [100] to [110] 45 deg.
    assert float(symmetric_angle(_unit(1, 0, 0), _unit(0, -1, 0), OPS, degrees=True)) == pytest.approx(0, abs=1e-3)
    assert float(symmetric_angle(_unit(1, 0, 0), _unit(0, 0, 1), OPS, degrees=True)) == pytest.approx(90, abs=1e-4)
    assert float(symmetric_angle(_unit(1, 0, 0), _unit(1, 1, 0), OPS, degrees=True)) == pytest.approx(45, abs=1e-4)


def _pair(a, b):
    return torch.stack([a, b])[None]  # (1, 2, 3)


def test_thesis_loss_by_hand():
    t = _pair(torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0]))
    p = _pair(torch.tensor([0.5, 0, 0]), torch.tensor([0, 0.25, 1.0]))
    # head 1: |0.5| = 0.5 ; head 2: |0.25| = 0.25 ; summed over heads
    assert float(build_loss("thesis")(p, t)) == pytest.approx(0.75)


def test_order_free_ignores_head_order_thesis_does_not():
    t = _pair(torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0]))
    swapped = t.flip(1)
    assert float(build_loss("thesis")(swapped, t)) == pytest.approx(4.0)  # 2 + 2
    assert float(build_loss("order-free")(swapped, t)) == pytest.approx(0.0)


def test_symmetry_loss_is_zero_for_an_equivalent_scaled_prediction():
    t = _pair(_unit(0.6, 0.3, 0.7), _unit(0.9, 0.1, 0.2))
    # (-y, x, -z) is a 4/mmm operation; scale 3 is removed by the normalisation; heads swapped.
    eq = lambda v: torch.stack([-v[1], v[0], -v[2]]) * 3  # noqa: E731
    p = _pair(eq(t[0, 1]), eq(t[0, 0]))
    assert float(build_loss("symmetry")(p, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(build_loss("symmetry-angular")(p, t)) == pytest.approx(0.0, abs=1e-3)
    assert float(build_loss("order-free")(p, t)) > 1.0


def test_angular_loss_by_hand_and_has_gradients():
    t = _pair(_unit(1, 0, 0), _unit(0, 0, 1))
    p = _pair(_unit(0, 0, 1), _unit(1, 0, 0)).requires_grad_(False)
    p = (p + torch.tensor([0.0, 0.1, 0.0])).requires_grad_(True)
    loss = build_loss("symmetry-angular")(p, t)
    # heads swapped: angles atan(0.1) to [001] and atan(0.1) to [100] -> sum 2 atan(0.1)
    assert float(loss.detach()) == pytest.approx(2 * math.atan(0.1), abs=1e-5)
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_unknown_loss():
    with pytest.raises(EdorientError, match="unknown loss 'l2'"):
        build_loss("l2")


def test_epoch_metrics_by_hand():
    t = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]], [[0, 0, 1.0], [1.0, 0, 0]]])
    p = t.clone()
    p[0, 0] = torch.tensor([0.8, 0.0, 0.0])  # error 0.2 on head 1 of sample 0, angle 0
    p[1] = p[1].flip(0)  # sample 1: heads swapped -> error 2 + 2 in thesis order, 0 order-free
    m = epoch_metrics(p, t)
    assert m["mae_1"] == pytest.approx((0.2 + 2.0) / 2)
    assert m["mae_2"] == pytest.approx((0.0 + 2.0) / 2)
    assert m["sum_mae"] == pytest.approx(2.1)
    assert m["sigma_1"] == pytest.approx(0.9)
    assert m["mae_of"] == pytest.approx(0.2 / 4)
    assert m["median_angle_deg"] == pytest.approx(0.0, abs=1e-3)


def test_epoch_metrics_single_crystal():
    t = torch.tensor([[[1.0, 0, 0]], [[0, 0, 1.0]]])
    p = torch.tensor([[[0.0, 1, 0]], [[0, 1.0, 1.0]]])
    m = epoch_metrics(p, t)
    assert "mae_2" not in m
    assert m["mae_1"] == pytest.approx(1.5)  # sample 0: |-1| + |1| = 2, sample 1: |1| = 1
    assert m["mae_1"] == m["mae_of"]
    assert m["median_angle_deg"] == pytest.approx(22.5, abs=1e-3)  # median of 0 and 45


def test_postprocess_normalises_and_reduces_only_for_symmetry_losses():
    from edorient.training.losses import postprocess

    raw = torch.tensor([[[0.0, -2.0, -2.0]]])
    expect = torch.tensor([[[2 ** -0.5, 0.0, 2 ** -0.5]]])  # 4/mmm sector: (max|x,y|, min|x,y|, |z|)
    assert torch.allclose(postprocess("symmetry", raw), expect, atol=1e-6)
    assert torch.allclose(postprocess("symmetry-angular", raw), expect, atol=1e-6)
    assert torch.equal(postprocess("thesis", raw), raw)
    assert torch.equal(postprocess("order-free", raw), raw)
