"""edorient.models: the thesis CNN, compact CPU models, a registry by name, Keras-style counts.

Every model maps a (B, C, S, S) image batch to (B, n_grains, 3) beam directions, head ``k``
for grain ``k`` in the thesis order, and has ``features`` (the convolutional part, frozen by
``--finetune dense``), ``dense`` and ``heads``. Models do no I/O.

Examples
--------
>>> from edorient.models import build_model, summarize
>>> s = summarize(build_model("thesis", device="meta"))
>>> s.units, s.params
(6273542, 102958822)
"""

from edorient.models._registry import (
    MODELS,
    available_models,
    build_model,
    model_config,
    model_from_config,
    register,
)
from edorient.models._summary import (
    BATCH_CANDIDATES,
    LayerRow,
    Summary,
    feasible_batch_sizes,
    memory_gb,
    summarize,
)
from edorient.models.compact import CompactCNN, CompactConfig
from edorient.models.thesis import ThesisCNN, ThesisConfig

__all__ = [
    "BATCH_CANDIDATES",
    "MODELS",
    "CompactCNN",
    "CompactConfig",
    "LayerRow",
    "Summary",
    "ThesisCNN",
    "ThesisConfig",
    "available_models",
    "build_model",
    "feasible_batch_sizes",
    "memory_gb",
    "model_config",
    "model_from_config",
    "register",
    "summarize",
]
