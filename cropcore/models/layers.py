"""Pieces shared by the convolutional networks: convolutions over time on (batch, time, channels) tensors.

The reference models transpose the input to PyTorch's (batch, channels, time) layout and convolve with
``conv1d``. Our networks keep the parcels' natural (batch, time, channels) layout throughout: viewed as
``(batch, channels, time, 1)`` it is exactly ``channels_last`` memory, for which oneDNN (CPU) and cuDNN (GPU)
have their fastest kernels, so no transpose is ever copied. The parameters stay in the reference's
``nn.Conv1d`` / ``nn.BatchNorm1d`` modules (same state_dict keys); only the arithmetic is rearranged.

On the CPU, in float32/64, a convolution is computed in the frequency domain when that saves enough
multiplications (``spectral_gain``): the series is projected onto the real Fourier basis of an
n-point circle (n = steps + padding, so nothing wraps around), every frequency mixes the channels with
one real matrix product of twice the width (the complex product written out), and the inverse basis
brings the wanted output steps back. All three steps are plain batched matrix products, whatever the
kernel length: 7-tap kernels at 128 channels need about 2.4x fewer multiplications than directly, and
InceptionTime's 41-tap kernels about 7x. Several kernels applied to one input share one transform
(``multi_kernel_conv``). Same function to float rounding (about 1e-7 relative in float32, tested
against direct convolution in float64). A strided convolution that stays direct runs on the CPU as a
stride-1 one over groups of consecutive steps (``_grouped_steps_conv``), which oneDNN computes much faster.

In eval mode the networks fold each batch normalisation into the weights of the convolution before it
(a per-channel scale and shift): one pass over the activations less per layer, same function, and the
state_dict is never touched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

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
    out_steps = output_steps(x.shape[1], weight.shape[-1], left, right, stride)
    if out_steps < 1:  # what F.conv1d refuses too
        raise ValueError(
            f"a {weight.shape[-1]}-tap kernel is longer than the padded series ({x.shape[1] + left + right} steps)"
        )
    if _use_spectral(x, weight, left, right, stride):
        return _spectral_conv(x, weight, bias, left, right, stride)
    if stride > 1 and weight.shape[-1] > 1 and x.device.type == "cpu":
        return _grouped_steps_conv(x, weight, bias, left, right, stride)
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


def _grouped_steps_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, left: int, right: int, stride: int
) -> torch.Tensor:
    """A strided convolution as a stride-1 one over groups of ``stride`` consecutive steps.

    Viewed as (batch, steps / stride, stride * channels), which is free in this layout, step ``stride * g + r``
    is channel block r of group g, and tap k (offset ``k - left``) reads group ``g + floor((k - left) / stride)``,
    block ``(k - left) mod stride``. So the kernel becomes a shorter one over wider groups, with zeros where no
    tap lands. oneDNN runs these stride-1 convolutions much closer to its peak on the CPU than the strided ones:
    MSResNet's stride-2 convolutions, forward and backward, 1.0-2.6x faster (1.3-1.8x in inference), for up to
    a third more multiplications.
    """
    batch, steps, channels = x.shape
    out_channels, _, taps = weight.shape
    out_steps = output_steps(steps, taps, left, right, stride)
    first, last = -left // stride, (taps - 1 - left) // stride  # the groups a window reaches, relative to g
    grouped_taps = last - first + 1
    lead = -left % stride  # zero taps before tap 0 inside the first group
    grouped = F.pad(weight, (lead, stride * grouped_taps - taps - lead))
    grouped = grouped.view(out_channels, -1, grouped_taps, stride).permute(0, 3, 1, 2).flatten(1, 2)
    groups = -(-steps // stride)
    if groups * stride != steps:
        x = F.pad(x, (0, 0, 0, groups * stride - steps))
    grouped_right = out_steps - groups + last  # what the last output's window needs beyond the groups
    y = time_conv(x.reshape(batch, groups, stride * channels), grouped, bias, padding=(-first, max(grouped_right, 0)))
    return y if grouped_right >= 0 else y[:, :out_steps].contiguous()


#: The spectral path is taken where ``spectral_gain`` reaches these. oneDNN's direct forward convolution runs
#: closer to the machine's peak than the spectral path's batched products, its backward pass further from it
#: (fitted to measurements on 2 CPU cores at 45 steps, 12-3 954 channels, 3-41 taps; 7 taps at 128 channels:
#: 1.1-1.4x faster forward, 2-2.5x forward + backward).
SPECTRAL_MIN_GAIN = {"inference": 1.5, "training": 0.9}


def spectral_gain(steps: int, out_steps: int, n: int, taps: int, in_channels: int, out_channels: int) -> float:
    """How many times cheaper the spectral path is than direct convolution, counted in multiplications.

    Direct: every output step multiplies every channel pair by every tap. Spectral: n / 2 frequency slots of
    four real products per channel pair (2n), and the two transforms (n per step and channel), whose
    small inner dimension makes them run at about two thirds of the mixing products' speed (weight 1.5).
    """
    direct = out_steps * taps * in_channels * out_channels
    spectral = 2 * n * in_channels * out_channels + 1.5 * n * steps * (in_channels + out_channels)
    return direct / spectral


def _use_spectral(x: torch.Tensor, weight: torch.Tensor, left: int, right: int, stride: int) -> bool:
    """Spectral only where it is exact enough (CPU, float32/64 outside autocast) and saves enough work."""
    if not (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and not torch.is_autocast_enabled("cpu")):
        return False
    steps = x.shape[1]
    out_channels, in_channels, taps = weight.shape
    out_steps = output_steps(steps, taps, left, right, stride)
    gain = spectral_gain(steps, out_steps, _circle_points(steps, left, right), taps, in_channels, out_channels)
    training = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return gain >= SPECTRAL_MIN_GAIN["training" if training else "inference"]


def output_steps(steps: int, taps: int, left: int, right: int, stride: int) -> int:
    """Output length of a convolution over ``steps`` padded by (left, right), as ``F.conv1d`` computes it."""
    return (steps + left + right - taps) // stride + 1


def _circle_points(steps: int, left: int, right: int) -> int:
    """n: the even number of points at least steps + max(left, right), so that nothing wraps around."""
    n = steps + max(left, right)
    return n + n % 2


def cached_tables(maxsize: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``functools.lru_cache`` for functions that build constant tensors, built outside inference mode: a
    table first made under ``torch.inference_mode()`` would be an inference tensor, which no later training
    step (of any network in the process) could save for backward."""
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def build(*args: Any) -> Any:
            with torch.inference_mode(False):
                return function(*args)
        return functools.lru_cache(maxsize=maxsize)(build)
    return decorate


