"""CPU inference on several cores as independent slices of the batch, each slice computed on one thread.

Why: some CPU kernels scale poorly across threads on small per-step work. oneDNN's fused LSTM, for one, runs
the published 4 x 128 biLSTM on 1 024 parcels in about 850 ms with 2 threads, but on 512 parcels in about
680 ms with one: two single-threaded halves side by side beat one two-threaded pass (``benchmarks/RESULTS.md``).
In eval mode every parcel is computed on its own, so the slices give the whole batch's result.

PyTorch's thread count is per thread for its OpenMP kernels but process-wide for MKL and for threads started
later, so the slices run inside a window where the count is 1 everywhere; the window is serialised by a lock
and the caller's count is restored when it closes, also on errors. Other threads of the process that run
PyTorch matrix products during that window run them single-threaded: slower, never different.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import torch

#: Fewer parcels per slice than this are not worth a thread.
MIN_SLICE = 64

_window = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_owner: tuple[int, int] = (0, 0)  # (process id, workers): a forked child must not reuse its parent's pool


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool, _pool_owner
    if _pool is None or _pool_owner != (os.getpid(), count):
        if _pool is not None and _pool_owner[0] == os.getpid():
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(count, thread_name_prefix="cropcore-slice")
        _pool_owner = (os.getpid(), count)
    return _pool


def slice_count(batch: int) -> int:
    """How many slices a batch is cut into: one per thread of the caller, at least ``MIN_SLICE`` parcels each."""
    return max(1, min(torch.get_num_threads(), batch // MIN_SLICE))


def sliced_inference(classify: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``classify(x)`` computed as ``slice_count`` slices of the batch on as many threads, outputs concatenated.

    For no-grad CPU inference outside autocast (the worker threads run under ``torch.no_grad`` and without
    autocast, which are per-thread settings); a call from inside a slice runs whole.
    """
    slices = slice_count(x.shape[0])
    if slices < 2:
        return classify(x)
    parts = x.tensor_split(slices)

    def run(part: torch.Tensor) -> torch.Tensor:
        torch.set_num_threads(1)  # this worker's own OpenMP count, whatever it was started with
        with torch.no_grad():
            return classify(part)

    with _window:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            futures: list[Future[torch.Tensor]] = [_workers(slices - 1).submit(run, part) for part in parts[1:]]
            try:
                first = classify(parts[0])
            finally:
                wait(futures)  # no slice may still run once the thread count is restored
            return torch.cat([first, *(future.result() for future in futures)])
        finally:
            torch.set_num_threads(threads)
