"""Pieces shared by the convolutional networks: convolutions over time on (batch, time, channels) tensors.

The reference models transpose the input to PyTorch's (batch, channels, time) layout and convolve with
``conv1d``. Our networks keep the parcels' natural (batch, time, channels) layout throughout: viewed as
``(batch, channels, time, 1)`` it is exactly ``channels_last`` memory, for which oneDNN (CPU) and cuDNN (GPU)
have their fastest kernels, so no transpose is ever copied. The parameters stay in the reference's
``nn.Conv1d`` / ``nn.BatchNorm1d`` modules (same state_dict keys); only the arithmetic is rearranged.

Long kernels on the CPU (``FFT_MIN_KERNEL`` taps and more, stride 1) are convolved through the real FFT
over time: the product of every channel pair then costs about 4 * (n / 2 + 1) multiplications for an
n-point transform, whatever the kernel length, against time * kernel taps directly (InceptionTime's
41-tap kernels over 45 steps: about 8x fewer). Several kernels applied to one input share one transform
of it (``multi_kernel_conv``). Same function to float rounding (about 1e-6 relative in float32).

In eval mode the networks fold each batch normalisation into the weights of the convolution before it
(a per-channel scale and shift): one pass over the activations less per layer, same function, and the
state_dict is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def time_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """1-D convolution over time of a (batch, time, channels) tensor, returned in the same layout.

    Args:
        x: input (batch, time, in_channels).
        weight: ``nn.Conv1d`` weight (out_channels, in_channels, kernel).
        bias: (out_channels,) or None.
        stride: stride over time.
        padding: zeros added at both ends, or (left, right) for an asymmetric padding.

    Returns:
        (batch, out_time, out_channels), contiguous.
    """
    left, right = (padding, padding) if isinstance(padding, int) else padding
    if _use_fft(x, weight.shape[-1], weight.dtype, stride):
        return _fft_conv(x, weight, bias, left, right)
    if left != right:
        x = F.pad(x, (0, 0, left, right))
        left = 0
    if weight.shape[-1] == 1 and stride > 1 and left == 0:
        # A strided 1x1 convolution only reads every stride-th step: subsample, then stride 1. (Also avoids a
        # oneDNN crash in the backward pass of strided channels_last 1x1 convolutions with few channels.)
        x, stride = x[:, ::stride], 1
    # (batch, time, channels) contiguous == (batch, channels, time, 1) in channels_last memory: a free view,
    # built with the canonical strides (batch: T*C, channels: 1, time: C, width: C) that oneDNN expects.
    x4 = x.contiguous().unsqueeze(2).permute(0, 3, 1, 2)
    weight4 = weight.unsqueeze(-1).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x4, weight4, bias, stride=(stride, 1), padding=(left, 0))
    return y.permute(0, 2, 3, 1).flatten(2).contiguous()


#: Kernels at least this long are convolved through the FFT on the CPU (measured on the benchmark machine:
#: 41 taps 2.3x faster forward and 3x forward + backward at 128 channels; 7 taps 1.3x slower).
FFT_MIN_KERNEL = 15


def _use_fft(x: torch.Tensor, taps: int, weight_dtype: torch.dtype, stride: int) -> bool:
    """FFT only where it is cheaper and exact enough: CPU, float32/64 outside autocast, stride 1, long kernels."""
    return (x.device.type == "cpu" and stride == 1 and taps >= FFT_MIN_KERNEL
            and x.dtype in (torch.float32, torch.float64) and weight_dtype == x.dtype
            and not torch.is_autocast_enabled("cpu"))


def _fast_length(minimum: int) -> int:
    """The smallest n >= minimum whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    n = minimum
    while True:
        rest = n
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return n
        n += 1


def _fft_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, left: int, right: int) -> torch.Tensor:
    """``time_conv`` (stride 1) as a circular cross-correlation long enough that nothing wraps around.

    ``y[t] = sum_k w[k] x[t + k - left]``: with x zero-padded to n >= time + max(left, right) and the
    kernel rotated so that tap ``left`` sits at index 0, the circular correlation equals it for every
    output step, and in frequency space it is one complex product per channel pair and frequency.
    """
    steps = x.shape[1]
    out_channels, _, kernel = weight.shape
    out_steps = steps + left + right - kernel + 1
    if out_steps < 1:  # what F.conv1d refuses too
        raise ValueError(f"a {kernel}-tap kernel is longer than the padded series ({steps + left + right} steps)")
    n = _fast_length(steps + max(left, right))
    spectrum = torch.fft.rfft(x, n=n, dim=1)  # (batch, frequencies, in)
    rotated = torch.roll(F.pad(weight, (0, n - kernel)), shifts=-left, dims=-1)
    kernels = torch.fft.rfft(rotated, dim=-1).conj().permute(2, 1, 0)  # (frequencies, in, out)
    product = torch.bmm(spectrum.transpose(0, 1), kernels)  # (frequencies, batch, out)
    # The inverse transform along a contiguous last axis is about 1.7x faster than along the first.
    y = torch.fft.irfft(product.permute(1, 2, 0).contiguous(), n=n, dim=-1)[..., :out_steps].transpose(1, 2)
    y = y.contiguous()
    return y if bias is None else y.add_(bias)  # in place on the fresh copy: one pass less


