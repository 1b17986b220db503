"""MSResNet's stem computed at the original time steps instead of the 512-step stretch.

The reference stretches every series to 512 steps (nearest neighbour: each of the 45 steps repeated 11 or
12 times), then applies a 7-tap convolution of stride 2, batch norm, ReLU and a max pooling of 3 with
stride 2. Because of the repetition, every 7-tap window reads at most two original steps j and j + 1 (up to
85 steps): its output is ``A_s x[j] + B_s x[j+1]``, where ``A_s`` sums the s taps that land on step j and
``B_s`` the other 7 - s. So one product of the (steps + 1) two-step windows with the seven (A_s, B_s) pairs
gives a *table* of every value the convolution can produce, and the pooled output picks three table rows
per output step. This module computes that, in blocks of parcels whose table stays in the caches:

- ``inference_stem``: eval mode, batch norm folded into the pairs (10-14 ms instead of 34-39 ms per batch
  of 1 024 on 2 cores).
- ``training_stem``: train mode, an autograd function with a hand-written backward pass. The batch norm's
  statistics over the 256 stretched positions come from each window's Gram matrix weighted by how often the
  stretch uses it, so the 256-step activations never exist; the backward pass routes each pooled gradient to
  the table row that won the maximum and reduces it with one product per block (about 60 ms forward and
  backward instead of 170-210 ms).

Both equal the stretched computation to float rounding (``tests/test_models.py``). From 86 steps on a
window can read three steps, ``pool_rows`` returns None and the caller stretches as the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.models.layers import cached_tables, fold_batch_norm

RESAMPLED_LENGTH = 512
"""The reference stretches every series to this many steps before the first convolution."""
STEM_KERNEL, STEM_STRIDE, STEM_PADDING = 7, 2, 3
"""The first convolution's shape (the reference's, fixed)."""
STEM_BLOCK = 64
"""Parcels per block, so that a block's table stays in the CPU caches (64-256 measured)."""


@cached_tables(maxsize=16)
def resample_index(steps: int) -> torch.Tensor:
    """Which original step each of the 512 stretched steps repeats: the indices of ``F.interpolate``'s
    nearest mode, which the reference uses."""
    positions = torch.arange(steps, dtype=torch.float32).view(1, 1, steps)
    return F.interpolate(positions, size=RESAMPLED_LENGTH, mode="nearest").view(-1).long()


@cached_tables(maxsize=16)
def stem_rows(steps: int) -> torch.Tensor | None:
    """The table row of each of the 256 stem positions, or None where a window reads three steps.

    Steps are counted with a zero step added at both ends (the convolution's zero padding), and row
    ``7 j + s - 1`` of the table is the window whose first s taps read padded step j and the others j + 1.
    """
    source = resample_index(steps) + 1
    source = torch.cat([source.new_zeros(STEM_PADDING), source, source.new_full((STEM_PADDING,), steps + 1)])
    windows = source.unfold(0, STEM_KERNEL, STEM_STRIDE)  # (256, 7): the padded step each tap reads
    first = windows[:, :1]
    on_first = (windows == first).sum(1, keepdim=True)
    if not torch.equal(windows, torch.where(torch.arange(STEM_KERNEL) < on_first, first, first + 1)):
        return None
    return (first * STEM_KERNEL + on_first - 1).view(-1)


