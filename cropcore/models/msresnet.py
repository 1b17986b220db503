"""MSResNet: a multi-scale 1-D ResNet with three parallel branches of kernel sizes 3, 5 and 7.

Wang, Chen, Hao, Peng, Lu, "Multi-scale 1D ResNet" (https://github.com/geekfeiw/Multi-Scale-1D-ResNet),
as used in BreizhCrops (Rußwurm et al. 2020, section 3; ``breizhcrops.models.MSResNet``).

Input (batch, time, bands), output (batch, num_classes) log-probabilities. The series is first stretched
to 512 steps by nearest-neighbour resampling (as the reference does), so any sequence length works and
the pooling sizes (16, 11, 6) always reduce each branch to one step. Parameter names equal the
reference's, so official checkpoints load with ``strict=True``.

Differences from the reference (same function where it works):
- Batch size 1: the reference squeezes the pooled features with ``squeeze()``, dropping the batch
  dimension, and returns (num_classes,); here the output is always (batch, num_classes).
- No ``layers`` argument: the fixed pooling sizes only fit one residual block per stage, the only
  configuration the reference can run and the one of the published checkpoint.
- Faster where it can be, same function:
  - The stem skips the 512-step stretch on the CPU (``msresnet_stem``): the stretch repeats every original
    step 11 or 12 times, so each 7-tap window reads at most two original steps, and a table of every window's
    output at the 45 steps replaces the convolution over 512. In inference it takes 10-14 ms instead of
    34-39 ms per batch of 1 024; in training, with its own backward pass, about 60 ms instead of 170-210 ms
    forward and backward (``benchmarks/RESULTS.md``).
  - CPU training runs the branches on (batch, time, channels) tensors through ``layers.time_conv`` (oneDNN's
    channels_last kernels, or the frequency domain where that saves work), which the stem's table gives
    without a transpose; there each stride-2 convolution is a stride-1 one over pairs of steps, which oneDNN
    runs far closer to its peak (training steps 583 against 679 ms).
  - CPU inference (eval mode, float32, no autograd) keeps the branches in oneDNN's own blocked layout from
    the stem to the pooling (``_ResidualBlock.forward_blocked``). ``F.conv1d`` on (batch, channels, time)
    tensors converts every input into that layout and every output back, and at 32-64 channels those
    conversions took about as long as the convolutions themselves. Kept in it, the convolutions run at
    145-197 GFLOP/s, and a batch of 1 024 takes 139-147 ms instead of 162-177 ms on 2 cores
    (``benchmarks/RESULTS.md``). Every batch norm is folded into the convolution before it, and the ReLU
    after a block's first convolution is fused into it. With several threads the batch runs as one
    single-threaded slice per thread (``inference_slices``), 4-8 % faster than one pass on all threads.
  - Elsewhere (CUDA, float64, autocast, autograd) inference keeps PyTorch's (batch, channels, time) layout,
    with the batch norms folded likewise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.layers import batch_norm_concat, batch_norm_last, fold_batch_norm, output_steps, time_conv
from cropcore.models.msresnet_stem import (
    RESAMPLED_LENGTH, STEM_KERNEL, STEM_PADDING, STEM_STRIDE, inference_stem, pool_rows, resample_index,
    training_stem,
)

KERNEL_SIZES = (3, 5, 7)
"""The branches' kernel sizes."""

_ONEDNN_CONV = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
"""oneDNN's convolution with a fused activation, on tensors in oneDNN's blocked layout (None where PyTorch
was built without it)."""


def _conv_bn(x: torch.Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d, *, relu: bool = False) -> torch.Tensor:
    """bn(conv(x)) (then ReLU) for x (batch, channels, time); batch norm folded into the weights in eval mode."""
    stride = conv.stride[0]
    if conv.kernel_size[0] == 1 and stride > 1 and conv.padding[0] == 0:
        # A strided 1x1 convolution reads every stride-th step only: subsample, then stride 1 (oneDNN's
        # backward pass of the strided one was measured 1.5-2x slower).
        x, stride = x[..., ::stride], 1
    if not bn.training:
        weight, bias = fold_batch_norm(conv.weight, conv.bias, bn)
        y = F.conv1d(x, weight, bias, stride=stride, padding=conv.padding)
    else:
        y = bn(F.conv1d(x, conv.weight, conv.bias, stride=stride, padding=conv.padding))
    return _relu(y) if relu else y


def _conv_bn_time_major(x: torch.Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d, *, relu: bool = False) -> torch.Tensor:
    """bn(conv(x)) (then ReLU) for x (batch, time, channels), through ``time_conv`` (frequency domain where
    that saves work)."""
    y = time_conv(x, conv.weight, conv.bias, stride=conv.stride[0], padding=conv.padding[0])
    return batch_norm_last(y, bn, relu=relu)


