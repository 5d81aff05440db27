"""Train as ``edorient train`` does: settings, run folder, fit or fine-tune.

:func:`train_on_dataset` trains on a data set on disk, :func:`train_on_simulation` on images
simulated as they are read (:class:`~edorient.data.OnTheFlyDataset`: fresh orientations, noise
and ratios every epoch, nothing on disk; the validation images are one fixed draw from another
stream). Both resolve the settings (a preset, or on resume the run's own saved settings,
overridden by explicit values), check the run folder, record the resolved settings in
``train_args.json``, build the model (optionally starting from another checkpoint's weights,
``init``) and run :func:`~edorient.training.fit` (or :func:`~edorient.training.finetune`). They
work under ``torchrun`` too (DDP; rank 0 writes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edorient._utils.outputs import MARKER, claim_output_dir
from edorient.errors import EdorientError

log = logging.getLogger(__name__)


def resolve_settings(preset_name: str | None, arch: str | None, overrides: dict[str, Any],
                     saved: dict | None = None) -> tuple[str, dict]:
    """(architecture, TrainConfig fields): the saved run's or the preset's, then ``overrides``
    (the values a user gave explicitly; ``None`` values are ignored)."""
    from edorient.models import MODELS, available_models
    from edorient.training import preset

    if saved:  # resume: the run's own settings, overridden by the values given now
        settings = dict(saved["settings"])
        arch = arch or saved["arch"]
    else:
        settings = preset(preset_name) if preset_name else {}
        arch = arch or settings.pop("arch", "thesis")
        settings.pop("arch", None)
    if arch not in MODELS:
        raise EdorientError(f"unknown architecture {arch!r}; choose one of: {', '.join(available_models())}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return arch, settings


def _resolved(preset_name, arch, overrides, saved, input_size):
    """(architecture, validated TrainConfig, input size): :func:`resolve_settings`, and on
    resume the run's own input size unless one is given."""
    from edorient.training import TrainConfig

    arch, settings = resolve_settings(preset_name, arch, overrides or {}, saved)
    if saved:
        input_size = input_size or saved.get("input")
    config = TrainConfig(**settings)
    config.validate()
    return arch, config, input_size


def saved_train_args(out: Path) -> dict | None:
    """The run's train_args.json, or None if it has none."""
    path = Path(out) / "train_args.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdorientError(f"{path} is damaged ({exc}); start a new run with another --out") from None