def multi_kernel_conv(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None], paddings: Sequence[int]
) -> torch.Tensor:
    """Several same-padded (odd kernel, padding = kernel // 2) convolutions of one input, outputs concatenated.

    Through the FFT (long kernels on the CPU) the kernels are zero-padded to one centred window and
    applied as a single convolution, so the input is transformed once; otherwise one ``time_conv`` each.
    """
    reach = max(paddings)
    same = all(w.shape[-1] == 2 * p + 1 for w, p in zip(weights, paddings))
    if not same or not _use_fft(x, 2 * reach + 1, weights[0].dtype, 1):
        return torch.cat([time_conv(x, w, b, padding=p) for w, b, p in zip(weights, biases, paddings)], dim=-1)
    padded = torch.cat([F.pad(w, (reach - p, reach - p)) for w, p in zip(weights, paddings)])
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([x.new_zeros(w.shape[0]) if b is None else b for w, b in zip(weights, biases)])
    return time_conv(x, padded, bias, padding=reach)


def bn_scale_shift(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map (scale, shift) that an eval-mode batch norm applies per channel."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fold_batch_norm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``bn(layer(x))`` as one layer, for a conv or linear ``layer`` (eval mode only)."""
    scale, shift = bn_scale_shift(bn)
    folded_weight = weight * scale.view(-1, *([1] * (weight.ndim - 1)))
    folded_bias = shift if bias is None else bias * scale + shift
    return folded_weight, folded_bias


def batch_norm_last(x: torch.Tensor, bn: nn.BatchNorm1d, *, relu: bool = False) -> torch.Tensor:
    """``bn`` over the channels of a (..., channels) tensor, statistics over all other positions.

    Same statistics as ``nn.BatchNorm1d`` on (batch, channels, time). A training batch with a single
    position (batch size 1 after pooling) has no variance to normalise by: it is normalised with the
    running statistics instead, which stay unchanged (the reference raises an error there).
    ``relu`` applies a ReLU in place on the fresh output, before it is viewed (an in-place op on the view
    would make autograd copy the whole tensor; batch norm's backward does not need its output).
    """
    flat = x.reshape(-1, x.shape[-1])
    if bn.training and flat.shape[0] == 1:
        out = F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    else:
        out = bn(flat)
    if relu:
        out = out.relu_()
    return out.view(x.shape)


def batch_norm_concat(x: torch.Tensor, bns: Sequence[nn.BatchNorm1d], *, relu: bool = False) -> torch.Tensor:
    """Training-mode batch norm of a (..., channels) tensor whose channels are ``bns``' concatenated.

    One call instead of one per module (each would need a copy of its slice); the running statistics are
    written back into each module as ``nn.BatchNorm1d`` would. ``relu`` as in :func:`batch_norm_last`.
    """
    flat = x.reshape(-1, x.shape[-1])
    first = bns[0]
    running_mean = torch.cat([bn.running_mean for bn in bns])
    running_var = torch.cat([bn.running_var for bn in bns])
    weight = torch.cat([bn.weight for bn in bns])
    bias = torch.cat([bn.bias for bn in bns])
    if flat.shape[0] == 1:
        out = F.batch_norm(flat, running_mean, running_var, weight, bias, False, 0.0, first.eps)
        return (out.relu_() if relu else out).view(x.shape)
    first.num_batches_tracked.add_(1)
    momentum = first.momentum if first.momentum is not None else 1.0 / float(first.num_batches_tracked)
    out = F.batch_norm(flat, running_mean, running_var, weight, bias, True, momentum, first.eps)
    with torch.no_grad():
        start = 0
        for bn in bns:
            stop = start + bn.num_features
            bn.running_mean.copy_(running_mean[start:stop])
            bn.running_var.copy_(running_var[start:stop])
            if bn is not first:
                bn.num_batches_tracked.copy_(first.num_batches_tracked)
            start = stop
    return (out.relu_() if relu else out).view(x.shape)
