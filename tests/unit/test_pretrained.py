"""The shipped models (edorient.pretrained): files, cards, loading, and accuracy on fresh images.

The accuracy checks simulate new images here (orientations and seeds the models never saw)
and hold each model to its own card: the median error must be within twice the card's median
on its test set plus 2 degrees, and under half the error of the same predictions scored against
other images' grains (chance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edorient import pretrained
from edorient.errors import EdorientError
from edorient.evaluation.pipeline import find_checkpoint, sector_predictions
from edorient.physics.orientation import rotation_from_direction, sample_sector_directions
from edorient.render import SimulationConfig, Simulator, add_noise, display_transform
from edorient.structures import anatase


def test_both_models_are_shipped_with_cards():
    assert pretrained.available() == ["anatase-bicrystal", "anatase-single"]
    for name in pretrained.available():
        card = pretrained.card(name)
        assert card["name"] == name and card["grains"] in (1, 2)
        assert card["training"].startswith("edorient train") and card["training_data"].startswith("edorient generate")
        assert card["test"] and all(t["n_test_images"] > 1000 for t in card["test"].values())
        path = pretrained.checkpoint_path(name)
        assert path.stat().st_size < 5e6  # small enough to ship in the wheel
        ckpt = torch.load(path, weights_only=True)  # tensors and primitives only
        assert "optimizer" not in ckpt and ckpt["model_config"]["n_grains"] == card["grains"]
        assert sum(v.numel() for v in ckpt["model"].values()) == card["parameters"]


def test_pretrained_names_resolve_everywhere_a_run_is_accepted():
    assert find_checkpoint("pretrained:anatase-single") == pretrained.checkpoint_path("anatase-single")
    with pytest.raises(EdorientError, match="anatase-bicrystal, anatase-single"):
        find_checkpoint("pretrained:quartz")
    assert pretrained.resolve("runs/x") == pretrained.Path("runs/x")


def _median_error(model, laue, x, true):
    with torch.no_grad():
        raw = model(torch.as_tensor(x)[:, None]).reshape(len(x), -1, 3).numpy()
    pred = sector_predictions(raw, laue)
    if true.shape[1] == 1:
        return float(np.median(laue.angle(pred[:, 0], true[:, 0])))
    same = laue.angle(pred[:, 0], true[:, 0]) + laue.angle(pred[:, 1], true[:, 1])
    swap = laue.angle(pred[:, 0], true[:, 1]) + laue.angle(pred[:, 1], true[:, 0])
    return float(np.median(np.minimum(same, swap) / 2))


@pytest.mark.parametrize("name", ["anatase-single", "anatase-bicrystal"])
def test_pretrained_accuracy_on_fresh_images(name):
    """Fresh simulated images, drawn as the training data are (sector-uniform directions, any
    in-plane angle, grain weights 0.35-0.65, the same noise), but from another seed."""
    xtal, laue = anatase(), anatase().laue
    model, size = pretrained.load(name)
    card = pretrained.card(name)
    g = card["grains"]
    sim = Simulator(xtal, SimulationConfig(image_size=size))
    rng = np.random.default_rng(2026)
    n = 64
    d = sample_sector_directions(n * g, laue, rng)
    lin = sim.linear_images(rotation_from_direction(d, rng.uniform(0, 360, n * g))).reshape(n, g, size, size)
    mixed = lin[:, 0]
    if g == 2:
        w = rng.uniform(0.35, 0.65, n).astype(np.float32)[:, None, None]
        mixed = w * lin[:, 0] + (1 - w) * lin[:, 1]
    x = display_transform(np.stack([add_noise(m, 10000, 0.0005, rng) for m in mixed]))
    true = laue.reduce(d).reshape(n, g, 3)
    err = _median_error(model, laue, x, true)
    card_median = next(iter(card["test"].values()))["angle_deg"]["median"]
    assert err <= 2 * card_median + 2.0, (err, card_median)
    # chance: the same predictions against another image's grains (a random guess in the sector)
    chance = _median_error(model, laue, x, np.roll(true, 1, axis=0))
    assert err < 0.5 * chance, (err, chance)


def test_predict_cli_with_a_shipped_model(tmp_path):
    from edorient.cli.main import main
    from edorient.physics.orientation import rotation_from_zone_axis

    xtal = anatase()
    sim = Simulator(xtal, SimulationConfig(image_size=180, calibration=0.0165))
    img = sim.linear_image(rotation_from_zone_axis([1, 0, 1], xtal.direct_matrix, 35.0))
    img = add_noise(img, 20000, 0.0005, np.random.default_rng(4)) * 20000
    np.save(tmp_path / "p.npy", img.astype(np.float32))
    out = tmp_path / "r.json"
    assert main(["-q", "predict", str(tmp_path / "p.npy"), "--calibration", "0.0165", "--run",
                 "pretrained:anatase-single", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["method"] == "CNN (pretrained:anatase-single)" and res["working_size"] == 128
    g = res["grains"][0]
    assert xtal.laue.angle(np.array(g["direction"]), xtal.zone_axis_direction([1, 0, 1])) < 10.0
    assert main(["-q", "predict", str(tmp_path / "p.npy"), "--calibration", "0.0165", "--run",
                 "pretrained:anatase-bicrystal"]) == 2  # two heads, one grain asked for


def test_evaluate_cli_with_a_shipped_model(tmp_path):
    from edorient.cli.main import main
    from edorient.data import GenerateConfig, generate_dataset

    data = generate_dataset(GenerateConfig(mode="single", n=40, image_size=96, seed=3, test_fraction=0.5,
                                           noise_dose=10000.0, noise_background=0.0005), tmp_path / "d", progress=False)
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", "--run", "pretrained:anatase-single", "--data", str(data), "--out", str(out),
                 "--stage2-max", "0", "--no-progress"]) == 0  # 96 px images resized to the model's 128
    res = json.loads((out / "results.json").read_text())
    assert res["n_test"] == 20 and res["checkpoint"].endswith("anatase-single.pt")
    assert main(["-q", "evaluate", "--run", "pretrained:nope", "--data", str(data)]) == 2