def _blocked_conv_bn(
    x: torch.Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d, *, relu: bool = False, out_steps: int | None = None
) -> torch.Tensor:
    """bn(conv(x)) (then ReLU) in eval mode, for x a oneDNN tensor (batch, channels, 1, time); the result
    stays in oneDNN's layout. ``out_steps``: for a 1x1 kernel, keep only the first ``out_steps`` outputs.

    A oneDNN tensor cannot be sliced, so a shortcut that the reference cuts at its end is computed short
    instead: a second, zero tap, dilated to fall on the last step the shortcut may read, shortens the
    output to exactly ``out_steps``.
    """
    weight, bias = fold_batch_norm(conv.weight, conv.bias, bn)
    steps, stride, padding, dilation = x.shape[-1], conv.stride[0], conv.padding[0], 1
    if out_steps is not None and out_steps != output_steps(steps, 1, padding, padding, stride):
        dilation = steps + 2 * padding - 1 - stride * (out_steps - 1)
        weight = F.pad(weight, (0, 1))
    return _ONEDNN_CONV(
        x, weight.unsqueeze(2), bias, [0, padding], [1, stride], [1, dilation], 1, "relu" if relu else "none", [], ""
    )


def _relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU, in place unless autograd records (in-place ops on views cost autograd extra copies)."""
    return F.relu(x) if torch.is_grad_enabled() else x.relu_()


class _ResidualBlock(nn.Module):
    """Two convolutions of one kernel size with a strided 1x1 shortcut.

    Like the reference, the convolutions pad by 1 whatever the kernel size, so for kernels 5 and 7 the
    output is shorter than the shortcut, which is cut at its end to fit.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, channels, kernel_size, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.downsample = nn.Sequential(
            nn.Conv1d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm1d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, time) -> (batch, channels, shorter time)."""
        out = _conv_bn(_conv_bn(x, self.conv1, self.bn1, relu=True), self.conv2, self.bn2)
        residual = _conv_bn(x, self.downsample[0], self.downsample[1])[..., : out.shape[-1]]
        return _relu(out.add_(residual) if not torch.is_grad_enabled() else out + residual)

    def forward_blocked(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` in eval mode without autograd, for x a oneDNN tensor (batch, in_channels, 1, time) in
        oneDNN's blocked layout, which the result keeps (``_blocked_conv_bn``)."""
        out = _blocked_conv_bn(_blocked_conv_bn(x, self.conv1, self.bn1, relu=True), self.conv2, self.bn2)
        shortcut = _blocked_conv_bn(x, self.downsample[0], self.downsample[1], out_steps=out.shape[-1])
        return out.add_(shortcut).relu_()

    def forward_time_major(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` for x (batch, time, in_channels) -> (batch, shorter time, channels); ``shortcut``: the
        downsampling path's output where the caller computed it already."""
        out = _conv_bn_time_major(_conv_bn_time_major(x, self.conv1, self.bn1, relu=True), self.conv2, self.bn2)
        if shortcut is None:
            shortcut = _conv_bn_time_major(x, self.downsample[0], self.downsample[1])
        return F.relu(out + shortcut[:, : out.shape[1]])


class MSResNet(TimeSeriesClassifier):
    """A 7-wide strided stem, then three branches of three residual stages (kernels 3, 5, 7; widths
    ``hidden_dims``, 2x and 4x), each averaged over time, concatenated and classified linearly.

    Published checkpoint: ``hidden_dims=32`` (535 785 parameters with 13 bands and 9 classes).

    Args:
        input_dim: number of bands.
        num_classes: number of classes.
        sequence_length: number of time steps (any: the series is resampled to 512 steps).
        hidden_dims: width of the first stage.
    """

    inference_slices = True

    def __init__(self, input_dim: int, num_classes: int, sequence_length: int, hidden_dims: int = 32) -> None:
        super().__init__(input_dim, num_classes, sequence_length)
        self.check_positive_ints(hidden_dims=hidden_dims)
        self.hidden_dims = hidden_dims
        self.conv1 = nn.Conv1d(
            input_dim, hidden_dims, kernel_size=STEM_KERNEL, stride=STEM_STRIDE, padding=STEM_PADDING, bias=False
        )
        self.bn1 = nn.BatchNorm1d(hidden_dims)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)
        widths = (hidden_dims, 2 * hidden_dims, 4 * hidden_dims)
        for kernel_size, pool_size in zip(KERNEL_SIZES, (16, 11, 6)):
            in_channels = hidden_dims
            for stage, width in enumerate(widths, start=1):
                block = _ResidualBlock(in_channels, width, kernel_size, stride=2)
                self.add_module(f"layer{kernel_size}x{kernel_size}_{stage}", nn.Sequential(block))
                in_channels = width
            self.add_module(f"maxpool{kernel_size}", nn.AvgPool1d(kernel_size=pool_size, stride=1, padding=0))
        self.fc = nn.Linear(4 * hidden_dims * 3, num_classes)
        self.register_buffer("_resample_index", torch.empty(0, dtype=torch.long), persistent=False)
        self._resample_steps = 0

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour stretch of (batch, time, bands) to 512 steps. The index is kept on the input's
        device (a copy from the host inside ``forward`` would break CUDA graph capture)."""
        steps = x.shape[1]
        index = self._resample_index
        if index.numel() != RESAMPLED_LENGTH or self._resample_steps != steps or index.device != x.device:
            index = self._resample_index = resample_index(steps).to(x.device)
            self._resample_steps = steps
        return x.index_select(1, index)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn1(conv1(x stretched to 512 steps))), max-pooled: (batch, time, bands) -> (batch, hidden, 128).
        CPU inference computes it at the original steps (``msresnet_stem``)."""
        if (x.device.type == "cpu" and not (self.bn1.training or torch.is_grad_enabled())
                and pool_rows(x.shape[1]) is not None):
            return inference_stem(x, self.conv1.weight, self.bn1)
        x = _conv_bn(self._resample(x).transpose(1, 2).contiguous(), self.conv1, self.bn1, relu=True)
        return F.max_pool1d(x, kernel_size=3, stride=2, padding=1)

    def _stem_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """The stem for CPU training, (batch, time, bands) -> (batch, 128, hidden): at the original steps with
        a hand-written backward pass (``msresnet_stem.training_stem``) where it applies."""
        bn = self.bn1
        if (bn.training and bn.affine and bn.track_running_stats and not x.requires_grad
                and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu")
                and pool_rows(x.shape[1]) is not None):
            return training_stem(x, self.conv1.weight, bn)
        return self._stem(x).transpose(1, 2).contiguous()

    def _blocks(self, kernel_size: int) -> list[_ResidualBlock]:
        """The three residual blocks of one branch, in order."""
        return [getattr(self, f"layer{kernel_size}x{kernel_size}_{stage}")[0] for stage in (1, 2, 3)]

    def _first_blocks(self) -> list[_ResidualBlock]:
        """The first residual block of each branch, in ``KERNEL_SIZES`` order."""
        return [self._blocks(kernel_size)[0] for kernel_size in KERNEL_SIZES]

    def _first_shortcuts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The three branches' first shortcuts, (batch, time, hidden) each: strided 1x1 convolutions of the same
        stem output, computed as one product and one batch norm (so the stem output's gradient gathers one
        contribution from them instead of three)."""
        downsamples = [block.downsample for block in self._first_blocks()]
        weight = torch.cat([conv.weight for conv, _ in downsamples])
        y = time_conv(x, weight, stride=downsamples[0][0].stride[0])
        return batch_norm_concat(y, [bn for _, bn in downsamples]).split(self.hidden_dims, dim=-1)

    def _check_pooled_steps(self, steps: int, kernel_size: int) -> None:
        """The branch's average pooling covers its last stage's steps exactly (the reference's fixed sizes)."""
        pool_size = getattr(self, f"maxpool{kernel_size}").kernel_size[0]
        if steps != pool_size:
            raise RuntimeError(f"MSResNet branch {kernel_size} ends with {steps} steps, expected {pool_size}")

    def _branch(self, x: torch.Tensor, kernel_size: int, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """One branch: three residual stages, then the mean over the remaining steps (batch, channels).
        With ``shortcut`` (its first stage's, from ``_first_shortcuts``), x is time-major."""
        time_major = shortcut is not None
        for stage, block in enumerate(self._blocks(kernel_size), start=1):
            x = block.forward_time_major(x, shortcut if stage == 1 else None) if time_major else block(x)
        self._check_pooled_steps(x.shape[1] if time_major else x.shape[-1], kernel_size)
        return x.mean(dim=1 if time_major else -1)

    def _branch_blocked(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        """``_branch`` for CPU inference on a oneDNN tensor (batch, hidden, 1, time): (batch, channels), dense."""
        for block in self._blocks(kernel_size):
            x = block.forward_blocked(x)
        self._check_pooled_steps(x.shape[-1], kernel_size)
        return F.adaptive_avg_pool2d(x, 1).to_dense().flatten(1)

    def _blocked_inference(self, x: torch.Tensor) -> bool:
        """Whether inference runs in oneDNN's blocked layout: eval mode on the CPU in float32, no autograd,
        finite input (oneDNN's fused ReLU maps NaN to 0, which would hide a corrupt parcel behind a confident
        prediction; the other path keeps it NaN, as the reference does). The test is on the sum, which NaN and
        infinity reach (0.03 ms per batch of 1 024, against 0.8-1.0 ms for an element-wise test); a sum that
        overflows only sends the batch down the other, equally exact path."""
        return (not self.training and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and _ONEDNN_CONV is not None and torch.backends.mkldnn.is_available()
                and torch.backends.mkldnn.enabled and bool(torch.isfinite(x.sum())))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) -> (batch, num_classes) log-probabilities."""
        if self.training and x.device.type == "cpu":
            x = self._stem_time_major(x)
            shortcuts = self._first_shortcuts(x)
            branches = [self._branch(x, k, shortcut) for k, shortcut in zip(KERNEL_SIZES, shortcuts)]
        elif self._blocked_inference(x):
            x = self._stem(x).unsqueeze(2).to_mkldnn()
            branches = [self._branch_blocked(x, k) for k in KERNEL_SIZES]
        else:
            x = self._stem(x)
            branches = [self._branch(x, k) for k in KERNEL_SIZES]
        return F.log_softmax(self.fc(torch.cat(branches, dim=1)), dim=-1)
