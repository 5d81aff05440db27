"""Training speed and same-wall-clock accuracy of the thesis CNN and the compact CPU models.

Part 1 (``--part speed``): training images/s at batch 128 on 224 x 224 inputs, per model, two
ways in the same process: plain eager PyTorch (model, optimizer, loss, backward, step on a
fixed in-memory batch) and edorient's :func:`edorient.training.fit` (DataLoader, loss, metrics,
checkpoints). Each model runs in its own subprocess so that its peak RSS is its own.

Part 2 (``--part wallclock``): every model trains for the same wall-clock budget on the same
simulated data set (``edorient generate``), then all are validated on the same images.

    .venv/bin/python benchmarks/bench_training.py --part speed
    .venv/bin/edorient generate --mode thesis -n 300 --size 224 --out /tmp/bench_data
    .venv/bin/python benchmarks/bench_training.py --part wallclock --data /tmp/bench_data --seconds 150
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

import torch

SPEED_STEPS = {"thesis": 2, "compact": 6, "compact-gap": 6, "compact-s": 6}
OPTIM = {"thesis": dict(optimizer="adadelta", lr=1.0, rho=0.95, eps=1e-7, loss="thesis"),
         "compact": dict(optimizer="adamw", lr=2e-3, eps=1e-8, loss="symmetry", weight_decay=1e-4)}


def _opt(arch: str) -> dict:
    return OPTIM["thesis" if arch.startswith("thesis") else "compact"]


def speed_one(arch: str, size: int, batch: int, steps: int) -> dict:
    """Images/s of plain eager training and of fit() for one model (run in a subprocess)."""
    from torch.utils.data import TensorDataset

    from edorient.models import build_model
    from edorient.training import TrainConfig, build_loss, fit, make_optimizer

    torch.manual_seed(0)
    x = torch.rand(batch, 1, size, size)
    y = torch.nn.functional.normalize(torch.rand(batch, 2, 3), dim=-1)
    cfg = TrainConfig(epochs=1, batch_size=batch, device="cpu", progress=False, plot=False,
                      max_steps_per_epoch=steps + 1, **_opt(arch))
    # plain eager PyTorch
    model = build_model(arch, input_size=size)
    opt = make_optimizer(model.parameters(), cfg)
    loss_fn = build_loss(cfg.loss)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    eager = batch * steps / sum(times[1:])
    # edorient fit(): DataLoader over an in-memory TensorDataset, steps + 1 steps, images/s of the epoch
    ds = TensorDataset(x.repeat(steps + 1, 1, 1, 1), y.repeat(steps + 1, 1, 1))
    val = TensorDataset(x[:16], y[:16])
    model = build_model(arch, input_size=size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = fit(model, ds, val, cfg, tmp)
        wall = time.perf_counter() - t0
    return {"arch": arch, "size": size, "batch": batch, "steps": steps, "eager_img_s": eager,
            "eager_step_s": sum(times[1:]) / steps, "fit_img_s": res.history[0]["train_images_per_s"],
            "fit_wall_s": wall, "params": sum(p.numel() for p in model.parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def part_speed(args) -> None:
    rows = []
    for arch in args.archs:
        cmd = [sys.executable, __file__, "--one", arch, "--size", str(args.size), "--batch", str(args.batch),
               "--steps", str(SPEED_STEPS.get(arch, 4))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{arch:<12} params {r['params']:>12,}  eager {r['eager_img_s']:8.1f} img/s  fit {r['fit_img_s']:8.1f} img/s"
              f"  peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
    base = next((r for r in rows if r["arch"] == "thesis"), rows[0])
    for r in rows:
        print(f"{r['arch']:<12} speed-up vs thesis (eager): {r['eager_img_s'] / base['eager_img_s']:6.1f}x")
    print(json.dumps(rows))


def part_wallclock(args) -> None:
    from edorient.data import open_dataset
    from edorient.models import build_model
    from edorient.training import TrainConfig, fit

    data = open_dataset(args.data)
    train = data.torch_dataset(data.index("random", "train"))
    val = data.torch_dataset(data.index("random", "val")[: args.val])
    results = []
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch, input_size=data.image_size)
        o = dict(_opt(arch))
        batch = 128 if arch.startswith("thesis") else args.compact_batch
        extra = {} if arch.startswith("thesis") else dict(schedule="cosine", warmup_steps=50)
        cfg = TrainConfig(epochs=1000, batch_size=batch, device="cpu", progress=False, plot=False,
                          time_limit_s=args.seconds, max_steps_per_epoch=args.steps_per_epoch, select="mae_of",
                          **o, **extra)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = fit(model, train, val, cfg, tmp)
            wall = time.perf_counter() - t0
        last = res.history[-1]
        best = min(res.history, key=lambda r: r["mae_of"])
        row = {"arch": arch, "batch": batch, "loss": o["loss"], "optimizer": o["optimizer"], "steps": last["step"],
               "images_seen": last["step"] * batch, "wall_s": wall, "last_mae_of": last["mae_of"],
               "last_sum_mae": last["sum_mae"], "last_median_angle_deg": last["median_angle_deg"],
               "best_mae_of": best["mae_of"], "best_median_angle_deg": best["median_angle_deg"]}
        results.append(row)
        print(f"{arch:<12} {row['steps']:5d} steps ({row['images_seen']:6d} images) in {wall:6.0f} s: "
              f"order-free MAE {row['last_mae_of']:.4f}  MAE1+MAE2 {row['last_sum_mae']:.4f}  "
              f"median angle {row['last_median_angle_deg']:.2f} deg", flush=True)
    print(json.dumps(results))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("speed", "wallclock"), default="speed")
    p.add_argument("--archs", nargs="+", default=["thesis", "compact", "compact-gap", "compact-s"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help="data set for --part wallclock")
    p.add_argument("--seconds", type=float, default=150.0, help="training budget per model (wallclock)")
    p.add_argument("--val", type=int, default=512, help="validation images (wallclock)")
    p.add_argument("--compact-batch", type=int, default=64)
    p.add_argument("--steps-per-epoch", type=int, default=100, help="validate every this many steps (wallclock)")
    args = p.parse_args()
    if args.one:
        print(json.dumps(speed_one(args.one, args.size, args.batch, args.steps)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    (part_speed if args.part == "speed" else part_wallclock)(args)


if __name__ == "__main__":
    main()
