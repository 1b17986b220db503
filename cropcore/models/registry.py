"""One table of the seven networks: where each lives, its published-checkpoint settings and the
paper's training settings. `build` and everything else derive from this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """How to build one network and train it the paper's way.

    Attributes:
        name: canonical name, as in ``NAMES``.
        module: module under ``cropcore.models`` defining the class.
        class_name: the ``nn.Module`` subclass, constructed as
            ``cls(input_dim, num_classes, sequence_length, **hparams)``.
        hparams: defaults = hyperparameters of the published checkpoint (or of Table 1 where none
            was published).
        learning_rate, weight_decay: the paper's selected values (section 4.1.2).
        epochs: training epochs of the paper (Table 1).
        aliases: other accepted names (case-insensitive).
    """

    name: str
    module: str
    class_name: str
    hparams: dict[str, Any]
    learning_rate: float
    weight_decay: float
    epochs: int
    aliases: tuple[str, ...] = field(default_factory=tuple)


SPECS: tuple[ModelSpec, ...] = ()  # filled by the models work (see cropcore/models/__init__.py)


def find_spec(name: str) -> ModelSpec:
    """Look a model up by name or alias, case-insensitively; the error lists the valid names."""
    wanted = str(name).lower()
    for spec in SPECS:
        if wanted == spec.name.lower() or wanted in (alias.lower() for alias in spec.aliases):
            return spec
    valid = ", ".join(spec.name for spec in SPECS)
    raise ValueError(f"unknown model {name!r}; expected one of {valid}")


def build(name: str, *, input_dim: int, num_classes: int, sequence_length: int, **hparams: Any) -> nn.Module:
    """Build a network with the published-checkpoint defaults, overridden by ``hparams``."""
    spec = find_spec(name)
    unknown = set(hparams) - set(spec.hparams)
    if unknown:
        raise TypeError(f"{spec.name} takes no hyperparameter(s) {sorted(unknown)}; valid: {sorted(spec.hparams)}")
    cls = getattr(importlib.import_module(f"cropcore.models.{spec.module}"), spec.class_name)
    return cls(input_dim, num_classes, sequence_length, **{**spec.hparams, **hparams})
