"""The seven networks of the BreizhCrops benchmark and its Random Forest.

``build(name, input_dim=..., num_classes=..., sequence_length=..., **hparams)`` builds any of them with
the published-checkpoint settings as defaults; ``pretrained`` loads official or cropcore checkpoints;
``save_checkpoint`` writes cropcore checkpoints. ``RandomForest`` (scikit-learn) is imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from cropcore.models.registry import SPECS, ModelSpec, build, find_spec

# Imported eagerly: a lazy import would let the submodule ``cropcore.models.pretrained`` shadow the
# function of the same name on this package.
from cropcore.models.pretrained import CheckpointError, load_checkpoint, pretrained, save_checkpoint

#: Canonical model names, in the paper's order.
NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)

_LAZY: dict[str, str] = {"RandomForest": "cropcore.models.forest"}

__all__ = [
    "NAMES", "SPECS", "CheckpointError", "ModelSpec", "build", "find_spec", "load_checkpoint", "pretrained",
    "save_checkpoint", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cropcore.models' has no attribute {name!r}")
