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


def test_killed_between_last_and_best_then_resume_reports_what_best_pt_holds(data_dir, tmp_path, capsys, monkeypatch):
    """Issue 15: killed after last.pt, before best.pt of the final (best) epoch; then the same
    command with --resume must leave best.pt, best.json and metrics.csv at that epoch."""
    import re

    import edorient.training.checkpoint as C

    def argv(out, epochs):
        return ["-q", "train", "--data", str(data_dir), "--out", str(out), "--arch", "compact-s", "--epochs",
                str(epochs), "--batch-size", "20", "--limit", "200", "--optimizer", "adamw", "--lr", "0.001",
                "--loss", "symmetry", "--select", "val_loss", "--no-progress"]

    # An uninterrupted run says which epoch improved last; the killed run stops at that epoch.
    assert _run(argv(tmp_path / "ref", 3)) == 0
    rows = list(csv.DictReader(open(tmp_path / "ref" / "metrics.csv")))
    epochs = max(int(r["epoch"]) for r in rows if r["best"] == "1")
    out = tmp_path / "run"
    real, seen = C._atomic, []

    def atomic(path, write):
        if path.name == "last.pt":
            seen.append(path)
        if path.name == "best.pt" and len(seen) == epochs:  # last.pt of the final epoch is on disk
            raise KeyboardInterrupt  # Ctrl-C (or a SIGKILL) between the two writes
        return real(path, write)

    monkeypatch.setattr(C, "_atomic", atomic)
    assert _run(argv(out, epochs)) == 130
    monkeypatch.undo()
    held = torch.load(out / "best.pt", weights_only=True)["epoch"] if (out / "best.pt").is_file() else None
    assert held != epochs
    capsys.readouterr()
    assert _run(argv(out, epochs) + ["--resume"]) == 0
    said = int(re.search(r"best epoch (\d+)", capsys.readouterr().out).group(1))
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    assert said == best["epoch"] == last["best"]["epoch"] == epochs
    assert json.loads((out / "best.json").read_text())["epoch"] == epochs
    assert [int(r["epoch"]) for r in csv.DictReader(open(out / "metrics.csv"))] == list(range(1, epochs + 1))
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
