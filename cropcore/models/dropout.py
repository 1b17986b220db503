"""Dropout for small drop probabilities that draws only the dropped positions (CPU).

``F.dropout`` on CPU draws one Bernoulli variate per element (about 7 ns per element on the benchmark
machine), which was a fifth of the Transformer's training step at its published p = 0.018. Here the gaps
between dropped positions are drawn as geometric variates: the same distribution (every element dropped
independently with probability p), but only about ``p * n`` random numbers, so the cost falls to building
the scaled mask and one multiplication. Large p and CUDA (whose fused dropout kernel is already cheap)
use ``F.dropout``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Above this drop probability, drawing positions saves little: use F.dropout.
SPARSE_LIMIT = 0.1


def dropped_positions(numel: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Flat indices of the dropped elements of an ``numel``-element tensor (each with probability p)."""
    chunk = int(numel * p + 6 * math.sqrt(numel * p) + 16)
    found, start = [], 0.0
    while True:
        # Position of the next drop = previous one + Geometric(p) (trials up to and including a success).
        ends = torch.empty(chunk, dtype=torch.float64, device=device).geometric_(p).cumsum_(0).add_(start - 1)
        last = float(ends[-1])
        if last >= numel:
            found.append(ends[ends < numel])
            break
        found.append(ends)
        start = last + 1
    return torch.cat(found).long()


def sparse_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout with ``F.dropout``'s semantics (scaled by 1 / (1 - p) in training, identity otherwise)."""
    if not training or p == 0.0:
        return x
    if p > SPARSE_LIMIT or x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    mask = torch.full(x.shape, 1.0 / (1.0 - p), dtype=x.dtype, device=x.device)
    mask.view(-1)[dropped_positions(x.numel(), p, x.device)] = 0
    return x * mask


class SparseDropout(nn.Module):
    """``nn.Dropout`` drawing only the dropped positions for small p (see :func:`sparse_dropout`)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
