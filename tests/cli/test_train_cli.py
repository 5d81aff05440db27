"""``edorient train`` on a tiny generated data set: a run, resume, fine-tuning, bad arguments."""

import csv
import json

import pytest
import torch

from edorient.cli.main import main

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "d"
    assert main(["-q", "generate", "--mode", "thesis", "-n", "24", "--size", "32", "--out", str(root), "--no-progress"]) == 0
    return root


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_train_resume_and_checkpoint(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["-q", "train", "--data", str(data_dir), "--out", str(out), "--arch", "compact-s", "--batch-size", "32",
            "--optimizer", "adamw", "--lr", "0.002", "--loss", "symmetry", "--no-progress"]
    assert _run(base + ["--epochs", "1"]) == 0
    assert "run folder" in capsys.readouterr().out
    assert _run(["-q", "train", "--data", str(data_dir), "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["loss"] == "symmetry" and cfg["model"]["arch"] == "compact-s" and cfg["train"]["epochs"] == 2
    ck = torch.load(out / "best.pt", weights_only=True)
    assert ck["model_config"]["input_size"] == 32
    # a second run into the same folder without --resume is refused
    assert _run(base + ["--epochs", "1"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_finetune_dense_and_input_resize(data_dir, tmp_path):
    out = tmp_path / "ft"
    argv = ["-q", "train", "--data", str(data_dir), "--out", str(out), "--arch", "thesis", "--input", "16",
            "--finetune", "dense", "--subsets", "0,1", "--first-epochs", "1", "--later-epochs", "1",
            "--batch-size", "64", "--no-progress"]
    assert _run(argv) == 0
    s1 = torch.load(out / "stage_01" / "best.pt", weights_only=True)
    s2 = torch.load(out / "stage_02" / "last.pt", weights_only=True)
    assert s2["config"]["freeze"] == "features" and s2["model_config"]["input_size"] == 16
    for k in s1["model"]:
        if k.startswith("features."):
            assert torch.equal(s1["model"][k], s2["model"][k])


@pytest.mark.parametrize(
    "extra,message",
    [(["--arch", "nope"], "unknown architecture 'nope'"), (["--batch-size", "0"], "positive integer"),
     (["--loss", "l2"], "invalid choice")],
)
def test_bad_arguments(data_dir, tmp_path, capsys, extra, message):
    assert _run(["train", "--data", str(data_dir), "--out", str(tmp_path / "r")] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_missing_data_folder(tmp_path, capsys):
    assert _run(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "edorient generate" in err[0]
    assert not (tmp_path / "r").exists()
