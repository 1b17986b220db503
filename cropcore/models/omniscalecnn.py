"""OmniScaleCNN: layers of parallel convolutions with every prime kernel size up to a quarter of the series,
so that together they cover every receptive field size, then global average pooling.

Tang, Long, Liu, Zhou, Wang, Jiang, "Omni-Scale CNNs: a simple and effective kernel size configuration
for time series classification", ICLR 2022 (arXiv:2002.10061; https://github.com/Wensi-Tang/OS-CNN), as
used in BreizhCrops (Rußwurm et al. 2020, section 3; ``breizhcrops.models.OmniScaleCNN``).

Input (batch, time, bands), output (batch, num_classes) log-probabilities. The kernel sizes are 1 and the
primes up to ``sequence_length // 4`` (1, 2, 3, 5, 7, 11 for 45 steps); each layer's channels per
kernel follow from its parameter budget, as in the reference, and the last layer always has kernels 1
and 2. Once built, the network accepts any number of time steps (same-padded convolutions, global
pooling). Parameter names equal the reference's (``net.{layer}.conv_list.{kernel}.conv1d`` / ``.bn``,
``hidden``), so the official checkpoint loads with ``strict=True``.

Differences from the reference (same function where it works):
- Long series: the budget of the first layer (1 024 parameters) leaves zero channels per kernel once the
  kernels' sum times the bands exceeds it (more than 91 steps with 13 bands), where the reference fails
  with a division by zero; here the constructor says so (raise ``parameters_per_layer``).
- No ``few_shot`` flag (it changed what ``forward`` returns).
- Faster (about 2x in training and inference on 2 CPU threads with the default allocator; 1.2-1.3x when both
  keep freed memory, as the ``cropcore`` commands do), same arithmetic. The reference runs every
  kernel size as its own convolution, padding a copy of the (batch, 3 954, time) input for each and
  concatenating the results. Here each layer is one convolution on the (batch, time, channels) layout as
  channels_last memory: the small-input layers
  zero-pad all kernels to the widest and convolve once; the last, wide-input layer (kernels 1 and 2)
  multiplies every time step once by all three kernel taps (one 1x1 convolution) and adds the shifted
  second tap, so no padded copy of its large input is made. The batch norms run once per layer on the
  concatenated channels, and in eval mode are folded into the weights. The remaining cost is the
  3 954 -> 630 channel product of the last layer (about 0.25 GFLOP per parcel forward, the same number of
  multiplications as the reference): the reference is not padding-bound at 45 steps, so no exact fp32
  rewrite can be 5x faster on a CPU. Computing it with fewer products (Winograd's F(3, 2), 22 % fewer) was
  measured and not kept: its transforms cost what the products save (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.layers import batch_norm_concat, bn_scale_shift, time_conv

DEFAULT_PARAMETERS_PER_LAYER: tuple[int, ...] = (8 * 128, 5 * 128 * 256 + 2 * 256 * 128)
"""Parameter budget of each omni-scale layer (the reference's and the published checkpoint's)."""


def kernel_sizes(limit: int) -> list[int]:
    """1 and the primes up to ``limit``: the reference counts 1 as a kernel size of its own."""
    return [n for n in range(1, limit + 1) if all(n % d for d in range(2, int(n**0.5) + 1))]


def layer_shapes(
    input_dim: int, sequence_length: int, parameters_per_layer: Sequence[int]
) -> list[list[tuple[int, int, int]]]:
    """(in_channels, out_channels, kernel_size) of every convolution, layer by layer, as the reference
    derives them: each kernel gets ``budget // (in_channels * sum(kernels))`` output channels."""
    kernels = kernel_sizes(sequence_length // 4)
    if not kernels:
        raise ValueError(f"OmniScaleCNN needs a sequence_length of at least 4, got {sequence_length}")
    shapes = []
    in_channels = input_dim
    for budget in parameters_per_layer:
        out_channels = int(budget / (in_channels * sum(kernels)))
        if out_channels < 1:
            raise ValueError(
                f"OmniScaleCNN: a budget of {budget} parameters leaves no channel per kernel for "
                f"{in_channels} input channels and kernels {kernels} (sequence_length {sequence_length}); "
                f"use a shorter sequence_length or larger parameters_per_layer"
            )
        shapes.append([(in_channels, out_channels, k) for k in kernels])
        in_channels = len(kernels) * out_channels
    final_channels = len(kernels) * int(parameters_per_layer[0] / sum(kernels))
    shapes.append([(in_channels, final_channels, 1), (in_channels, final_channels, 2)])
    return shapes


class _ConvBN(nn.Module):
    """One kernel size of a layer: convolution padded to keep the length ((k-1)//2 left, k//2 right),
    then batch norm. Holds the parameters; ``_OmniScaleLayer`` computes all kernels at once."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.bn = nn.BatchNorm1d(out_channels)
        self.left = (kernel_size - 1) // 2


class _OmniScaleLayer(nn.Module):
    """Parallel convolutions of several kernel sizes, concatenated, then ReLU."""

    def __init__(self, shapes: Sequence[tuple[int, int, int]]) -> None:
        super().__init__()
        self.conv_list = nn.ModuleList(_ConvBN(*shape) for shape in shapes)
        outputs = sum(shape[1] for shape in shapes)
        taps = sum(shape[1] * shape[2] for shape in shapes)
        # Per-tap products cost ``taps`` channels per step; zero-padded kernels cost widest x outputs.
        self.per_tap = taps <= 2 * outputs

    def _weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Weights and biases of each kernel, batch norm folded in eval mode."""
        weights, biases = [], []
        for unit in self.conv_list:
            weight, bias = unit.conv1d.weight, unit.conv1d.bias
            if not self.training:
                scale, shift = bn_scale_shift(unit.bn)
                weight, bias = weight * scale.view(-1, 1, 1), bias * scale + shift
            weights.append(weight)
            biases.append(bias)
        return weights, biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, in_channels) -> (batch, time, sum of out_channels)."""
        weights, biases = self._weights()
        y = self._per_tap(x, weights, biases) if self.per_tap else self._zero_padded(x, weights, biases)
        if self.training:
            return batch_norm_concat(y, [unit.bn for unit in self.conv_list], relu=True)
        # In place only without autograd: in-place ops on views make autograd copy the whole tensor.
        return F.relu(y, inplace=not torch.is_grad_enabled())

    def _zero_padded(self, x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
        """One convolution whose kernels are all zero-padded, centred as their own padding centres them."""
        reach = max(w.shape[-1] for w in weights) // 2
        padded = []
        for unit, weight in zip(self.conv_list, weights):
            left = reach - unit.left
            padded.append(F.pad(weight, (left, 2 * reach + 1 - weight.shape[-1] - left)))
        return time_conv(x, torch.cat(padded), torch.cat(biases), padding=reach)

    def _per_tap(self, x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
        """Every tap of every kernel as a 1x1 convolution at once, then each tap's product shifted into place."""
        taps = torch.cat([weight.permute(2, 0, 1).reshape(-1, weight.shape[1], 1) for weight in weights])
        products = time_conv(x, taps)
        steps = x.shape[1]
        outputs, start = [], 0
        for unit, weight, bias in zip(self.conv_list, weights, biases):
            channels, kernel = weight.shape[0], weight.shape[-1]
            centre = start + unit.left * channels
            y = products[..., centre : centre + channels] + bias
            for tap in range(kernel):
                offset = tap - unit.left
                if offset == 0 or abs(offset) >= steps:
                    continue
                source = products[..., start + tap * channels : start + (tap + 1) * channels]
                if offset > 0:
                    y[:, : steps - offset] += source[:, offset:]
                else:
                    y[:, -offset:] += source[:, : steps + offset]
            outputs.append(y)
            start += kernel * channels
        return torch.cat(outputs, dim=-1)


