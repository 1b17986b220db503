"""CPU inference in slices of the batch, one single-threaded slice per thread (``cropcore.models.slices``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from cropcore import models
from cropcore.models.slices import MIN_SLICE, sliced_inference


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _recording(calls: list[tuple[int, int, int, bool]]):
    """A classifier stand-in that records (rows, thread, thread count, grad mode) of every call."""

    def classify(x: torch.Tensor) -> torch.Tensor:
        calls.append((len(x), threading.get_ident(), torch.get_num_threads(), torch.is_grad_enabled()))
        return x.sum(dim=(1, 2)).unsqueeze(1) * 2
    return classify


def test_slices_run_single_threaded_on_two_threads_and_restore_the_count(two_threads: None) -> None:
    calls: list[tuple[int, int, int, bool]] = []
    x = torch.rand(2 * MIN_SLICE + 1, 3, 2)
    with torch.no_grad():
        out = sliced_inference(_recording(calls), x)
    torch.testing.assert_close(out, x.sum(dim=(1, 2)).unsqueeze(1) * 2)
    assert sorted(rows for rows, *_ in calls) == [MIN_SLICE, MIN_SLICE + 1]
    assert len({thread for _, thread, _, _ in calls}) == 2
    assert all(count == 1 and not grad for _, _, count, grad in calls)
    assert torch.get_num_threads() == 2


def test_a_small_batch_or_one_thread_runs_whole(two_threads: None) -> None:
    calls: list[tuple[int, int, int, bool]] = []
    with torch.no_grad():
        sliced_inference(_recording(calls), torch.rand(2 * MIN_SLICE - 1, 3, 2))
        torch.set_num_threads(1)
        sliced_inference(_recording(calls), torch.rand(4 * MIN_SLICE, 3, 2))
    assert [rows for rows, *_ in calls] == [2 * MIN_SLICE - 1, 4 * MIN_SLICE]
    assert {thread for _, thread, _, _ in calls} == {threading.get_ident()}


@pytest.mark.parametrize("failing_slice", [0, 1])
def test_an_error_in_a_slice_reaches_the_caller_and_the_count_is_restored(two_threads: None, failing_slice: int) -> None:
    x = torch.rand(2 * MIN_SLICE, 3, 2)
    first = x[0].clone() if failing_slice == 0 else x[MIN_SLICE].clone()

    def classify(part: torch.Tensor) -> torch.Tensor:
        if torch.equal(part[0], first):
            raise RuntimeError("parcel went wrong")
        return part.sum(dim=(1, 2)).unsqueeze(1)

    with torch.no_grad(), pytest.raises(RuntimeError, match="parcel went wrong"):
        sliced_inference(classify, x)
    assert torch.get_num_threads() == 2
    with torch.no_grad():  # the window was released
        assert sliced_inference(lambda part: part[:, 0, :1], x).shape == (2 * MIN_SLICE, 1)


def test_lstm_inference_in_slices_equals_the_whole_batch(two_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LSTM slices only no-grad eval passes outside autocast, and the slices (each in blocks) give the whole
    batch's result."""
    torch.manual_seed(0)
    model = models.build("LSTM", input_dim=5, num_classes=4, sequence_length=9, hidden_dims=16, num_layers=2).eval()
    assert model.inference_slices and model.inference_block == 128
    x = torch.rand(300, 9, 5)
    calls: list[int] = []
    classify = model.classify
    monkeypatch.setattr(model, "classify", lambda part: calls.append(len(part)) or classify(part))
    with torch.no_grad():
        sliced = model(x)
        assert sorted(calls) == [22, 22, 128, 128]
        calls.clear()
        model.inference_slices = False
        whole = model(x)
        assert calls == [128, 128, 44]
    torch.testing.assert_close(sliced, whole, atol=1e-6, rtol=0)
    model.inference_slices = True
    calls.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    model(x)  # autograd on: one pass
    assert calls == [128, 128, 44, 300]
