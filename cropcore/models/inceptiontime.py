"""InceptionTime: stacked inception modules (bottleneck, three wide convolutions, max-pool branch) with a
residual shortcut every three modules, global average pooling and a linear classifier.

Ismail Fawaz et al., "InceptionTime: Finding AlexNet for Time Series Classification", Data Mining and
Knowledge Discovery 34, 2020 (https://github.com/hfawaz/InceptionTime), as used in BreizhCrops
(Rußwurm et al. 2020, section 3; ``breizhcrops.models.InceptionTime``).

Input (batch, time, bands), output (batch, num_classes) log-probabilities; any sequence length (every
convolution keeps the length).

Fixes of the reference, whose published configuration is not stated (Table 1 gives 75 k parameters):
- The reference keeps its inception modules, their three convolutions and its shortcut layers in plain
  Python lists: they are not registered, so they are neither trained, nor moved to the device, nor saved
  (it counts about 1 200 trainable parameters, only the classifier). Here they are ``nn.ModuleList``\\ s
  under the reference's attribute names, so our state_dict keys are the names the reference would have
  had: ``inception_modules_list.{i}.bottleneck.weight``, ``inception_modules_list.{i}.convolutions.{j}.weight``
  (kernels 41, 21, 11), ``inception_modules_list.{i}.pool_conv.1.weight``,
  ``inception_modules_list.{i}.bn_relu.0.*``, ``shortcut_layer_list.{k}.sc.{0,1}.*``, ``outlinear.*``.
  A reference InceptionTime state_dict holds only ``outlinear.*`` (its list-held weights are missing), so
  it cannot be loaded fully: its trained weights do not exist anywhere.
- The reference builds ``num_layers // 3 + 1`` shortcut layers but uses ``num_layers // 3``; the unused
  one is not built here (it would only add untrained parameters).
- ``hidden_dims`` must be divisible by 4 (four branches of ``hidden_dims // 4`` filters).
- Batch size 1 works in both modes (the reference does too, once its modules are registered).
- Faster, same function: channels_last convolutions on the (batch, time, bands) layout (no transposes),
  in eval mode the batch norms folded into the convolutions, and on the CPU the three long kernels of a
  module applied as one convolution in the frequency domain (``layers.multi_kernel_conv``: one transform
  of the bottleneck output, one channel-mixing product per frequency, whatever the kernel length; equal
  to direct convolution within float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.layers import batch_norm_last, bn_scale_shift, fold_batch_norm, multi_kernel_conv, time_conv


class _InceptionModule(nn.Module):
    """Bottleneck 1x1 -> convolutions of kernel ``kernel_size // 2**i + 1`` (i = 0, 1, 2), in parallel with
    max-pool(3) -> 1x1, concatenated (4 x ``num_filters`` channels) -> BatchNorm -> ReLU."""

    def __init__(self, input_dim: int, num_filters: int, kernel_size: int, use_bias: bool) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(input_dim, num_filters, kernel_size=1, bias=use_bias)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(num_filters, num_filters, kernel_size=k + 1, padding=k // 2, bias=False)
            for k in (kernel_size // 2**i for i in range(3))
        )
        self.pool_conv = nn.Sequential(
            nn.MaxPool1d(kernel_size=3, stride=1, padding=1),
            nn.Conv1d(input_dim, num_filters, kernel_size=1, bias=use_bias),
        )
        self.bn_relu = nn.Sequential(nn.BatchNorm1d(4 * num_filters), nn.ReLU())
        self.num_filters = num_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, input_dim) -> (batch, time, 4 * num_filters)."""
        bottleneck, pool_conv, bn = self.bottleneck, self.pool_conv[1], self.bn_relu[0]
        weights = [conv.weight for conv in self.convolutions] + [pool_conv.weight]
        biases: list[torch.Tensor | None] = [None, None, None, pool_conv.bias]
        if not bn.training:
            # Fold the batch norm into each branch: branch i owns channels i*n .. (i+1)*n of it.
            scale, shift = bn_scale_shift(bn)
            n = self.num_filters
            scales = [scale[i * n : (i + 1) * n] for i in range(4)]
            shifts = [shift[i * n : (i + 1) * n] for i in range(4)]
            weights = [w * s.view(-1, 1, 1) for w, s in zip(weights, scales)]
            biases = [t if b is None else b * s + t for b, s, t in zip(biases, scales, shifts)]
        squeezed = time_conv(x, bottleneck.weight, bottleneck.bias)
        # max_pool1d over the transposed view: PyTorch's (3, 1) max_pool2d on this layout was 6x slower.
        pooled = F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=1, padding=1).transpose(1, 2)
        long_kernels = multi_kernel_conv(squeezed, weights[:-1], biases[:-1],
                                         [conv.padding[0] for conv in self.convolutions])
        features = torch.cat([long_kernels, time_conv(pooled, weights[-1], biases[-1])], dim=-1)
        if not bn.training:
            return F.relu(features, inplace=not torch.is_grad_enabled())
        return batch_norm_last(features, bn, relu=True)


