"""``edorient train --simulate``: images simulated while training (fresh every epoch), resume with
the recorded simulation, ``--init`` from another checkpoint's weights, bad combinations."""

import csv
import json

import numpy as np
import pytest
import torch

from edorient.cli.main import main
from edorient.data import GenerateConfig, OnTheFlyDataset
from edorient.training.run import VALIDATION_EPOCH

pytestmark = pytest.mark.cli

SIM = ["--simulate", "random", "--size", "32", "--ratio", "0.35:0.65", "--dose", "300:100000",
       "--background", "0:0.002", "--epoch-size", "48", "--val-size", "16", "--data-seed", "5"]
TRAIN = ["--arch", "compact-s", "--batch-size", "16", "--optimizer", "adamw", "--lr", "0.002",
         "--loss", "symmetry", "--no-progress"]


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_train_on_simulated_images_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(["-q", "train", *SIM, *TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    assert "run folder" in capsys.readouterr().out
    args = json.loads((out / "train_args.json").read_text())
    gen = args["simulate"]["generate"]
    assert (gen["mode"], gen["image_size"], gen["seed"], gen["ratio"]) == ("random", 32, 5, [0.35, 0.65])
    assert (gen["noise_dose"], args["simulate"]["epoch_size"], args["simulate"]["val_size"]) == ([300.0, 100000.0], 48, 16)
    # resumed with the same simulation: a second epoch, same run
    assert _run(["-q", "train", *SIM, "--epochs", "2", "--resume", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["extra"]["simulate"]["generate"]["seed"] == 5 and ck["model_config"]["n_grains"] == 2
    # with other noise it is refused, naming what differs
    other = [a if a != "300:100000" else "1000:100000" for a in SIM]
    assert _run(["-q", "train", *other, "--epochs", "3", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "noise_dose" in capsys.readouterr().err


def test_every_epoch_draws_new_images_and_validation_is_apart():
    cfg = GenerateConfig(mode="random", n=8, image_size=32, seed=3, ratio=(0.35, 0.65))
    ds = OnTheFlyDataset(cfg, length=4)
    first = ds[0]
    ds.set_epoch(1)
    second = ds[0]
    ds.set_epoch(0)
    again = ds[0]
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    val = OnTheFlyDataset(cfg, length=4, epoch=VALIDATION_EPOCH)
    assert not any(torch.equal(val[0][1], OnTheFlyDataset(cfg, length=4, epoch=e)[0][1]) for e in range(3))


def test_fit_tells_the_training_set_each_epoch(tmp_path, monkeypatch):
    seen = []
    real = OnTheFlyDataset.set_epoch

    def spy(self, epoch):
        seen.append((self.length, epoch))
        real(self, epoch)

    monkeypatch.setattr(OnTheFlyDataset, "set_epoch", spy)
    assert _run(["-q", "train", *SIM, *TRAIN, "--epochs", "3", "--out", str(tmp_path / "r")]) == 0
    assert seen == [(48, 0), (48, 1), (48, 2)]  # the training set only; validation keeps its stream


def test_init_copies_the_weights_of_another_checkpoint(tmp_path):
    first = tmp_path / "a"
    assert _run(["-q", "train", *SIM, *TRAIN, "--epochs", "1", "--out", str(first)]) == 0
    # a learning rate of 1e-12: the weights after an epoch are those of --init (to float precision)
    out = tmp_path / "b"
    assert _run(["-q", "train", *SIM, *TRAIN, "--epochs", "1", "--lr", "1e-12", "--warmup-steps", "0",
                 "--schedule", "constant", "--weight-decay", "0", "--init", str(first), "--out", str(out)]) == 0
    a = torch.load(first / "best.pt", weights_only=True)["model"]
    b = torch.load(out / "last.pt", weights_only=True)
    for k, v in a.items():
        if "running" in k or "num_batches" in k:  # batch-norm statistics move in train mode whatever the rate
            continue
        assert torch.allclose(v.float(), b["model"][k].float()), k
    assert str(first) in b["extra"]["init"]


@pytest.mark.parametrize("extra, message", [
    (["--init", "pretrained:anatase-bicrystal"], "differs in input_size"),
    (["--data", "somewhere"], "either --data"),
    (["--finetune", "all"], "--epoch-size"),
    (["--epoch-size", "1"], "--epoch-size must be >= 2"),
])
def test_bad_combinations(tmp_path, capsys, extra, message):
    assert _run(["-q", "train", *SIM, *TRAIN, "--epochs", "1", *extra, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_neither_data_nor_simulate(tmp_path, capsys):
    assert _run(["-q", "train", *TRAIN, "--out", str(tmp_path / "x")]) == 2
    assert "--simulate" in capsys.readouterr().err


def test_simulated_labels_are_the_generator_s(tmp_path):
    """An on-the-fly sample is the generator's record: its label is the sector-reduced beam
    direction of the rotation the image was drawn with."""
    from edorient.structures import anatase

    cfg = GenerateConfig(mode="random", n=4, image_size=32, seed=9)
    ds = OnTheFlyDataset(cfg, length=4)
    image, lab = ds.sample(2)
    _, target, idx = ds[2]
    laue = anatase().laue
    np.testing.assert_allclose(target.numpy(), laue.reduce(lab["rotations"][:, 2, :]), atol=1e-6)
    assert image.shape == (32, 32) and 0 <= image.min() and image.max() <= 1 and int(idx) == 2


def test_a_batch_is_the_samples_one_by_one():
    """The DataLoader's batched read (one rendering call) gives each sample exactly as alone,
    whatever the batch holds, resized too."""
    cfg = GenerateConfig(mode="random", n=8, image_size=32, seed=4, ratio=(0.35, 0.65), noise_dose=(300, 1e5),
                         noise_background=(0, 0.002))
    for resize in (None, 16):
        ds = OnTheFlyDataset(cfg, length=8, resize=resize, epoch=2)
        batch = ds.__getitems__([5, 0, 3])
        for (x, y, i), k in zip(batch, (5, 0, 3)):
            x1, y1, i1 = ds[k]
            assert torch.equal(x, x1) and torch.equal(y, y1) and int(i) == int(i1) == k
            assert x.shape == (1, resize or 32, resize or 32)
    with pytest.raises(IndexError):
        ds.__getitems__([0, 8])