@cached_tables(maxsize=64)
def _fourier_tables(
    steps: int, out_steps: int, n: int, taps: int, left: int, stride: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three real bases of an n-point circle (n even), computed in float64.

    Frequencies 1 .. n/2 - 1 are complex; 0 and n/2 (Nyquist) are real and share one complex slot (0
    as its real part, n/2 as its imaginary part), so there are n/2 slots of two rows each.

    forward (n, steps): per slot, the rows cos, -sin (the real and imaginary parts of the DFT);
    inverse (out_steps, n): the real inverse at output steps 0, stride, 2 stride, ... (half-spectrum
    weights folded in); phases (n/2, 4, taps): per slot, the factors of each tap in the four blocks of
    the slot's 2x2 real mixing matrix ``[[Re K, Im K], [-Im K, Re K]]`` (``[[K_0, 0], [0, K_n/2]]`` in
    slot 0), where ``K_f = sum_k w[k] exp(i 2 pi f (k - left) / n)``.
    """
    slots = n // 2
    angle = 2 * math.pi / n
    frequency = torch.arange(slots, dtype=torch.float64)
    step = torch.arange(steps, dtype=torch.float64)
    at_step = angle * frequency[:, None] * step
    forward = torch.stack([torch.cos(at_step), -torch.sin(at_step)], dim=1)
    forward[0, 1] = torch.cos(math.pi * step)  # Nyquist
    output = torch.arange(out_steps, dtype=torch.float64) * stride
    at_output = angle * output[:, None] * frequency
    inverse = torch.stack([torch.cos(at_output) * 2 / n, -torch.sin(at_output) * 2 / n], dim=2)
    inverse[:, 0, 0] = 1 / n
    inverse[:, 0, 1] = torch.cos(math.pi * output) / n
    offset = torch.arange(taps, dtype=torch.float64) - left
    at_tap = angle * frequency[:, None] * offset
    phases = torch.stack([torch.cos(at_tap), torch.sin(at_tap), -torch.sin(at_tap), torch.cos(at_tap)], dim=1)
    phases[0, 1:3] = 0
    phases[0, 3] = torch.cos(math.pi * offset)
    tables = (forward.reshape(n, steps), inverse.reshape(out_steps, n), phases)
    return tuple(t.to(dtype=dtype, device=device) for t in tables)


class _FrequencyMix(torch.autograd.Function):
    """x (batch, steps, in) -> (batch, out_steps, out): forward transform, per-frequency mixing, inverse.

    Written out by hand so that no intermediate is ever transposed in memory: the per-frequency products
    read and write the (batch, frequency, channels) layout through strided views.
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, mixing: torch.Tensor, bias: torch.Tensor | None, forward: torch.Tensor,
        inverse: torch.Tensor, n: int,
    ) -> torch.Tensor:
        batch = x.shape[0]
        slots, in_width, out_width = mixing.shape
        spectrum = torch.bmm(forward.expand(batch, -1, -1), x)  # (batch, 2 slots, in) == (batch, slots, 2 in)
        product = x.new_empty(batch, slots, out_width)
        torch.bmm(spectrum.view(batch, slots, in_width).transpose(0, 1), mixing, out=product.transpose(0, 1))
        if bias is not None:
            # A constant over time is n times itself at frequency 0 (slot 0's real part): a (batch, out)
            # add instead of a pass over the output.
            product[:, 0, : out_width // 2] += bias * n
        ctx.save_for_backward(spectrum, mixing, forward, inverse)
        return torch.bmm(inverse.expand(batch, -1, -1), product.view(batch, 2 * slots, out_width // 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        spectrum, mixing, forward, inverse = ctx.saved_tensors
        batch = grad_y.shape[0]
        slots, in_width, out_width = mixing.shape
        grad_y = grad_y.contiguous()
        grad_product = torch.bmm(inverse.t().expand(batch, -1, -1), grad_y).view(batch, slots, out_width)
        grad_x = grad_mixing = grad_bias = None
        if ctx.needs_input_grad[1]:
            per_slot = spectrum.view(batch, slots, in_width).permute(1, 2, 0)  # (slots, 2 in, batch)
            grad_mixing = torch.bmm(per_slot, grad_product.transpose(0, 1))
        if ctx.needs_input_grad[2]:
            grad_bias = grad_y.sum((0, 1))
        if ctx.needs_input_grad[0]:
            grad_spectrum = grad_y.new_empty(batch, slots, in_width)
            torch.bmm(grad_product.transpose(0, 1), mixing.transpose(1, 2), out=grad_spectrum.transpose(0, 1))
            grad_x = torch.bmm(forward.t().expand(batch, -1, -1), grad_spectrum.view(batch, 2 * slots, in_width // 2))
        return grad_x, grad_mixing, grad_bias, None, None, None


def _spectral_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, left: int, right: int, stride: int
) -> torch.Tensor:
    """``time_conv`` as a circular cross-correlation on n >= steps + max(left, right) points.

    ``y[t] = sum_k w[k] x[t + k - left]``: with x zero beyond its end up to n, no output step reads a
    wrapped-around input. Per frequency f, ``Y_f = X_f K_f`` with ``K_f = sum_k w[k] exp(i 2 pi f (k - left) / n)``,
    written as the real product ``[Re X, Im X] @ [[Re K, Im K], [-Im K, Re K]]``.
    """
    steps = x.shape[1]
    out_channels, in_channels, taps = weight.shape
    out_steps = output_steps(steps, taps, left, right, stride)
    n = _circle_points(steps, left, right)
    forward, inverse, phases = _fourier_tables(steps, out_steps, n, taps, left, stride, x.dtype, x.device)
    blocks = torch.einsum("oik,fjk->fjio", weight, phases)  # (slots, 4 blocks, in, out)
    blocks = blocks.view(n // 2, 2, 2, in_channels, out_channels).transpose(2, 3)
    mixing = blocks.reshape(n // 2, 2 * in_channels, 2 * out_channels)
    return _FrequencyMix.apply(x.contiguous(), mixing, bias, forward, inverse, n)


def multi_kernel_conv(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None], paddings: Sequence[int]
) -> torch.Tensor:
    """Several same-padded (odd kernel, padding = kernel // 2) convolutions of one input, outputs concatenated.

    Where the spectral path pays for the widest kernel, the kernels are zero-padded to one centred window
    and applied as a single convolution (its cost does not grow with the kernel length), so the input is
    transformed once; otherwise one ``time_conv`` each.
    """
    reach = max(paddings)
    same = all(w.shape[-1] == 2 * p + 1 for w, p in zip(weights, paddings))
    combined = torch.cat([F.pad(w, (reach - p, reach - p)) for w, p in zip(weights, paddings)]) if same else None
    if combined is None or not _use_spectral(x, combined, reach, reach, 1):
        return torch.cat([time_conv(x, w, b, padding=p) for w, b, p in zip(weights, biases, paddings)], dim=-1)
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([x.new_zeros(w.shape[0]) if b is None else b for w, b in zip(weights, biases)])
    return time_conv(x, combined, bias, padding=reach)


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
