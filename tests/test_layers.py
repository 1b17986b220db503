"""The shared layers' faster arithmetic equals the plain one: spectral convolutions and cheaper dropout masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cropcore.models import layers
from cropcore.models.dropout import dense_dropout, kept_mask, sparse_dropout


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int],
            stride: int = 1) -> torch.Tensor:
    return F.conv1d(F.pad(x.transpose(1, 2), padding), weight, bias, stride=stride).transpose(1, 2)


def _assert_equals_direct(conv, steps: int, kernel: int, padding: tuple[int, int], stride: int,
                          atol: float) -> None:
    """``conv(x, weight, bias, left, right, stride)`` against ``F.conv1d`` in float64: output and gradients."""
    x = torch.randn(3, steps, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 4, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    got = conv(x, weight, bias, *padding, stride)
    expected = _direct(x, weight, bias, padding, stride)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    grad = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(got, (x, weight, bias), grad),
                    torch.autograd.grad(expected, (x, weight, bias), grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("kernel", [1, 2, 3, 7, 15, 41])
@pytest.mark.parametrize("padding", [(0, 0), "same", (3, 11), (20, 0), (0, 20)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_spectral_convolution_equals_direct_convolution(kernel: int, padding, stride: int) -> None:
    torch.manual_seed(kernel)
    padding = (kernel // 2, kernel // 2) if padding == "same" else padding
    _assert_equals_direct(layers._spectral_conv, 45, kernel, padding, stride, atol=1e-10)


GROUPED_CASES = [(steps, kernel, padding, stride) for steps in (1, 7, 61, 128) for kernel in (2, 3, 5, 7)
                 for padding in ((0, 0), (1, 1), (3, 3), (0, 3), (1, 4)) for stride in (2, 3)
                 if steps + sum(padding) >= kernel]


@pytest.mark.parametrize(("steps", "kernel", "padding", "stride"), GROUPED_CASES)
def test_strided_convolution_over_grouped_steps_equals_direct_convolution(steps: int, kernel: int, padding,
                                                                           stride: int) -> None:
    torch.manual_seed(steps + kernel)
    _assert_equals_direct(layers._grouped_steps_conv, steps, kernel, padding, stride, atol=1e-12)


def test_strided_convolutions_on_the_cpu_run_over_grouped_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    grouped = layers._grouped_steps_conv
    monkeypatch.setattr(layers, "_grouped_steps_conv", lambda *args: calls.append(args[-1]) or grouped(*args))
    x, weight = torch.randn(2, 128, 32), torch.randn(32, 32, 5)
    torch.testing.assert_close(layers.time_conv(x, weight, stride=2, padding=1), _direct(x, weight, None, (1, 1), 2),
                               rtol=1e-5, atol=1e-5)
    layers.time_conv(x, weight, padding=1)  # stride 1
    layers.time_conv(x, weight[..., :1], stride=2)  # 1x1: subsampled instead
    assert calls == [2]


def test_spectral_convolution_in_float32_stays_within_rounding_of_the_exact_result() -> None:
    torch.manual_seed(5)
    x = torch.randn(16, 45, 128)
    weight = torch.randn(128, 128, 7) / (128 * 7) ** 0.5
    assert layers._use_spectral(x, weight, 3, 3, 1)
    got = layers.time_conv(x, weight, padding=3)
    exact = _direct(x.double(), weight.double(), None, (3, 3))
    assert ((got.double() - exact).abs().max() / exact.abs().max()).item() < 1e-6


def test_a_kernel_longer_than_the_padded_series_is_refused() -> None:
    with pytest.raises(ValueError, match="41-tap kernel is longer than the padded series"):
        layers.time_conv(torch.randn(2, 10, 3), torch.randn(4, 3, 41), padding=(5, 5))


def test_spectral_path_only_where_it_saves_enough_and_is_exact_enough() -> None:
    x = torch.randn(2, 45, 128)
    tempcnn, three_taps, few_bands = torch.randn(128, 128, 7), torch.randn(128, 128, 3), torch.randn(128, 13, 7)
    assert layers._use_spectral(x, tempcnn, 3, 3, 1)
    assert not layers._use_spectral(x, three_taps, 1, 1, 1)  # about as costly either way
    assert not layers._use_spectral(x[..., :13], few_bands, 3, 3, 1)  # the transforms cost as much as they save
    # Backward passes of direct convolutions run further from the machine's peak: a lower bar in training.
    middle, five_taps = x[..., :64], torch.randn(64, 64, 5)
    gain = layers.spectral_gain(45, 45, 47, 5, 64, 64)
    assert layers.SPECTRAL_MIN_GAIN["training"] <= gain < layers.SPECTRAL_MIN_GAIN["inference"]
    assert not layers._use_spectral(middle, five_taps, 2, 2, 1)
    assert layers._use_spectral(middle, five_taps.requires_grad_(), 2, 2, 1)
    with torch.no_grad():
        assert not layers._use_spectral(middle, five_taps, 2, 2, 1)
    assert not layers._use_spectral(x.half(), tempcnn.half(), 3, 3, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layers._use_spectral(x, tempcnn, 3, 3, 1)


def test_kernels_sharing_one_transform_equal_separate_convolutions() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 45, 8, dtype=torch.float64)
    weights = [torch.randn(3, 8, k, dtype=torch.float64) for k in (41, 21, 11)]
    biases = [None, torch.randn(3, dtype=torch.float64), None]
    paddings = [20, 10, 5]
    assert layers._use_spectral(x, torch.randn(9, 8, 41, dtype=torch.float64), 20, 20, 1)
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
