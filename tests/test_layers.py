"""The shared layers' faster arithmetic equals the plain one: FFT convolutions and cheaper dropout masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cropcore.models import layers
from cropcore.models.dropout import dense_dropout, kept_mask, sparse_dropout


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]) -> torch.Tensor:
    return F.conv1d(F.pad(x.transpose(1, 2), padding), weight, bias).transpose(1, 2)


@pytest.mark.parametrize("kernel", [15, 17, 41])
@pytest.mark.parametrize("padding", [(0, 0), (8, 8), (3, 11), (20, 0), (0, 20)])
def test_fft_convolution_equals_direct_convolution(kernel: int, padding: tuple[int, int]) -> None:
    torch.manual_seed(kernel)
    x = torch.randn(3, 45, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 6, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert layers._use_fft(x, kernel, weight.dtype, stride=1)
    got, expected = layers.time_conv(x, weight, bias, padding=padding), _direct(x, weight, bias, padding)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    grad = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(got, (x, weight, bias), grad),
                    torch.autograd.grad(expected, (x, weight, bias), grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_fft_convolution_refuses_a_kernel_longer_than_the_series() -> None:
    with pytest.raises(ValueError, match="41-tap kernel is longer than the padded series"):
        layers.time_conv(torch.randn(2, 10, 3), torch.randn(4, 3, 41), padding=(5, 5))


def test_fft_only_where_it_pays_and_is_exact_enough() -> None:
    x, long_kernel = torch.randn(2, 45, 4), torch.randn(3, 4, layers.FFT_MIN_KERNEL)
    taps = layers.FFT_MIN_KERNEL
    assert layers._use_fft(x, taps, long_kernel.dtype, stride=1)
    assert not layers._use_fft(x, taps - 1, long_kernel.dtype, stride=1)  # short kernels: direct is faster
    assert not layers._use_fft(x, taps, long_kernel.dtype, stride=2)
    assert not layers._use_fft(x.half(), taps, torch.half, stride=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layers._use_fft(x, taps, long_kernel.dtype, stride=1)


def test_kernels_sharing_one_transform_equal_separate_convolutions() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 45, 8, dtype=torch.float64)
    weights = [torch.randn(3, 8, k, dtype=torch.float64) for k in (41, 21, 11)]
    biases = [None, torch.randn(3, dtype=torch.float64), None]
    paddings = [20, 10, 5]
    expected = torch.cat([_direct(x, w, b, (p, p)) for w, b, p in zip(weights, biases, paddings)], dim=-1)
    torch.testing.assert_close(layers.multi_kernel_conv(x, weights, biases, paddings), expected, rtol=0, atol=1e-10)
    # Even kernels cannot share one centred window: each is convolved on its own, same result.
    even = [torch.randn(3, 8, 20, dtype=torch.float64), torch.randn(3, 8, 10, dtype=torch.float64)]
    expected = torch.cat([_direct(x, w, None, (p, p)) for w, p in zip(even, (10, 5))], dim=-1)
    torch.testing.assert_close(layers.multi_kernel_conv(x, even, [None, None], [10, 5]), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("p", [0.05, 0.18203942949809093, 0.5, 0.9])
def test_dropout_masks_drop_with_probability_p(p: float) -> None:
    torch.manual_seed(1)
    numel = 2_000_003  # not a multiple of the four mask lanes per random word
    kept = kept_mask(torch.Size([numel]), p)
    assert kept.shape == (numel,) and kept.dtype == torch.bool
    rate = 1 - kept.float().mean().item()
    assert abs(rate - p) < 5 * (p * (1 - p) / numel) ** 0.5 + 2**-16
    # Neighbouring lanes of one random word are independent.
    pairs = kept[: numel - 1].float() * kept[1:].float()
    assert abs(pairs.mean().item() - (1 - p) ** 2) < 0.003


@pytest.mark.parametrize("dropout", [dense_dropout, sparse_dropout])
def test_dropout_scales_kept_values_and_routes_gradients(dropout) -> None:
    torch.manual_seed(2)
    x = (torch.rand(300, 70) + 0.5).requires_grad_()
    y = dropout(x, 0.3)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
    assert dropout(x, 0.3, training=False) is x
    torch.manual_seed(3)
    first = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.3))  # seeded like every torch random draw
