"""The shipped models (edorient.pretrained): files, cards, loading, and accuracy on fresh images.

The accuracy checks simulate new images here (orientations and seeds the models never saw) drawn
as the card's own test set, and hold each model to its card within the sampling error of the
two medians (three standard errors), and under half the error of the same predictions scored
against other images' grains (chance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edorient import pretrained
from edorient.errors import EdorientError
from edorient.evaluation.pipeline import find_checkpoint, sector_predictions
from edorient.render import SimulationConfig, Simulator, add_noise
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


def _card_test_config(card: dict, seed: int, n: int):
    """The GenerateConfig of the card's first ("as trained") test set, with another seed and size."""
    import shlex

    from edorient.data.generate import GenerateConfig

    words = shlex.split(next(iter(card["test"].values()))["data"])
    opt = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}

    def pair(text):
        lo, _, hi = text.partition(":")
        return (float(lo), float(hi or lo))

    return GenerateConfig(
        mode=opt["--mode"], n=n, image_size=int(opt["--size"]), seed=seed,
        ratio=pair(opt.get("--ratio", "0.5")),
        noise_dose=pair(opt["--dose"]) if "--dose" in opt else None,
        noise_background=pair(opt.get("--background", "0")),
    )


def _grain_errors(model, laue, x, true):
    """Per-grain angles (degrees, modulo the Laue group; bicrystals order-free), pooled."""
    from edorient.evaluation.metrics import angular_errors, angular_errors_pairs

    with torch.no_grad():
        raw = model(torch.as_tensor(x)[:, None]).reshape(len(x), -1, 3).numpy()
    pred = sector_predictions(raw, laue)
    if true.shape[1] == 1:
        return angular_errors(pred[:, 0], true[:, 0], laue)
    return angular_errors_pairs(pred, true, laue, order="free").ravel()


def _bootstrap_se_of_median(err: np.ndarray, rng: np.random.Generator, n_boot: int = 400) -> float:
    idx = rng.integers(0, len(err), size=(n_boot, len(err)))
    return float(np.std(np.median(err[idx], axis=1)))


@pytest.mark.parametrize("name", ["anatase-single", "anatase-bicrystal"])
def test_pretrained_accuracy_on_fresh_images(name):
    """Fresh simulated images drawn exactly as the card's own test set (orientations uniform
    over SO(3), the card's noise and grain-weight ranges per image), from another seed. The
    fresh median must agree with the card's within three standard errors of the difference
    (bootstrap standard error of the fresh median; the card's, from its own test size, scaled
    by sqrt(n_fresh / n_card)): a model worse, or better, than its card fails."""
    from edorient.data.dataset import OnTheFlyDataset

    laue = anatase().laue
    model, size = pretrained.load(name)
    card = pretrained.card(name)
    cfg = _card_test_config(card, seed=2026, n=400)
    assert cfg.image_size == size and cfg.grains_per_record == card["grains"]
    data = OnTheFlyDataset(cfg)
    samples = [data.sample(i) for i in range(cfg.n)]
    x = np.stack([s[0] for s in samples])
    true = np.stack([s[1]["directions"] for s in samples]).reshape(cfg.n, card["grains"], 3)
    err = _grain_errors(model, laue, x, true)
    rng = np.random.default_rng(0)
    se_fresh = _bootstrap_se_of_median(err, rng)
    first = next(iter(card["test"].values()))
    card_n = first["angle_deg"]["n"]
    se_card = se_fresh * np.sqrt(len(err) / card_n)
    card_median = first["angle_deg"]["median"]
    fresh_median = float(np.median(err))
    tol = 3.0 * float(np.hypot(se_fresh, se_card))
    assert abs(fresh_median - card_median) <= tol, (fresh_median, card_median, tol)
    # chance: the same predictions against another image's grains (a random guess in the sector)
    chance = float(np.median(_grain_errors(model, laue, x, np.roll(true, 1, axis=0))))
    assert fresh_median < 0.5 * chance, (fresh_median, chance)


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
    assert res["method"] == "CNN (pretrained:anatase-single) + refinement" and res["working_size"] == 128
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
    # evaluate refines the CNN's estimates by default and reports both (noisy 96 px images)
    ref = res["refinement"]
    assert ref["n_images"] == 20 and ref["after"]["median"] < ref["before"]["median"]
    assert "Refinement of the CNN's estimates" in (out / "report.md").read_text()
    assert main(["-q", "evaluate", "--run", "pretrained:nope", "--data", str(data)]) == 2