class _ShortcutLayer(nn.Module):
    """relu(out + BatchNorm(conv1x1(residual))): the residual connection every three modules."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.sc = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm1d(out_channels)
        )
        self.relu = nn.ReLU()

    def forward(self, residual: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """residual (batch, time, in_channels), out (batch, time, out_channels) -> same as out."""
        conv, bn = self.sc
        if not bn.training:
            weight, bias = fold_batch_norm(conv.weight, conv.bias, bn)
            shortcut = time_conv(residual, weight, bias)
        else:
            shortcut = batch_norm_last(time_conv(residual, conv.weight, conv.bias), bn)
        if torch.is_grad_enabled():
            return F.relu(shortcut + out)
        return shortcut.add_(out).relu_()


class InceptionTime(TimeSeriesClassifier):
    """``num_layers`` inception modules of ``hidden_dims`` channels, a shortcut every third module, global
    average pooling over time and a linear classifier.

    With 13 bands and 9 classes: 3 modules of 128 channels (the configuration of the issue's speed table)
    have 245 321 parameters; 1 module of 128 channels, 77 001 (the closest to Table 1's 75 k; 3 modules
    of 64 channels: 62 505, 4 of 64: 83 369).

    Args:
        input_dim: number of bands.
        num_classes: number of classes.
        sequence_length: number of time steps (any).
        num_layers: number of inception modules.
        hidden_dims: channels of every module (divisible by 4).
        kernel_size: the widest kernel is ``kernel_size + 1``, then ``kernel_size // 2 + 1`` and
            ``kernel_size // 4 + 1`` (a multiple of 8 so that all keep the length; reference: 40).
        use_bias: biases in the 1x1 convolutions (reference: False).
        use_residual: add the shortcut every third module (reference: True).
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        sequence_length: int,
        num_layers: int = 3,
        hidden_dims: int = 128,
        kernel_size: int = 40,
        use_bias: bool = False,
        use_residual: bool = True,
    ) -> None:
        super().__init__(input_dim, num_classes, sequence_length)
        self.check_positive_ints(num_layers=num_layers)
        if not isinstance(hidden_dims, int) or hidden_dims < 4 or hidden_dims % 4:
            raise ValueError(f"InceptionTime: hidden_dims must be a positive multiple of 4, got {hidden_dims!r}")
        if not isinstance(kernel_size, int) or kernel_size < 8 or kernel_size % 8:
            # kernel_size // 2**i must be even for i = 0, 1, 2, or a convolution would shorten the series.
            raise ValueError(f"InceptionTime: kernel_size must be a positive multiple of 8, got {kernel_size!r}")
        self.num_layers = num_layers
        self.use_residual = use_residual
        self.inception_modules_list = nn.ModuleList(
            _InceptionModule(input_dim if i == 0 else hidden_dims, hidden_dims // 4, kernel_size, use_bias)
            for i in range(num_layers)
        )
        shortcuts = num_layers // 3 if use_residual else 0
        self.shortcut_layer_list = nn.ModuleList(
            _ShortcutLayer(input_dim if i == 0 else hidden_dims, hidden_dims) for i in range(shortcuts)
        )
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.outlinear = nn.Linear(hidden_dims, num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) -> (batch, num_classes) log-probabilities."""
        residual = x
        for depth, module in enumerate(self.inception_modules_list):
            x = module(x)
            if self.use_residual and depth % 3 == 2:
                x = self.shortcut_layer_list[depth // 3](residual, x)
                residual = x
        return F.log_softmax(self.outlinear(x.mean(dim=1)), dim=-1)
