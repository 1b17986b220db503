"""The one interface every network shares: (batch, time, bands) reflectance in, log-probabilities out."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from cropcore.models.slices import sliced_inference


class TimeSeriesClassifier(nn.Module):
    """Base class of the seven networks.

    Subclasses build their layers in ``__init__(input_dim, num_classes, sequence_length, **hparams)`` after
    calling ``super().__init__(input_dim, num_classes, sequence_length)``, and implement ``classify``.

    ``forward`` checks the input layout and, for weights trained on another band order (the official
    checkpoints take L1C bands in string order), reorders the bands first, so callers always pass
    cropcore's wavelength order. The permutation is a persistent buffer only when set, so official
    state_dicts load unchanged.
    """

    #: CPU inference (eval mode, no autograd) runs the batch in blocks of this many parcels, so that a
    #: block's activations stay in the CPU caches instead of streaming through memory layer after layer
    #: (each parcel is computed independently in eval mode: same results). None: the whole batch at once.
    #: Set per network from measurements (``benchmarks/RESULTS.md``).
    inference_block: int | None = None

    #: CPU inference (eval mode, no autograd, no autocast) runs the batch as one slice per thread, each slice
    #: single-threaded and in blocks of ``inference_block`` (``cropcore.models.slices``): for networks whose
    #: kernels scale poorly across threads. Set per network from measurements (``benchmarks/RESULTS.md``).
    inference_slices: bool = False

    def __init__(self, input_dim: int, num_classes: int, sequence_length: int) -> None:
        super().__init__()
        self.check_positive_ints(input_dim=input_dim, num_classes=num_classes, sequence_length=sequence_length)
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.sequence_length = sequence_length
        # A non-persistent buffer (None until set): moves with .to(device), never enters the state_dict.
        self.band_permutation: torch.Tensor | None
        self.register_buffer("band_permutation", None, persistent=False)

    def check_positive_ints(self, **values: object) -> None:
        """Raise a ValueError naming the first hyperparameter that is not a positive integer."""
        for name, value in values.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {value!r}")

    def check_dropout(self, dropout: float) -> None:
        """Raise a ValueError unless the dropout probability lies in [0, 1)."""
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be a number in [0, 1), got {dropout!r}")

    def set_band_permutation(self, permutation: Sequence[int] | None) -> None:
        """Feed band ``permutation[j]`` of the caller's input as the network's band ``j`` (None: as given)."""
        if permutation is None:
            self.band_permutation = None
            return
        order = torch.as_tensor(list(permutation), dtype=torch.long)
        if sorted(order.tolist()) != list(range(self.input_dim)):
            raise ValueError(f"band permutation must reorder 0..{self.input_dim - 1}, got {order.tolist()}")
        device = next(self.parameters()).device
        self.band_permutation = order.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) float reflectance 0-1 -> (batch, num_classes) log-probabilities."""
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{type(self).__name__} expects input (batch, time, {self.input_dim}), got {tuple(x.shape)}"
            )
        if self.band_permutation is not None:
            x = x.index_select(-1, self.band_permutation)
        if x.device.type != "cpu" or self.training or torch.is_grad_enabled():
            return self.classify(x)
        if self.inference_slices and not torch.is_autocast_enabled("cpu"):
            return sliced_inference(self._classify_in_blocks, x)
        return self._classify_in_blocks(x)

    def _classify_in_blocks(self, x: torch.Tensor) -> torch.Tensor:
        block = self.inference_block
        if block and x.shape[0] > block:
            return torch.cat([self.classify(part) for part in x.split(block)])
        return self.classify(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
