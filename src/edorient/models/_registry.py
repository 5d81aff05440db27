"""The string -> model registry.

Every architecture registers one or more names; a name maps to a model class and the
keyword arguments of its config that make the variant (``thesis-6conv`` is ``thesis`` with a
third convolution block). :func:`build_model` turns a name into a module, and
:func:`model_config` / :func:`model_from_config` round-trip a model through a plain dict of
primitives (what checkpoints store, so they load with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from edorient.errors import EdorientError

__all__ = ["MODELS", "available_models", "build_model", "model_config", "model_from_config", "register"]

#: name -> (model class, config overrides that make this variant, one-line description)
MODELS: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {}


def register(name: str, description: str = "", **overrides: Any):
    """Class decorator: register the decorated model class under ``name`` with ``overrides``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        MODELS[name] = (cls, dict(overrides), description)
        return cls

    return deco


def available_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(MODELS)


def _lookup(name: str) -> tuple[type[nn.Module], dict[str, Any], str]:
    if name not in MODELS:
        raise EdorientError(
            f"unknown architecture {name!r}; choose one of: {', '.join(available_models())}"
        )
    return MODELS[name]


def build_model(
    name: str,
    input_size: int = 224,
    n_grains: int | None = None,
    *,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the registered model ``name`` for ``input_size`` x ``input_size`` images.

    Parameters
    ----------
    name
        A registered name (see :func:`available_models`).
    input_size
        Image side in pixels; the flatten size of the dense part follows it.
    n_grains
        Output heads: 2 for a bicrystal, 1 for a single crystal; ``None`` keeps the
        variant's own (``thesis-single``: 1; otherwise 2).
    device
        Build the parameters there (``"meta"`` builds shapes only, instantly).
    **overrides
        Further fields of the model's config dataclass.

    Examples
    --------
    >>> m = build_model("thesis", input_size=28, n_grains=1)
    >>> m.config.n_grains, m.config.input_size
    (1, 28)
    """
    cls, variant, _ = _lookup(name)
    if int(input_size) < 1:
        raise EdorientError(f"input size must be a positive integer, got {input_size}")
    kwargs = {**variant, **overrides, "input_size": int(input_size)}
    if n_grains is not None:
        if int(n_grains) not in (1, 2):
            raise EdorientError(f"n_grains must be 1 or 2, got {n_grains}")
        if "n_grains" in variant and variant["n_grains"] != int(n_grains):
            raise EdorientError(
                f"architecture {name!r} has {variant['n_grains']} head(s) but the data has "
                f"{n_grains} grain(s); choose an architecture with {n_grains} head(s)"
            )
        kwargs["n_grains"] = int(n_grains)
    cfg_cls = cls.Config
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise EdorientError(
            f"unknown option(s) {unknown} for architecture {name!r}; valid: {sorted(fields)}"
        )
    return _instantiate(cls, cfg_cls(**kwargs), name, device)


def _instantiate(cls: type[nn.Module], config: Any, name: str, device: torch.device | str | None) -> nn.Module:
    """``cls(config)``, built on ``device`` when given, tagged with its registry name."""
    if device is not None:
        with torch.device(device):
            model = cls(config)
    else:
        model = cls(config)
    model.arch = name
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"arch": name, **config}`` of a model built by :func:`build_model` (primitives only)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    cfg = dataclasses.asdict(model.config)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"arch": getattr(model, "arch", None), **cfg}


def model_from_config(cfg: dict[str, Any], *, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild a model from :func:`model_config`'s dict (weights are not included)."""
    cfg = dict(cfg)
    name = cfg.pop("arch")
    cls, _, _ = _lookup(name)
    ftypes = {f.name: f for f in dataclasses.fields(cls.Config)}
    for k, v in list(cfg.items()):
        if isinstance(v, list) and k in ftypes:
            cfg[k] = tuple(v)
    # The stored dict holds every field, so it already encodes the variant.
    return _instantiate(cls, cls.Config(**cfg), name, device)
