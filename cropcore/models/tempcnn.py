"""TempCNN: three temporal convolutions and a dense layer over the flattened series.

Pelletier, Webb, Petitjean, "Temporal Convolutional Neural Network for the Classification of Satellite
Image Time Series", Remote Sensing 11(5), 2019 (https://github.com/charlotte-pel/temporalCNN), as
re-implemented in BreizhCrops (Rußwurm et al. 2020, section 3; ``breizhcrops.models.TempCNN``).

Input (batch, time, bands), output (batch, num_classes) log-probabilities. Parameter names equal the
reference's, so official checkpoints load with ``strict=True``.

Differences from the reference (same function where it works):
- Batch size 1 in training: the dense layer's batch norm sees one value per channel, which the reference
  rejects; here it normalises with its running statistics and leaves them unchanged.
- ``kernel_size`` must be odd: with an even one the reference's padding lengthens the series by one step
  and the dense layer no longer fits.
- Faster, same function: the (batch, time, bands) layout is convolved without transposes, the 128-channel
  7-tap convolutions on the CPU in the frequency domain (``layers.time_conv``: about 2.4x fewer
  multiplications, equal within float rounding), the dense weight is permuted instead of the activations,
  and in eval mode every batch norm is folded into the layer before it. Training dropout draws its mask
  from 16 random bits per element (``cropcore.models.dropout.dense_dropout``) instead of one Bernoulli
  variate per element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.dropout import dense_dropout
from cropcore.models.layers import batch_norm_last, fold_batch_norm, time_conv


class _ConvBlock(nn.Module):
    """Conv1d -> BatchNorm1d -> ReLU -> Dropout, held as ``block`` (the reference's parameter names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Dropout(p=dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, channels) -> (batch, time, out_channels)."""
        conv, bn, _, dropout = self.block
        if not self.training:
            weight, bias = fold_batch_norm(conv.weight, conv.bias, bn)
            return F.relu(time_conv(x, weight, bias, padding=conv.padding[0]), inplace=not torch.is_grad_enabled())
        x = batch_norm_last(time_conv(x, conv.weight, conv.bias, padding=conv.padding[0]), bn, relu=True)
        return dense_dropout(x, dropout.p)


class _DenseBlock(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Dropout, held as ``block`` (the reference's parameter names)."""

    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features),
            nn.ReLU(),
            nn.Dropout(p=dropout),
        )

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_features); ``weight`` replaces the linear weight (a permutation of its columns)."""
        linear, bn, _, dropout = self.block
        if not self.training:
            weight, bias = fold_batch_norm(weight, linear.bias, bn)
            return F.relu(F.linear(x, weight, bias), inplace=not torch.is_grad_enabled())
        x = batch_norm_last(F.linear(x, weight, linear.bias), bn, relu=True)
        return dense_dropout(x, dropout.p)


class TempCNN(TimeSeriesClassifier):
    """Three conv blocks (kernel ``kernel_size``, ``hidden_dims`` channels), a dense block of
    ``4 * hidden_dims`` units on the flattened (hidden_dims x time) features, and a linear classifier.

    The dense layer's size depends on ``sequence_length``: the network takes exactly that many time steps
    (45 for the published checkpoint, 3 197 449 parameters with 13 bands and 9 classes).

    Args:
        input_dim: number of bands.
        num_classes: number of classes.
        sequence_length: number of time steps, fixed by the dense layer.
        kernel_size: temporal kernel size (odd); published checkpoint: 7.
        hidden_dims: convolution channels; published checkpoint: 128.
        dropout: dropout probability after every block; published checkpoint: 0.18203942949809093.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        sequence_length: int,
        kernel_size: int = 7,
        hidden_dims: int = 128,
        dropout: float = 0.18203942949809093,
    ) -> None:
        super().__init__(input_dim, num_classes, sequence_length)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"TempCNN: kernel_size must be a positive odd integer, got {kernel_size!r}")
        self.check_positive_ints(hidden_dims=hidden_dims)
        self.check_dropout(dropout)
        self.hidden_dims = hidden_dims
        self.conv_bn_relu1 = _ConvBlock(input_dim, hidden_dims, kernel_size, dropout)
        self.conv_bn_relu2 = _ConvBlock(hidden_dims, hidden_dims, kernel_size, dropout)
        self.conv_bn_relu3 = _ConvBlock(hidden_dims, hidden_dims, kernel_size, dropout)
        self.dense = _DenseBlock(hidden_dims * sequence_length, 4 * hidden_dims, dropout)
        self.logsoftmax = nn.Sequential(nn.Linear(4 * hidden_dims, num_classes), nn.LogSoftmax(dim=-1))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, sequence_length, bands) -> (batch, num_classes) log-probabilities."""
        batch, steps, _ = x.shape
        if steps != self.sequence_length:
            raise ValueError(
                f"TempCNN was built for {self.sequence_length} time steps (its dense layer depends on it), "
                f"got {steps}"
            )
        x = self.conv_bn_relu3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
        # The reference flattens (channels, time); our features are (time, channels): permute the weight's
        # columns (a small copy) instead of the activations.
        dense_weight = self.dense.block[0].weight
        dense_weight = dense_weight.view(-1, self.hidden_dims, steps).transpose(1, 2).reshape(dense_weight.shape)
        x = self.dense(x.reshape(batch, -1), dense_weight)
        return self.logsoftmax(x)
