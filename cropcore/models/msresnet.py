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
- Faster where it can be, same function: the resampling is one index gather, and in eval mode every batch
  norm is folded into the convolution before it. The convolutions keep PyTorch's (batch, channels, time)
  layout, as the reference does: at 512 resampled steps oneDNN's plain kernels were measured faster than
  its channels_last ones (used by the other convolutional networks here).
- CPU inference skips the 512-step stretch altogether (``_stem_inference``). The stretch repeats every
  original step 11 or 12 times, so each 7-tap window of the stem reads at most two original steps: its output
  is ``A_s x[j] + B_s x[j+1]``, where ``A_s`` sums the s taps that land on step j and ``B_s`` the others. One
  product at the 45 original steps computes every (j, s) pair, and the max pooling picks its three rows per
  output from that table: 10-14 ms instead of 34-39 ms per batch of 1 024 (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.layers import fold_batch_norm

RESAMPLED_LENGTH = 512
"""The reference stretches every series to this many steps before the first convolution."""
STEM_KERNEL, STEM_STRIDE, STEM_PADDING = 7, 2, 3
"""The first convolution's shape (the reference's, fixed)."""
STEM_BLOCK = 64
"""Parcels per block of the CPU inference stem, so that its table stays in the caches (64-256 measured)."""


@functools.lru_cache(maxsize=16)
def resample_index(steps: int) -> torch.Tensor:
    """Which original step each of the 512 stretched steps repeats: the indices of ``F.interpolate``'s
    nearest mode, which the reference uses."""
    positions = torch.arange(steps, dtype=torch.float32).view(1, 1, steps)
    return F.interpolate(positions, size=RESAMPLED_LENGTH, mode="nearest").view(-1).long()


@functools.lru_cache(maxsize=16)
def stem_pool_rows(steps: int) -> torch.Tensor | None:
    """For ``_stem_inference``: the three table rows each max-pooled stem output picks, or None where a stem
    window reads more than two original steps (from 86 steps on).

    Steps are counted with a zero step added at both ends (the stem's zero padding), and row ``7 j + s - 1``
    of the table is the window whose first s taps read padded step j and the others step j + 1.
    """
    source = resample_index(steps) + 1
    source = torch.cat([source.new_zeros(STEM_PADDING), source, source.new_full((STEM_PADDING,), steps + 1)])
    windows = source.unfold(0, STEM_KERNEL, STEM_STRIDE)  # (256, 7): the padded step each tap reads
    first = windows[:, :1]
    on_first = (windows == first).sum(1, keepdim=True)
    if not torch.equal(windows, torch.where(torch.arange(STEM_KERNEL) < on_first, first, first + 1)):
        return None
    rows = (first * STEM_KERNEL + on_first - 1).view(-1)
    # max_pool1d(3, stride 2, padding 1): output p takes stem outputs 2p - 1, 2p, 2p + 1 that exist.
    centre = 2 * torch.arange((rows.numel() - 1) // 2 + 1)
    neighbours = (centre - 1).clamp(min=0), centre, (centre + 1).clamp(max=rows.numel() - 1)
    return torch.stack([rows[at] for at in neighbours], 1).view(-1)


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
        for kernel_size, pool_size in ((3, 16), (5, 11), (7, 6)):
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
        """relu(bn1(conv1(x stretched to 512 steps))), max-pooled: (batch, time, bands) -> (batch, hidden, 128)."""
        if x.device.type == "cpu" and not (self.bn1.training or torch.is_grad_enabled()):
            rows = stem_pool_rows(x.shape[1])
            if rows is not None:
                return self._stem_inference(x, rows)
        x = _conv_bn(self._resample(x).transpose(1, 2).contiguous(), self.conv1, self.bn1, relu=True)
        return F.max_pool1d(x, kernel_size=3, stride=2, padding=1)

    def _stem_inference(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The stem at the original steps (module docstring): a table of every window's output, then the pooling."""
        batch, steps, bands = x.shape
        weight, bias = fold_batch_norm(self.conv1.weight, None, self.bn1)  # (hidden, bands, 7)
        first_taps = weight.cumsum(-1)  # [..., s - 1]: the sum of the first s taps
        pair = torch.cat([first_taps, first_taps[..., -1:] - first_taps], 1)  # weights of x[j] and x[j + 1]
        pair = pair.permute(1, 2, 0).reshape(2 * bands, STEM_KERNEL * self.hidden_dims)
        bias = bias.repeat(STEM_KERNEL)
        out = x.new_empty(batch, self.hidden_dims, rows.numel() // 3)
        for start in range(0, batch, STEM_BLOCK):
            part = F.pad(x[start : start + STEM_BLOCK], (0, 0, 1, 1))  # the padding as zero steps
            n = part.shape[0]
            windows = part.as_strided((n, steps + 1, 2 * bands), (part.stride(0), bands, 1))  # x[j], x[j + 1]
            table = torch.addmm(bias, windows.reshape(-1, 2 * bands), pair).view(n, -1, self.hidden_dims)
            pooled = table.index_select(1, rows).view(n, -1, 3, self.hidden_dims).amax(2).relu_()
            out[start : start + n].copy_(pooled.transpose(1, 2))
        return out

    def _branch(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        """One branch: three residual stages, then the mean over the remaining steps (batch, channels)."""
        for stage in (1, 2, 3):
            x = getattr(self, f"layer{kernel_size}x{kernel_size}_{stage}")(x)
        pool_size = getattr(self, f"maxpool{kernel_size}").kernel_size[0]
        if x.shape[-1] != pool_size:
            raise RuntimeError(f"MSResNet branch {kernel_size} ends with {x.shape[-1]} steps, expected {pool_size}")
        return x.mean(dim=-1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) -> (batch, num_classes) log-probabilities."""
        x = self._stem(x)
        features = torch.cat([self._branch(x, kernel_size) for kernel_size in (3, 5, 7)], dim=1)
        return F.log_softmax(self.fc(features), dim=-1)