def train_on_dataset(data_path: str | Path, out: str | Path, *, preset_name: str | None = None,
                     arch: str | None = None, overrides: dict[str, Any] | None = None,
                     input_size: int | None = None, resume: bool = False, split: str = "random",
                     scheme: str = "thesis", subset: int | None = None, limit: int | None = None,
                     finetune_mode: str | None = None, subsets: list[int] | str = "all",
                     first_epochs: int | None = None, later_epochs: int | None = None,
                     init: str | Path | None = None):
    """Train a model on the data set at ``data_path`` into the run folder ``out``.

    ``init``: start from the weights of this checkpoint (a run folder, a ``.pt`` file or
    ``pretrained:NAME``) instead of a fresh initialisation; its architecture must be the one
    built. Returns the :class:`~edorient.training.FitResult` of the run (of the last stage when
    fine-tuning) and the resolved :class:`~edorient.training.TrainConfig`.
    """
    import torch

    from edorient.models import build_model
    from edorient.training import distributed as D
    from edorient.training import finetune, fit

    out, data_path = Path(out), Path(data_path)
    saved = saved_train_args(out) if resume else None
    arch, config, input_size = _resolved(preset_name, arch, overrides, saved, input_size)
    started = D.setup(config.device)
    try:
        if finetune_mode and subset is not None:
            raise EdorientError("--subset and --finetune exclude each other; use --subsets with --finetune")
        if not data_path.is_dir():
            raise EdorientError(f"data folder {str(data_path)!r} does not exist; create it with edorient generate")

        from edorient.data import open_dataset

        data = open_dataset(data_path)
        size = input_size or data.image_size
        check_model_memory(arch, size, data.n_grains, config)
        ops = laue_ops_of(data)
        _claim_run_folder(out, resume, None if saved else
                          {"arch": arch, "input": size, "settings": config.to_dict(), "finetune": finetune_mode})

        def part(p: str, k):
            ids = data.index(split, p, subset=k, scheme=scheme)
            if limit:
                ids = ids[: limit if p == "train" else max(1, limit // 4)]
            return data.torch_dataset(ids, resize=size if size != data.image_size else None)

        extra = {"data": str(data_path.resolve()), "split": split, "scheme": scheme, "input_size": size,
                 "n_grains": data.n_grains, "preset": preset_name, "limit": limit}
        torch.manual_seed(config.seed)
        model = build_model(arch, input_size=size, n_grains=data.n_grains)
        if init is not None:
            extra["init"] = load_initial_weights(model, init)
        if finetune_mode:
            n_sub = _n_subsets(data, split, scheme)
            chosen = list(range(n_sub)) if subsets == "all" else list(subsets)
            bad = [k for k in chosen if k >= n_sub]
            if bad:
                raise EdorientError(f"--subsets {bad} do not exist: scheme {scheme!r} has subsets 0..{n_sub - 1}")
            stages = [(lambda k=k: (part("train", k), part("val", k))) for k in chosen]
            results = finetune(model, stages, config, out, mode=finetune_mode, first_epochs=first_epochs,
                               later_epochs=later_epochs, laue_ops=ops, resume=resume,
                               extra={**extra, "subsets": chosen})
            res = results[-1]
        else:
            extra["subset"] = subset
            res = fit(model, part("train", subset), part("val", subset), config, out,
                      laue_ops=ops, resume=resume, extra=extra)
    finally:
        if started:
            D.cleanup()
    return res, config


#: The "epoch" of a simulated run's validation images: a stream no training epoch draws from.
VALIDATION_EPOCH = 2**31 - 1


def train_on_simulation(generate_config, out: str | Path, *, epoch_size: int, val_size: int,
                        preset_name: str | None = None, arch: str | None = None,
                        overrides: dict[str, Any] | None = None, input_size: int | None = None,
                        resume: bool = False, init: str | Path | None = None):
    """Train on images simulated as they are read (``random`` bicrystals or ``single`` crystals).

    ``generate_config`` (:class:`~edorient.data.GenerateConfig`) says what to draw, as for
    ``edorient generate`` (crystal, size, ratio range, noise); each epoch reads ``epoch_size``
    fresh images (epoch ``e``'s sample ``i`` from the stream ``(seed, 2, e, i)``), and every
    epoch is validated on the same ``val_size`` images of a stream no epoch draws from. A resumed
    run keeps its recorded simulation; giving another one is refused. ``init`` as in
    :func:`train_on_dataset`. Returns the :class:`~edorient.training.FitResult` and the
    resolved :class:`~edorient.training.TrainConfig`.
    """
    import dataclasses

    import torch

    from edorient.data.dataset import OnTheFlyDataset
    from edorient.data.generate import _crystal_meta, dataset_config
    from edorient.models import build_model
    from edorient.training import distributed as D
    from edorient.training import fit

    out = Path(out)
    epoch_size, val_size = int(epoch_size), int(val_size)
    if epoch_size < 2 or val_size < 1:
        raise EdorientError(f"--epoch-size must be >= 2 and --val-size >= 1 images, got {epoch_size} and {val_size}")
    cfg = dataclasses.replace(generate_config, n=epoch_size).resolved()
    if cfg.mode not in ("random", "single"):
        raise EdorientError(f"--simulate draws random bicrystals or single crystals, not {cfg.mode!r} "
                            "(thesis pairs are a finite set: edorient generate --mode thesis, then --data)")
    simulation = {"generate": dataset_config(cfg), "epoch_size": epoch_size, "val_size": val_size}
    saved = saved_train_args(out) if resume else None
    if saved:
        if saved.get("simulate") is None:
            raise EdorientError(f"run folder {str(out)!r} was trained on a data set on disk; resume it with --data")
        differ = _simulation_differences(saved["simulate"], simulation)
        if differ:
            raise EdorientError(f"cannot resume {str(out)!r} with other simulation settings (differ in "
                                f"{', '.join(differ)}); resume with the same ones, or train into a new --out")
    arch, config, input_size = _resolved(preset_name, arch, overrides, saved, input_size)
    started = D.setup(config.device)
    try:
        size = input_size or cfg.image_size
        resize = size if size != cfg.image_size else None
        train_ds = OnTheFlyDataset(cfg, length=epoch_size, resize=resize)
        val_ds = OnTheFlyDataset(cfg, length=val_size, resize=resize, epoch=VALIDATION_EPOCH)
        check_model_memory(arch, size, train_ds.n_grains, config)
        _, xtal = _crystal_meta(cfg.crystal)
        _claim_run_folder(out, resume, None if saved else
                          {"arch": arch, "input": size, "settings": config.to_dict(), "finetune": None,
                           "simulate": simulation})
        extra = {"simulate": simulation, "input_size": size, "n_grains": train_ds.n_grains, "preset": preset_name}
        torch.manual_seed(config.seed)
        model = build_model(arch, input_size=size, n_grains=train_ds.n_grains)
        if init is not None:
            extra["init"] = load_initial_weights(model, init)
        res = fit(model, train_ds, val_ds, config, out, laue_ops=xtal.laue.ops, resume=resume, extra=extra)
    finally:
        if started:
            D.cleanup()
    return res, config


def _simulation_differences(saved: dict, now: dict) -> list[str]:
    """Names of the simulation settings (generate config fields, epoch and validation sizes) in
    which ``now`` differs from ``saved``; the edorient version that recorded them is not one."""
    a, b = dict(saved.get("generate") or {}), json.loads(json.dumps(now["generate"]))  # as read back
    a.pop("edorient_version", None), b.pop("edorient_version", None)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return differ + [k for k in ("epoch_size", "val_size") if saved.get(k) != now[k]]


def load_initial_weights(model, init: str | Path) -> str:
    """Copy the weights of checkpoint ``init`` (run folder, ``.pt`` or ``pretrained:NAME``) into
    ``model``; EdorientError if its architecture is another. Returns what was loaded (recorded)."""
    from edorient.evaluation.pipeline import find_checkpoint
    from edorient.models import model_config
    from edorient.training.checkpoint import describe_model_config, load_checkpoint

    path = find_checkpoint(init)
    ck = load_checkpoint(path)
    stored, built = ck["model_config"], model_config(model)
    differ = sorted(k for k in set(stored) | set(built) if stored.get(k) != built.get(k))
    if differ:
        raise EdorientError(f"--init {str(init)!r} holds {describe_model_config(stored)}, but this run builds "
                            f"{describe_model_config(built)} (differs in {', '.join(differ)}); give --arch/--input "
                            "that match it, or another --init")
    model.load_state_dict(ck["model"])
    return f"{init} ({path.name})" if str(init) != str(path) else str(path)


def _claim_run_folder(out: Path, resume: bool, train_args: dict | None) -> None:
    """Claim ``out`` as a run folder (new, empty, or a run when resuming; never a user's folder)
    and write ``train_args`` (the resolved settings, first run only) into it."""
    from edorient.training import distributed as D

    claim_output_dir(out, "run", create=D.is_main())
    if _holds_more_than_marker(out) and not resume:
        raise EdorientError(f"run folder {str(out)!r} is not empty; pass --resume to continue it or choose another --out")
    D.barrier()  # every rank has checked the folder before rank 0 writes into it
    if D.is_main() and train_args is not None:
        from edorient._utils.atomic import atomic_write_text

        atomic_write_text(out / "train_args.json", json.dumps(train_args, indent=2) + "\n")


def _holds_more_than_marker(out: Path) -> bool:
    return out.is_dir() and any(p.name != MARKER for p in out.iterdir())


def check_model_memory(arch: str, input_size: int, n_grains: int, config) -> None:
    """EdorientError, before the model is built, if eq. 3.4 (activations of a batch and the
    weights, a lower bound of what training holds) exceeds the memory of the training device."""
    import torch

    from edorient._utils.resources import format_bytes, physical_memory_bytes
    from edorient.models import build_model, summarize
    from edorient.training.loop import resolve_device

    if int(input_size) < 1:
        raise EdorientError(f"--input must be a positive number of pixels, got {input_size}")
    device = resolve_device(config.device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device.index or 0).total_memory
        where = f"the GPU's {format_bytes(total)}"
    else:
        total = physical_memory_bytes()
        where = f"this machine's {format_bytes(total)} of memory" if total else ""
    # the input batch alone first: a model summary of a huge input is itself slow
    batch_bytes = float(config.batch_size) * float(input_size) ** 2 * 4
    if total and batch_bytes > total:
        raise EdorientError(f"--input {input_size} px: one batch of {config.batch_size} images takes "
                            f"{format_bytes(batch_bytes)}, more than {where}; use an input of at most the data "
                            "set's image size")
    try:
        need = summarize(build_model(arch, input_size=input_size, n_grains=n_grains, device="meta")).memory_gb(
            config.batch_size) * 1e9
    except EdorientError:
        raise
    except (ValueError, RuntimeError) as exc:  # an input too small for the pooling layers
        raise EdorientError(f"--input {input_size} does not fit architecture {arch!r}: {str(exc).splitlines()[0]}") from None
    if total and need > total:
        raise EdorientError(f"training {arch} at --input {input_size} px with batch {config.batch_size} needs about "
                            f"{format_bytes(need)} (eq. 3.4), more than {where}; use a smaller --input or "
                            "--batch-size")


def _n_subsets(data, split: str, scheme: str) -> int:
    n = 0
    while True:
        try:
            data.index(split, "train", subset=n, scheme=scheme)
        except EdorientError:
            break
        n += 1
    if n == 0:
        raise EdorientError(f"data set has no subsets of scheme {scheme!r} for split {split}; see edorient inspect")
    return n


def laue_ops_of(data):
    """The data set's Laue-group operations (4/mmm if they cannot be built)."""
    from edorient.physics.symmetry import laue_group

    try:
        return laue_group(data.config["crystal"]["laue_group"]).ops
    except (KeyError, TypeError, EdorientError) as exc:  # fall back to anatase's group, loudly
        log.warning("cannot build the data set's Laue group (%s); using 4/mmm", exc)
        return None
