"""Issue 15: a run killed while saving resumes to a consistent folder; resume with workers is exact."""

import csv
import json

import numpy as np
import pytest
import torch

import edorient.training.checkpoint as C
import edorient.training.loop as L
from edorient.data import InMemoryDataset
from edorient.models import build_model
from edorient.training import TrainConfig, fit, load_checkpoint

SIZE = 32


@pytest.fixture(scope="module")
def data():
    ds = InMemoryDataset(64, image_size=SIZE, seed=5)
    return ds, ds  # validated on the training set: the metric improves in both epochs


def _cfg(**kw):
    base = dict(epochs=2, batch_size=16, loss="order-free", optimizer="adamw", lr=2e-3, eps=1e-8,
                device="cpu", progress=False, plot=False, seed=3)
    return TrainConfig(**{**base, **kw})


class _Kill(Exception):
    pass


def _epochs(run):
    return [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]


# Where the kill lands in epoch 2's saving: before best.pt (the issue), between best.pt and its
# sidecar, between last.pt and its sidecar, before metrics.csv.
@pytest.mark.parametrize("where", ["best.pt", "best.json", "last.json", "metrics.csv"])
def test_kill_while_saving_then_resume_gives_a_consistent_folder(data, tmp_path, monkeypatch, where):
    run = tmp_path / "run"
    armed = []
    real_atomic, real_csv = C._atomic, L._write_csv

    def atomic(path, write):  # every checkpoint and sidecar write goes through here
        if armed and path.name == where:
            raise _Kill
        return real_atomic(path, write)

    def write_csv(path, history):
        if armed and where == "metrics.csv":
            raise _Kill
        return real_csv(path, history)

    monkeypatch.setattr(C, "_atomic", atomic)
    monkeypatch.setattr(L, "_write_csv", write_csv)

    def hook(epoch, step):  # arm the kill once epoch 2 trains: it lands in epoch 2's saving
        if epoch == 2:
            armed.append(step)

    torch.manual_seed(0)
    with pytest.raises(_Kill):
        fit(build_model("compact-s", input_size=SIZE), data[0], data[1], _cfg(), run, step_hook=hook)
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 2 and last["best"]["epoch"] == 2  # epoch 2 improved: best.pt was due
    assert _epochs(run) == [1]
    for name in (".metrics.csv.k1ll3d.tmp.csv", ".best.pt.x7_q2a.tmp.pt", ".last.json.abc.tmp.json"):
        (run / name).write_bytes(b"half written")  # what a SIGKILL inside atomic_path leaves
    monkeypatch.undo()

    torch.manual_seed(123)
    res = fit(build_model("compact-s", input_size=SIZE), data[0], data[1], _cfg(), run, resume=True)
    assert res.best_epoch == 2
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == 2 and best["best"]["epoch"] == 2
    for k in last["model"]:
        assert torch.equal(best["model"][k], last["model"][k]), k
    assert json.loads((run / "best.json").read_text())["epoch"] == 2
    assert json.loads((run / "last.json").read_text())["epoch"] == 2
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and rows[1]["best"] == "1"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_best_that_last_cannot_restore_is_refused(data, tmp_path):
    run = tmp_path / "run"
    torch.manual_seed(0)
    fit(build_model("compact-s", input_size=SIZE), data[0], data[1], _cfg(epochs=1), run)
    ck = load_checkpoint(run / "last.pt")
    ck = {**ck, "epoch": 2, "history": ck["history"] + [dict(ck["history"][0], epoch=2, best=0)]}
    C.save_checkpoint(run / "last.pt", ck)  # a last.pt whose best (epoch 1) is not its own epoch
    (run / "best.pt").unlink(), (run / "best.json").unlink()
    with pytest.raises(L.EdorientError, match="best.pt holds epoch None but the run's best is epoch 1") as e:
        fit(build_model("compact-s", input_size=SIZE), data[0], data[1], _cfg(epochs=3), run, resume=True)
    assert "\n" not in str(e.value) and "new --out" in str(e.value)


class _WorkerNoise(torch.utils.data.Dataset):
    """Items with noise drawn in the DataLoader worker from torch's and numpy's global RNGs."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i][:2]
        noise = 0.05 * torch.rand(x.shape) + 0.05 * torch.from_numpy(np.random.random_sample(x.shape).astype(np.float32))
        return x + noise, y


def test_resume_with_two_workers_is_bit_identical(tmp_path):
    train = _WorkerNoise(InMemoryDataset(48, image_size=SIZE, seed=1))
    val = InMemoryDataset(16, image_size=SIZE, seed=2)
    cfg = _cfg(epochs=3, workers=2)  # compact-s has dropout: the main process' RNG matters too

    def run(name, **kw):
        return fit(build_model("compact-s", input_size=SIZE), train, val, cfg, tmp_path / name, **kw)

    torch.manual_seed(0)
    full = run("a")

    def kill(epoch, step):
        if epoch == 3 and step == 7:  # the middle of epoch 3 (3 steps per epoch)
            raise _Kill

    torch.manual_seed(0)
    with pytest.raises(_Kill):
        run("b", step_hook=kill)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    torch.manual_seed(123)  # another fresh model and global RNG state: all must come from last.pt
    resumed = run("b", resume=True)
    assert resumed.history == [dict(r, epoch_time_s=s["epoch_time_s"], train_images_per_s=s["train_images_per_s"])
                               for r, s in zip(full.history, resumed.history)]
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
