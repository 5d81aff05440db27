"""DDP: 2 processes on CPU (gloo) hold identical weights after training; only rank 0 writes and
logs."""

import json
import logging
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from edorient.models import build_model
    from edorient.training import TrainConfig, fit
    from edorient.training import distributed as D
    from edorient.data import InMemoryDataset

    # as the CLI: logging configured (INFO, to a file per rank here) before the process group starts
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", force=True,
                        handlers=[logging.FileHandler(Path(root) / "out" / f"log_{rank}.txt")])
    assert D.setup("cpu") and D.world_size() == world
    torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
    model = build_model("compact-s", input_size=32)
    tr, va = InMemoryDataset(48, image_size=32, seed=1), InMemoryDataset(12, image_size=32, seed=2)
    cfg = TrainConfig(epochs=2, batch_size=8, loss="order-free", optimizer="adamw", lr=2e-3, eps=1e-8,
                      device="cpu", progress=False, plot=False, seed=0)
    res = fit(model, tr, va, cfg, Path(root) / f"run_rank{rank}")
    out = Path(root) / "out"
    torch.save(model.state_dict(), out / f"weights_{rank}.pt")
    (out / f"history_{rank}.json").write_text(json.dumps([{k: r[k] for k in ("mae_of", "val_loss", "step")} for r in res.history]))
    D.cleanup()


def test_two_gloo_processes_agree_and_only_rank0_writes(tmp_path):
    (tmp_path / "out").mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "out" / "weights_0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "out" / "weights_1.pt", weights_only=True)
    torch.manual_seed(100)
    from edorient.models import build_model

    init = build_model("compact-s", input_size=32).state_dict()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert not torch.equal(w0["features.0.weight"], init["features.0.weight"])  # it trained
    # 48 images / 2 ranks / batch 8 = 3 steps per epoch on each rank
    h0 = json.loads((tmp_path / "out" / "history_0.json").read_text())
    h1 = json.loads((tmp_path / "out" / "history_1.json").read_text())
    assert h0 == h1 and [h["step"] for h in h0] == [3, 6]
    assert (tmp_path / "run_rank0" / "last.pt").is_file() and (tmp_path / "run_rank0" / "metrics.csv").is_file()
    assert not (tmp_path / "run_rank1").exists()
    # rank 0 alone logs each epoch
    epochs = [[line for line in (tmp_path / "out" / f"log_{r}.txt").read_text().splitlines() if ": epoch " in line]
              for r in (0, 1)]
    assert len(epochs[0]) == 2 and epochs[1] == []