@cached_tables(maxsize=16)
def pool_rows(steps: int) -> torch.Tensor | None:
    """(128, 3): the table rows of the three stem positions each max-pooled step reads (None: see
    ``stem_rows``). ``max_pool1d(3, stride 2, padding 1)``: output p reads positions 2p - 1, 2p, 2p + 1 that
    exist; a missing one repeats its neighbour, which changes no maximum."""
    rows = stem_rows(steps)
    if rows is None:
        return None
    centre = 2 * torch.arange((rows.numel() - 1) // 2 + 1)
    neighbours = (centre - 1).clamp(min=0), centre, (centre + 1).clamp(max=rows.numel() - 1)
    return torch.stack([rows[at] for at in neighbours], 1)


def pair_weights(weight: torch.Tensor) -> torch.Tensor:
    """(2 bands, 7 hidden): column ``(s - 1) * hidden + h`` holds (A_s, B_s) of output channel h, from the
    convolution's (hidden, bands, 7) weight. Differentiable."""
    hidden, bands, taps = weight.shape
    first_taps = weight.cumsum(-1)  # [..., s - 1]: the sum of the first s taps
    pair = torch.cat([first_taps, first_taps[..., -1:] - first_taps], 1)  # (hidden, 2 bands, 7)
    return pair.permute(1, 2, 0).reshape(2 * bands, taps * hidden)


def _windows(x: torch.Tensor) -> torch.Tensor:
    """(batch, steps + 1, 2 bands): every two consecutive steps of x padded with a zero step at both ends."""
    batch, steps, bands = x.shape
    padded = F.pad(x, (0, 0, 1, 1))
    return padded.as_strided((batch, steps + 1, 2 * bands), (padded.stride(0), bands, 1))


def _table(x: torch.Tensor, pair: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The table (batch, 7 (steps + 1), hidden) of every window's output for a block x, and its windows
    flattened to (batch (steps + 1), 2 bands)."""
    windows = _windows(x).reshape(-1, pair.shape[0])
    return torch.addmm(bias, windows, pair).view(x.shape[0], -1, bias.numel() // STEM_KERNEL), windows


def _pool(x: torch.Tensor, pair: torch.Tensor, bias: torch.Tensor, candidates: torch.Tensor,
          out: torch.Tensor, *, time_major: bool) -> torch.Tensor:
    """relu(max of the three candidate rows), block by block, into ``out``: (batch, 128, hidden) if
    ``time_major``, else (batch, hidden, 128). ``bias`` is repeated for the seven pairs."""
    flat = candidates.view(-1)
    for start in range(0, x.shape[0], STEM_BLOCK):
        part = x[start : start + STEM_BLOCK]
        n = part.shape[0]
        table = _table(part, pair, bias)[0]
        pooled = table.index_select(1, flat).view(n, candidates.shape[0], 3, -1).amax(2).relu_()
        out[start : start + n].copy_(pooled if time_major else pooled.transpose(1, 2))
    return out


def inference_stem(x: torch.Tensor, weight: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Eval-mode stem of (batch, time, bands) at the original steps -> (batch, hidden, 128).

    The caller checks ``pool_rows(time)`` is not None. The batch norm is folded into the pairs first, so
    negative scales are safe (they must be applied before the maximum).
    """
    candidates = pool_rows(x.shape[1])
    folded, bias = fold_batch_norm(weight, None, bn)
    out = x.new_empty(x.shape[0], weight.shape[0], candidates.shape[0])
    return _pool(x, pair_weights(folded), bias.repeat(STEM_KERNEL), candidates, out, time_major=False)


def training_stem(x: torch.Tensor, weight: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Train-mode stem of (batch, time, bands) -> (batch, 128, hidden), time-major, with the batch norm's
    batch statistics and running-statistics update as ``nn.BatchNorm1d`` computes them.

    The caller checks ``pool_rows(time)`` is not None, that x needs no gradient and that ``bn`` is affine
    and tracks running statistics.
    """
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return _TrainingStem.apply(
        x, pair_weights(weight), bn.weight, bn.bias, bn.running_mean, bn.running_var, momentum, bn.eps
    )


class _TrainingStem(torch.autograd.Function):
    """Forward and backward of ``training_stem``.

    Notation: W[b, j] the two-step window j of parcel b, P_s = (A_s, B_s) the pairs, c[j, s] how many of
    the N / batch = 256 stem positions read table row (j, s), z the convolution's output at a position.

    Statistics, per channel, without forming z: ``sum z = sum_s (sum_j c[j, s] sum_b W[b, j]) . P_s`` and
    ``sum z^2 = sum_s P_s^T (sum_j c[j, s] G_j) P_s`` with the Gram matrices ``G_j = sum_b W[b, j]^T W[b, j]``,
    in float64 (the difference of the two moments would lose digits in float32).

    Backward: g, the gradient of the pooled output, goes (ReLU mask applied) to the row that won each
    maximum (the first of equal ones, as ``max_pool1d``), giving a per-row gradient g_r; its product with
    the windows, Q_s = sum W^T g_r, and the two sums of batch norm's backward pass give the pairs' gradient:
    ``a (Q_s - S_s sum(g) / N - invstd (C_s P_s - S_s mean) sum(g zhat) / N)`` with a = gamma invstd,
    S_s = sum_j c[j, s] sum_b W[b, j], C_s = sum_j c[j, s] G_j and ``sum(g zhat) = invstd (sum_s P_s . Q_s -
    mean sum(g))``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pair: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                running_mean: torch.Tensor, running_var: torch.Tensor, momentum: float, eps: float) -> torch.Tensor:
        batch, steps, bands = x.shape
        hidden = gamma.numel()
        rows, candidates = stem_rows(steps), pool_rows(steps)
        count = rows.numel() * batch
        uses = torch.bincount(rows, minlength=(steps + 1) * STEM_KERNEL).view(steps + 1, STEM_KERNEL).double()
        windows = _windows(x).double()
        sums = uses.t() @ windows.sum(0)  # (7, 2 bands): S_s
        gram = torch.einsum("bjk,bjl->jkl", windows, windows).view(steps + 1, -1)  # G_j
        grams = (uses.t() @ gram).view(STEM_KERNEL, 2 * bands, 2 * bands)  # C_s
        pairs = pair.double().view(2 * bands, STEM_KERNEL, hidden).transpose(0, 1)  # (7, 2 bands, hidden)
        mean = torch.einsum("sk,skh->h", sums, pairs) / count
        var = (torch.einsum("skh,skl,slh->h", pairs, grams, pairs) / count - mean * mean).clamp(min=0)
        invstd = torch.rsqrt(var + eps)
        scale = gamma.double() * invstd
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        unbiased = var * (count / max(count - 1, 1))
        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        folded = (pairs * scale).transpose(0, 1).reshape_as(pair).to(x.dtype)
        bias = (beta.double() - mean * scale).to(x.dtype).repeat(STEM_KERNEL)
        out = x.new_empty(batch, candidates.shape[0], hidden)
        _pool(x, folded, bias, candidates, out, time_major=True)
        ctx.save_for_backward(x, out, folded, bias, sums, grams, pairs, mean, invstd, scale)
        ctx.count = count
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, out, folded, bias, sums, grams, pairs, mean, invstd, scale = ctx.saved_tensors
        candidates = pool_rows(x.shape[1])
        first, second, third = (candidates[:, k].contiguous() for k in range(3))
        windows_per_parcel = x.shape[1] + 1
        products = folded.new_zeros(folded.shape)  # Q, in the layout of pair
        grad_sum = folded.new_zeros(out.shape[2])
        for start in range(0, x.shape[0], STEM_BLOCK):
            pooled = out[start : start + STEM_BLOCK]
            n = pooled.shape[0]
            grad = grad_out[start : start + n] * (pooled > 0)
            grad_sum += grad.sum((0, 1))
            table, windows = _table(x[start : start + n], folded, bias)
            grad_rows = torch.zeros_like(table)
            for rows in (first, second):  # the first maximum takes the gradient, what is left goes on
                taken = grad * (table.index_select(1, rows) == pooled)
                grad_rows.index_add_(1, rows, taken)
                grad.sub_(taken)
            grad_rows.index_add_(1, third, grad)
            products.addmm_(windows.t(), grad_rows.view(n * windows_per_parcel, -1))
        q = products.double().view(pairs.shape[1], STEM_KERNEL, -1).transpose(0, 1)  # (7, 2 bands, hidden)
        grad_sum = grad_sum.double()
        grad_gamma = invstd * ((pairs * q).sum((0, 1)) - mean * grad_sum)  # sum(g zhat)
        centred = torch.einsum("skl,slh->skh", grams, pairs) - sums[:, :, None] * mean
        grad_pairs = scale * (q - sums[:, :, None] * (grad_sum / ctx.count)
                              - invstd * centred * (grad_gamma / ctx.count))
        grad_pair = grad_pairs.transpose(0, 1).reshape(folded.shape).to(x.dtype)
        return None, grad_pair, grad_gamma.to(x.dtype), grad_sum.to(x.dtype), None, None, None, None
