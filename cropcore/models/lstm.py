"""LSTM classifier of the BreizhCrops benchmark.

Source: Rußwurm et al., "BreizhCrops: a time series dataset for crop type mapping", ISPRS Archives
XLIII-B2-2020, section 3 (after Hochreiter & Schmidhuber 1997); reference implementation
``breizhcrops.models.LSTM`` (MIT).

Input layout: ``(batch, time, bands)`` reflectance 0-1. A layer-normed input feeds a (bidirectional)
multi-layer LSTM without biases; the final *cell* states of every layer and direction are concatenated,
layer-normed and classified. Parameter names equal the reference's, so official checkpoints load with
``strict=True``.

Fixes and changes against the reference:
    - ``use_layernorm=False`` crashed in the reference (``clayernorm`` was used but never built); here both
      norms become identities.
    - Inference, and everything on CUDA or under autocast, runs PyTorch's fused ``nn.LSTM`` (oneDNN on CPU,
      cuDNN on CUDA), as the reference does. CPU inference runs it on blocks of 128 parcels
      (``inference_block``): a whole batch of 1 024 takes 450-780 MB of fresh buffers per pass (counted as
      page faults), which the operating system maps in again at every pass, where a block's buffers are
      reused by the next block and stay in cache (1.3-1.45x the reference's inference against 1.05x before,
      ``benchmarks/RESULTS.md``). With several threads the batch is first cut into one slice per thread, each
      run single-threaded (``inference_slices``): oneDNN's LSTM scales poorly across threads at these sizes, and
      two single-threaded halves took 12-25 % less time than one two-threaded pass (A/B runs).
    - CPU training runs one layer at a time, with the dropout between layers drawn by ``dense_dropout`` (a
      third of ``F.dropout``'s cost at p = 0.57 on these (45, 1 024, 256) outputs). Each layer is
      ``lstm_layer`` (same arithmetic, hand-written backward pass): ``nn.LSTM``'s training kernel takes its
      workspaces afresh at every call, which a default process maps in again page by page (about 1.1 million
      page faults per step at batch 1 024), where ``lstm_layer`` keeps its buffers for the next step until
      the model is switched to eval mode. Where the process keeps freed memory itself (the ``cropcore``
      commands, ``cropcore.memory``) the fused kernel is used instead: without the page faults its
      arithmetic is about 13 % faster. Training ran 1.1x the reference's speed with the fused kernel in a
      default process, 1.4-1.6x with ``lstm_layer`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropcore.memory import freed_memory_kept
from cropcore.models.base import TimeSeriesClassifier
from cropcore.models.dropout import dense_dropout
from cropcore.models.lstm_layer import Workspace, lstm_layer


class LSTM(TimeSeriesClassifier):
    """Multi-layer (bi)LSTM classifying from the concatenated final cell states.

    Args:
        input_dim: Number of spectral bands D.
        num_classes: Number of classes.
        sequence_length: Nominal number of time steps (any length works).
        hidden_dims: Hidden size per direction.
        num_layers: Stacked LSTM layers.
        dropout: Dropout between LSTM layers (training only).
        bidirectional: Run a second, time-reversed LSTM per layer.
        use_layernorm: Layer-norm the input and the concatenated cell states.
    """

    inference_block = 128
    inference_slices = True  # oneDNN's LSTM: two single-threaded halves beat one two-threaded pass

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        sequence_length: int,
        *,
        hidden_dims: int = 128,
        num_layers: int = 4,
        dropout: float = 0.5713020228087161,
        bidirectional: bool = True,
        use_layernorm: bool = True,
    ) -> None:
        super().__init__(input_dim, num_classes, sequence_length)
        self.check_positive_ints(hidden_dims=hidden_dims, num_layers=num_layers)
        self.check_dropout(dropout)
        directions = 2 if bidirectional else 1
        state_dims = hidden_dims * directions * num_layers
        self.use_layernorm = bool(use_layernorm)
        self.inlayernorm: nn.Module = nn.LayerNorm(input_dim) if use_layernorm else nn.Identity()
        self.clayernorm: nn.Module = nn.LayerNorm(state_dims) if use_layernorm else nn.Identity()
        self.lstm = nn.LSTM(
            input_size=input_dim,
            hidden_size=hidden_dims,
            num_layers=num_layers,
            bias=False,
            batch_first=True,
            dropout=float(dropout) if num_layers > 1 else 0.0,
            bidirectional=bool(bidirectional),
        )
        self.linear_class = nn.Linear(state_dims, num_classes, bias=True)
        self._workspace = Workspace()

    def train(self, mode: bool = True) -> LSTM:
        if not mode:  # the training buffers (about 1.5 GB at batch 1 024) are not needed until training resumes
            self._workspace.clear()
        return super().train(mode)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, bands) -> (batch, num_classes) log-probabilities."""
        lstm = self.lstm
        if (self.training and torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu")):
            cell = self._cell_states_layer_by_layer(self.inlayernorm(x))
        else:
            _, (_, cell) = lstm(self.inlayernorm(x))
        # cell: (layers * directions, batch, hidden) -> (batch, layers * directions * hidden), layer-major.
        states = cell.transpose(0, 1).reshape(x.shape[0], -1)
        return F.log_softmax(self.linear_class(self.clayernorm(states)), dim=-1)

    def _cell_states_layer_by_layer(self, x: torch.Tensor) -> torch.Tensor:
        """Training on the CPU, one layer at a time, with the dropout between layers drawn by ``dense_dropout``
        instead of one Bernoulli variate per element. Each layer is ``lstm_layer`` (buffers kept between steps),
        or the fused kernel where the process keeps freed memory anyway (``cropcore.memory``), since its
        arithmetic is faster once its workspaces need not be mapped in again (628 against 719 ms for a
        (45, 1 024, 256) bidirectional layer, forward and backward). Returns the final cell states
        (layers * directions, batch, hidden), ordered as ``nn.LSTM``'s."""
        lstm = self.lstm
        suffixes = ("", "_reverse")[: 2 if lstm.bidirectional else 1]
        fused = freed_memory_kept()
        zeros = x.new_zeros(len(suffixes), x.shape[0], lstm.hidden_size) if fused else None  # initial states
        x = x.transpose(0, 1).contiguous()  # time-major: each step's rows are contiguous
        cells = []
        for layer in range(lstm.num_layers):
            if layer:
                x = dense_dropout(x, lstm.dropout)
            weights = [getattr(lstm, f"weight_{kind}_l{layer}{suffix}") for suffix in suffixes for kind in ("ih", "hh")]
            if fused:
                x, _, cell = torch.lstm(x, (zeros, zeros), weights, False, 1, 0.0, True, lstm.bidirectional, False)
            else:
                x, cell = lstm_layer(x, weights, self._workspace)
            cells.append(cell)
        return torch.cat(cells)
