"""Run checkpoints through ``cropcore.models``' checkpoint format, with errors in the run's terms.

Saving and loading are the models package's (``save_checkpoint`` is atomic; files load with
``weights_only=True``). What this module adds is the check a run or an evaluation needs first: that a
checkpoint fits the data it is about to see, said in words (input dimension and level, class count).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A cropcore checkpoint as a dict (plain data).

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it is not a cropcore checkpoint.
    """
    from cropcore import models

    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return models.load_checkpoint(path)


def check_compatible(payload: Mapping[str, Any], *, input_dim: int, num_classes: int, source: str = "the data") -> None:
    """Raise if the checkpoint was trained for another input dimension or class count.

    Raises:
        ValueError: saying which of the two differs and how.
    """
    problems = []
    if int(payload["input_dim"]) != int(input_dim):
        trained_on = f" (trained on level {payload['level']})" if payload.get("level") else ""
        problems.append(f"input dimension {payload['input_dim']}{trained_on} but {source} has {input_dim} bands")
    if int(payload["num_classes"]) != int(num_classes):
        problems.append(f"{payload['num_classes']} classes but {source} has {num_classes}")
    if problems:
        raise ValueError("checkpoint does not fit: it expects " + "; ".join(problems))


def model_from_checkpoint(path: Path, payload: Mapping[str, Any], device: str = "cpu") -> nn.Module:
    """The network of a checkpoint, weights loaded, in eval mode (missing/unexpected keys are listed)."""
    from cropcore import models

    return models.pretrained(str(payload["model"]), path, device=device, input_dim=int(payload["input_dim"]),
                             num_classes=int(payload["num_classes"]), progress=False)


def load_state(network: nn.Module, payload: Mapping[str, Any]) -> None:
    """Put a checkpoint's weights into an existing network of the same architecture (resume, best epoch)."""
    network.load_state_dict(payload["model_state"], strict=True)
