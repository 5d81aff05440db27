"""Rebuild the models shipped in src/edorient/pretrained/ (data, training, evaluation, export).

    .venv/bin/python scripts/make_pretrained.py --work /tmp/pre            # ~1 h on 2 cores
    .venv/bin/python scripts/make_pretrained.py --work /tmp/pre --steps export

Steps (each skips what is already done: generation resumes, a finished run is reused):
  data      edorient generate: training sets (bicrystals and single crystals, 128 px, Poisson
            noise, grain weights 0.35-0.65) and three test sets from other seeds
  train     edorient train: compact-s, the cpu preset with the symmetry loss, a fixed number of
            epochs (the result does not depend on the machine's speed; the time is recorded);
            then, where a CUDA GPU is present, the bicrystal model trained further on images
            simulated while training (CONTINUE: fresh images every epoch, a 300 s time limit, so
            its step count depends on the GPU and its host; the shipped one ran on an H200 with
            14 simulating processes, benchmarks/device_check.sh). Without a GPU this part is
            skipped and the CPU run is the one evaluated and exported.
  evaluate  edorient evaluate on each test set
  export    weights + model config only (no optimizer state) to src/edorient/pretrained/NAME.pt,
            and NAME.json: the commands, the data settings and the measured test errors
  docs      the test-error table of docs/results.md (between its make_pretrained markers) from
            the cards, and the figures docs/figures/pretrained_* from the evaluation folders
Every command is printed and recorded in the model card.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / "src" / "edorient" / "pretrained"
EDORIENT = [sys.executable, "-m", "edorient"]

# Poisson noise from ~300 counts at the direct beam (weak spots lost in noise) to 1e5 (nearly
# clean), log-uniform per image, on a uniform background of 0-0.002 of the direct beam's peak.
NOISE = ["--dose", "300:100000", "--background", "0:0.002"]
DATA = {
    "bi": ["--mode", "random", "-n", "400000", "--size", "128", "--ratio", "0.35:0.65", *NOISE, "--seed", "14"],
    "single": ["--mode", "single", "-n", "150000", "--size", "128", *NOISE, "--seed", "13"],
    "test_bi": ["--mode", "random", "-n", "2500", "--size", "128", "--ratio", "0.35:0.65", *NOISE,
                "--seed", "21", "--test-fraction", "0.9"],
    "test_bi_clean": ["--mode", "random", "-n", "2500", "--size", "128", "--ratio", "0.5", "--seed", "22",
                      "--test-fraction", "0.9"],
    "test_single": ["--mode", "single", "-n", "2500", "--size", "128", *NOISE, "--seed", "23",
                    "--test-fraction", "0.9"],
    "test_single_clean": ["--mode", "single", "-n", "2500", "--size", "128", "--seed", "24", "--test-fraction", "0.9"],
}
TRAIN = ["--preset", "cpu", "--arch", "compact-s", "--loss", "symmetry", "--seed", "0", "--time-limit", "0",
         "--workers", "0", "--no-progress"]
# The bicrystal model trained further on a CUDA GPU: its CPU run's weights (--init), then images
# simulated while training (as the card's data: the same noise and grain weights, another seed),
# fresh every epoch, for a fixed time.
CONTINUE = {
    "anatase-bicrystal": {"run": "run_bi_gpu", "args": [
        "--simulate", "random", "--size", "128", "--ratio", "0.35:0.65", *NOISE, "--data-seed", "41",
        "--epoch-size", "500000", "--val-size", "10000", "--preset", "cpu", "--arch", "compact-s",
        "--batch-size", "128", "--lr", "1e-3", "--warmup-steps", "300", "--epochs", "1000", "--time-limit", "300",
        "--workers", "14", "--device", "cuda", "--no-progress"]},
}
MODELS = {  # in training order: the short one first
    "anatase-single": {"data": "single", "run": "run_single", "epochs": 10, "grains": 1,
                       "tests": {"as trained: noise drawn per image": "test_single",
                                 "noise-free": "test_single_clean"}},
    "anatase-bicrystal": {"data": "bi", "run": "run_bi", "epochs": 4, "grains": 2,
                          "tests": {"as trained: noise and weights drawn per image": "test_bi",
                                    "noise-free, 0.5:0.5 (the thesis')": "test_bi_clean"}},
}


def _run(cmd: list[str]) -> None:
    print(f"$ {_shown(cmd)}", flush=True)
    subprocess.run(cmd, check=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def final_run(work: Path, name: str) -> str:
    """The run exported as model ``name``: its GPU continuation where one ran or can run here."""
    c = CONTINUE.get(name)
    if c and ((work / c["run"] / "best.pt").is_file() or _cuda()):
        return c["run"]
    return MODELS[name]["run"]


def _commands(work: Path) -> dict[str, str]:
    cmds = {}
    for name, args in DATA.items():
        cmds[f"generate {name}"] = EDORIENT + ["generate", *args, "--workers", "2", "--no-progress",
                                               "--out", str(work / name)]
    for name, m in MODELS.items():
        cmds[f"train {name}"] = EDORIENT + ["train", "--data", str(work / m["data"]), *TRAIN,
                                            "--epochs", str(m["epochs"]), "--out", str(work / m["run"])]
        if name in CONTINUE:
            c = CONTINUE[name]
            cmds[f"train {name} continued"] = EDORIENT + ["train", *c["args"], "--init", str(work / m["run"]),
                                                          "--out", str(work / c["run"])]
        run = final_run(work, name)
        for label, test in m["tests"].items():
            cmds[f"evaluate {name} {test}"] = EDORIENT + [
                "evaluate", "--run", str(work / run), "--data", str(work / test), "--split", "random",
                "--stage2-max", "0", "--no-progress", "--out", str(work / f"eval_{run}_{test}")]
    return cmds


def _export(work: Path, cmds: dict[str, str], names: list[str]) -> None:
    import torch

    from edorient.training.checkpoint import load_checkpoint

    for name in names:
        m = MODELS[name]
        run = final_run(work, name)
        ckpt = load_checkpoint(work / run / "best.pt")
        slim = {k: ckpt[k] for k in ("model", "model_config", "config", "epoch", "step", "metrics", "best", "train_time_s")}
        slim["extra"] = {"pretrained": name}
        DEST.mkdir(exist_ok=True)
        torch.save(slim, DEST / f"{name}.pt")
        tests = {}
        for label, test in m["tests"].items():
            res = json.loads((work / f"eval_{run}_{test}" / "results.json").read_text())
            ang = res["all"]["angular"]
            tests[label] = {
                "data": _shown(cmds[f"generate {test}"]),
                "n_test_images": res["n_test"],
                # degrees modulo 4/mmm; for bicrystals under the better head-to-grain assignment
                "angle_deg": ang.get("all_free", ang["all"]),
                "mae_eq_3_2": res["all"].get("method1_free", res["all"]["method1"]),
            }
        hist = ckpt.get("history") or []
        if run == m["run"]:
            simulation = json.loads((work / m["data"] / "meta.json").read_text()).get("config", {}).get("simulation")
        else:  # continued on simulated images: their settings are in the run
            simulation = ckpt["extra"]["simulate"]["generate"]["simulation"]
        card = {
            "name": name,
            "grains": m["grains"],
            "arch": ckpt["model_config"]["arch"],
            "input_size": ckpt["model_config"]["input_size"],
            "parameters": sum(int(v.numel()) for v in ckpt["model"].values()),
            "crystal": "anatase (built-in, Horn et al. 1972)",
            "simulation": simulation,
            "training_data": _shown(cmds[f"generate {m['data']}"]),
            "training": _shown(cmds[f"train {name}"]),
            "best_epoch": ckpt["best"],
            "epochs_run": len(hist),
            "train_seconds": round(float(ckpt.get("train_time_s", 0.0)), 1),
            "validation": ckpt["metrics"],
            "test": tests,
            "made": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "rebuild": "python scripts/make_pretrained.py --work DIR",
            "caveat": "trained and tested on edorient's kinematic simulation only; no real micrographs",
        }
        if run != m["run"]:
            card["continued"] = {
                "from": _base_facts(work, name, cmds),
                "command": _shown(cmds[f"train {name} continued"]),
                "steps": int(ckpt["step"]),
                "images": int(ckpt["step"]) * int(ckpt["config"]["batch_size"]),
                "train_seconds": card["train_seconds"],
            }
            card["training"] = card["continued"]["command"]
        (DEST / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"exported {DEST / name}.pt ({(DEST / f'{name}.pt').stat().st_size / 1e6:.1f} MB) and .json")


def _base_facts(work: Path, name: str, cmds: dict[str, str]) -> dict:
    """What a continued model started from: its CPU run's command, epochs, time and test errors
    (from the run if it is here, else from the card being replaced when that card is the CPU one)."""
    from edorient.training.checkpoint import load_checkpoint

    m = MODELS[name]
    facts = {"run": m["run"], "training": _shown(cmds[f"train {name}"])}
    path = work / m["run"] / "best.pt"
    if path.is_file():
        ck = load_checkpoint(path)
        return {**facts, "epochs_run": len(ck.get("history") or []),
                "train_seconds": round(float(ck.get("train_time_s", 0.0)), 1)}
    old = json.loads((DEST / f"{name}.json").read_text())
    if "continued" in old:
        return old["continued"]["from"]
    return {**facts, "training": old["training"], "epochs_run": old["epochs_run"],
            "train_seconds": old["train_seconds"], "test": old["test"]}


DOCS = REPO / "docs"
BEGIN, END = "<!-- make_pretrained:begin -->", "<!-- make_pretrained:end -->"
FIGURES = {  # docs/figures name -> (model, test set, file in its evaluation folder or run folder)
    "pretrained_single_stereographic_errors.png": ("anatase-single", "test_single", "stereographic_errors.png"),
    "pretrained_single_error_histograms.png": ("anatase-single", "test_single", "error_histograms.png"),
    "pretrained_bicrystal_stereographic_errors.png": ("anatase-bicrystal", "test_bi", "stereographic_errors.png"),
    "pretrained_bicrystal_error_histograms.png": ("anatase-bicrystal", "test_bi", "error_histograms.png"),
    "pretrained_bicrystal_learning_curve.png": ("anatase-bicrystal", None, "learning_curve.png"),
}


def _docs(work: Path) -> None:
    """Rewrite the cards' table in docs/results.md and copy the figures (what the docs show of
    the shipped models comes from this script, nowhere else)."""
    import shutil

    rows = ["| model | test images | median | mean | p90 | p99 | < 1° | < 2° | < 5° | training |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in MODELS:
        card = json.loads((DEST / f"{name}.json").read_text())
        for label, t in card["test"].items():
            a = t["angle_deg"]
            rows.append(f"| {name} | {label} ({t['n_test_images']:,}) | {a['median']:.2f}° | {a['mean']:.2f}° | "
                        f"{a['p90']:.1f}° | {a['p99']:.1f}° | {100 * a['share_below_1deg']:.1f} % | "
                        f"{100 * a['share_below_2deg']:.1f} % | {100 * a['share_below_5deg']:.1f} % | "
                        f"{_training_column(card)} |")
    table = "\n".join(rows)
    path = DOCS / "results.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    for dest, (name, test, fname) in FIGURES.items():
        run = final_run(work, name)
        src = work / (f"eval_{run}_{test}" if test else run) / fname
        if src.is_file():
            shutil.copyfile(src, DOCS / "figures" / dest)
    print(f"updated {path} and docs/figures/pretrained_*")


def _training_column(card: dict) -> str:
    c = card.get("continued")
    if not c:
        return f"{card['epochs_run']} epochs, {card['train_seconds']:.0f} s"
    b = c["from"]
    return (f"{b['epochs_run']} epochs on 2 CPU cores ({b['train_seconds']:.0f} s), then {c['steps']:,} steps "
            f"({c['images'] / 1e6:.2f} M fresh simulated images) on a GPU ({c['train_seconds']:.0f} s)")


def _shown(cmd: list[str]) -> str:
    """An edorient command as a user types it (what the log and the model cards show)."""
    return "edorient " + shlex.join(cmd[len(EDORIENT):])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for data sets and runs")
    ap.add_argument("--steps", nargs="+", default=["data", "train", "evaluate", "export", "docs"],
                    choices=["data", "train", "evaluate", "export", "docs"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                    help="models to train, evaluate and export (default both)")
    a = ap.parse_args()
    cmds = _commands(a.work)
    for step, prefix in (("data", "generate "), ("train", "train "), ("evaluate", "evaluate ")):
        if step not in a.steps:
            continue
        for key, cmd in cmds.items():
            if not key.startswith(prefix) or (step != "data" and key.split()[1] not in a.models):
                continue
            if step == "train" and (Path(cmd[cmd.index("--out") + 1]) / "best.pt").is_file():
                print(f"[skip] {key}: best.pt exists")
                continue
            if key.endswith(" continued") and not _cuda():
                print(f"[skip] {key}: needs a CUDA GPU; the CPU run is exported")
                continue
            _run(cmd)
    if "export" in a.steps:
        _export(a.work, cmds, a.models)
    if "docs" in a.steps:
        _docs(a.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