class OmniScaleCNN(TimeSeriesClassifier):
    """Omni-scale layers, global average pooling over time and a linear classifier.

    Published checkpoint: the defaults (2 738 053 parameters with 13 bands, 9 classes and 45 steps).

    Args:
        input_dim: number of bands.
        num_classes: number of classes.
        sequence_length: number of time steps; sets the kernel sizes (primes up to a quarter of it).
        parameters_per_layer: parameter budget of each omni-scale layer (the reference's
            ``paramenter_number_of_layer_list``); the final layer's width follows from the first budget.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        sequence_length: int,
        parameters_per_layer: Sequence[int] = DEFAULT_PARAMETERS_PER_LAYER,
    ) -> None:
        super().__init__(input_dim, num_classes, sequence_length)
        budgets = tuple(parameters_per_layer)
        if not budgets or not all(isinstance(b, int) and b > 0 for b in budgets):
            raise ValueError(
                f"OmniScaleCNN: parameters_per_layer must be positive integers, got {parameters_per_layer!r}"
            )
        self.parameters_per_layer = budgets
        shapes = layer_shapes(input_dim, sequence_length, budgets)
        self.net = nn.Sequential(*(_OmniScaleLayer(layer) for layer in shapes))
        self.averagepool = nn.AdaptiveAvgPool1d(1)
        self.hidden = nn.Linear(sum(shape[1] for shape in shapes[-1]), num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) -> (batch, num_classes) log-probabilities."""
        features = self.net(x.contiguous()).mean(dim=1)
        return F.log_softmax(self.hidden(features), dim=-1)
