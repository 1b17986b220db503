"""A network's training forward and backward replayed as CUDA graphs.

At batch 1024 these networks are small: on a GPU, launching their hundreds of kernels (the recurrent nets
launch a few per time step and layer) costs more than running them. Capturing the forward and backward
once and replaying them per batch removes that overhead (measured on an H100 with full batches of 1024:
StarRNN 19 -> 97 batches/s, MSResNet 43 -> 174; see benchmarks/RESULTS.md).

Only training-mode calls with the captured batch shape replay the graphs; any other shape (the last,
smaller batch of an epoch) and evaluation run the network eagerly, on the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _bf16_autocast() -> torch.autocast:
    # Graphs may not use autocast's cast cache (its cached casts would outlive the capture).
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)


def graphed_forward(network: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward(x)`` for training: graph replay for ``example``'s shape, eager otherwise (bf16 autocast).

    ``network`` must be on the GPU and in training mode. Capturing runs a few warm-up passes on
    ``example``; the network's buffers (batch-norm running statistics) are restored afterwards, so the
    capture leaves no trace in the model. Gradients accumulate into ``.grad`` as in eager mode.
    """
    if not network.training:
        raise ValueError("capture the training forward with the network in training mode")
    state = network.state_dict()  # persistent buffers only: caches (e.g. resampling indices) may fill lazily
    buffers = {name: value.detach().clone() for name, value in network.named_buffers() if name in state}
    # The capture's warm-up creates the gradient accumulators on a side stream, so later backwards warn that
    # their stream differs; the measured replay speed already includes that, so the warning adds nothing.
    quiet = getattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch", None)
    if quiet is not None:
        quiet(False)
    with _bf16_autocast():
        torch.cuda.make_graphed_callables(network, (example,))
    graphed = network.forward
    del network.forward  # the module itself stays eager: evaluation, checkpoints and odd-sized batches
    with torch.no_grad():
        for name, value in network.named_buffers():
            if name in buffers:
                value.copy_(buffers[name])
    shape = example.shape

    def forward(x: torch.Tensor) -> torch.Tensor:
        with _bf16_autocast():
            if x.shape == shape and network.training:
                return graphed(x)
            return network(x)

    return forward


class TrainingForward:
    """The training loop's forward: bf16 autocast on CUDA, replaying graphs for the first batch shape met.

    That is the full batch size in every epoch of a real dataset; the last, smaller batch of an epoch runs
    eagerly. (Capturing a second shape of the same network was measured to corrupt StarRNN's replays, so
    one shape is captured.) Graphs are used only on a single CUDA device (not under
    DistributedDataParallel, whose gradient all-reduce hooks cannot be captured this way) and when
    ``use_graphs`` is true.
    """

    MAX_SHAPES = 1

    def __init__(self, model: nn.Module, device: str, use_graphs: bool) -> None:
        self.model = model
        self.on_cuda = str(device).startswith("cuda")
        self.use_graphs = use_graphs and self.on_cuda and not isinstance(model, nn.parallel.DistributedDataParallel)
        self.graphed: dict[torch.Size, Callable[[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_graphs and x.shape not in self.graphed and len(self.graphed) < self.MAX_SHAPES:
            self.graphed[x.shape] = graphed_forward(self.model, x)
        if x.shape in self.graphed:
            return self.graphed[x.shape](x)
        if self.on_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model(x)
        return self.model(x)
