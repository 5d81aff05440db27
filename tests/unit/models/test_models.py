"""Models: Keras counts of the thesis (the thesis' own numbers), shapes, the registry."""

import pytest
import torch

from edorient.errors import EdorientError
from edorient.models import (
    available_models,
    build_model,
    feasible_batch_sizes,
    memory_gb,
    model_config,
    model_from_config,
    summarize,
)

# Units and parameters printed in the thesis (section 3.3) for 224 x 224 x 1 inputs.
THESIS_COUNTS = {
    "thesis": (6_273_542, 102_958_822),
    "thesis-dense1024": (6_275_590, 206_244_582),
    "thesis-6conv": (7_176_710, 51_800_038),
}


@pytest.mark.parametrize("name", sorted(THESIS_COUNTS))
def test_thesis_counts_match_the_thesis(name):
    s = summarize(build_model(name, input_size=224, device="meta"))
    assert (s.units, s.params) == THESIS_COUNTS[name]


def test_single_crystal_has_one_head_fewer():
    # One Dense(3) head less: 3 units and 256*3+3 = 771 parameters fewer.
    s = summarize(build_model("thesis-single", device="meta"))
    assert (s.units, s.params) == (6_273_542 - 3, 102_958_822 - 771)
    assert summarize(build_model("thesis", n_grains=1, device="meta")).params == 102_958_822 - 771


def test_real_module_parameter_count_equals_the_count():
    model = build_model("thesis", input_size=224)  # real tensors, ~412 MB
    assert sum(p.numel() for p in model.parameters()) == 102_958_822
    assert model.dense[0].in_features == 64 * 56 * 56
    del model


@pytest.mark.parametrize("size,flat", [(224, 64 * 56 * 56), (56, 64 * 14 * 14), (28, 64 * 7 * 7)])
def test_flatten_follows_input_size(size, flat):
    model = build_model("thesis", input_size=size, device="meta")
    assert model.dense[0].in_features == flat


@pytest.mark.parametrize("name", ["thesis", "thesis-single", "thesis-6conv", "compact", "compact-gap", "compact-s"])
def test_forward_shape(name):
    torch.manual_seed(0)
    model = build_model(name, input_size=32).eval()
    n = 1 if name == "thesis-single" else 2
    out = model(torch.rand(3, 1, 32, 32))
    assert out.shape == (3, n, 3)


def test_summary_rows_of_thesis():
    s = summarize(build_model("thesis", device="meta"))
    kinds = [r.kind for r in s.rows]
    # Keras counts the input, pooling, dropout and flatten layers; ReLU is fused (not a layer).
    assert kinds[:7] == ["Input", "Conv2d", "Conv2d", "MaxPool2d", "Dropout", "Conv2d", "Conv2d"]
    assert "ReLU" not in kinds
    assert s.rows[1].shape == (32, 224, 224)


def test_memory_rule_eq_3_4_and_3_5():
    # Thesis: 7.25 GB at batch 128; on an 11 GB card batches 16, 32, 64, 128 are feasible.
    assert memory_gb(6_273_542, 102_958_822, 128) == pytest.approx(7.2478, abs=1e-4)
    assert feasible_batch_sizes(6_273_542, 102_958_822, 11.0) == [16, 32, 64, 128]
    # The dense1024 variant: "about 8 GB" by eq. 3.4.
    assert memory_gb(6_275_590, 206_244_582, 128) == pytest.approx(8.07616, abs=1e-5)
    assert feasible_batch_sizes(6_273_542, 102_958_822, 5.0) == [16, 32, 64]


def test_compact_is_much_cheaper_than_thesis():
    s_t = summarize(build_model("thesis", device="meta"))
    s_c = summarize(build_model("compact", device="meta"))
    assert s_c.params * 20 < s_t.params and s_c.units * 10 < s_t.units


def test_config_round_trip():
    torch.manual_seed(1)
    m = build_model("thesis-6conv", input_size=56, n_grains=1)
    cfg = model_config(m)
    assert cfg["arch"] == "thesis-6conv" and cfg["conv_blocks"] == [32, 64, 128]
    m2 = model_from_config(cfg)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(2, 1, 56, 56)
    assert torch.equal(m.eval()(x), m2.eval()(x))


def test_registry_lists_the_names():
    names = available_models()
    for n in ("thesis", "thesis-dense1024", "thesis-6conv", "thesis-single", "compact"):
        assert n in names


def test_unknown_architecture_is_a_one_line_error():
    with pytest.raises(EdorientError, match="unknown architecture 'nope'.*thesis") as e:
        build_model("nope")
    assert "\n" not in str(e.value)


def test_bad_options():
    with pytest.raises(EdorientError, match="unknown option"):
        build_model("thesis", widths=(1,))
    with pytest.raises(EdorientError, match="head"):
        build_model("thesis-single", n_grains=2)
