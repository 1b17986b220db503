"""One LSTM layer for CPU training: ``nn.LSTM``'s arithmetic with a hand-written backward pass whose buffers
are kept from one training step to the next.

Why not ``nn.LSTM`` (oneDNN) for training on the CPU: its forward and backward passes allocate their
workspaces afresh at every call, hundreds of MB per layer at batch 1 024. The C library gives blocks that large
back to the operating system when they are freed, so every training step of the published 4 x 128 biLSTM maps
about 4 GB in again, page by page (1.1 million page faults, about 40 % of the step on 2 cores; the same in the
reference, which calls the same kernel). Here a layer's gates, cell states and outputs live in a
``Workspace`` that returns them to the next step once the backward pass has used them, so after the first
step no page is mapped in again. The rest is the textbook recurrence, batched where the arithmetic allows:

- the input projections of all time steps are one matrix product per direction, written straight into the
  gate buffer; the recurrent product is added in place, step by step;
- ``tanh`` is computed as ``2 sigmoid(2 z) - 1``: PyTorch's CPU ``tanh`` is about 5x slower than its
  ``sigmoid`` on these (1 024, 128) blocks. For the cell candidate the factor 2 is folded into its weight
  rows (an exact scaling), so one ``sigmoid`` call covers all four gates;
- the backward pass forms each step's gate gradients in one (steps, batch, 4 x hidden x directions) buffer,
  then computes the input gradient and both weight gradients with one large product each.

Where the process keeps freed memory anyway (``cropcore.memory``), the fused kernel is faster (628 against
719 ms for a (45, 1 024, 256) bidirectional layer, forward and backward, 2 cores) and the LSTM uses it.

Inputs and results are those of ``torch.lstm`` without biases and from zero initial states (what the
BreizhCrops LSTM uses), time-major; ``tests/test_models.py`` checks both passes against it in float64.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class Workspace:
    """Buffers by name, shape and dtype, handed back after a backward pass and reused by the next step.

    A buffer taken and never handed back (a graph dropped without a backward pass) is simply freed; two
    forward passes before one backward pass each get their own. Only the shape handed back last is kept per
    name, so batches of varying shapes (any sequence length works) do not pile up buffers. Copies and pickles
    start empty.
    """

    def __init__(self) -> None:
        self._free: dict[tuple[str, tuple[int, ...], torch.dtype], list[torch.Tensor]] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        free = self._free.get((name, shape, like.dtype))
        return free.pop() if free else like.new_empty(shape)

    def give(self, name: str, tensor: torch.Tensor) -> None:
        key = (name, tuple(tensor.shape), tensor.dtype)
        for stale in [other for other in self._free if other[0] == name and other != key]:
            del self._free[stale]
        self._free.setdefault(key, []).append(tensor)

    def clear(self) -> None:
        self._free.clear()

    def __len__(self) -> int:
        return sum(len(free) for free in self._free.values())

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace()

    def __getstate__(self) -> dict:
        return {"_free": {}}


def lstm_layer(x: torch.Tensor, weights: list[torch.Tensor],
               workspace: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
    """x (steps, batch, input) -> outputs (steps, batch, directions * hidden), final cells (directions, batch,
    hidden). ``weights``: ``weight_ih``, ``weight_hh`` per direction (forward, then reverse), gate rows
    ordered (input, forget, cell, output) as in ``nn.LSTM``.

    The outputs live in ``workspace`` until the backward pass: read them, do not keep them across steps.
    """
    return _Layer.apply(x, workspace, *weights)


def _doubled_cell_rows(weight: torch.Tensor) -> torch.Tensor:
    """The weight with its cell-candidate rows times 2, so that ``sigmoid`` of the product gives
    ``(1 + tanh) / 2`` there."""
    hidden = weight.shape[0] // 4
    doubled = weight.clone()
    doubled[2 * hidden : 3 * hidden] *= 2
    return doubled


def _tanh(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2 x) - 1, into ``out``."""
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


class _Layer(torch.autograd.Function):
    """Forward and backward of ``lstm_layer``; the notation of the comments is that of the LSTM equations:
    i, f, g, o the activated gates, c the cell state, h the output, e the gradient reaching c."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, workspace: Workspace,
                *weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, _ = x.shape
        directions, hidden = len(weights) // 2, weights[1].shape[1]
        gates = workspace.take("gates", (directions, steps, batch, 4 * hidden), x)
        cells = workspace.take("cells", (directions, steps, batch, hidden), x)
        tanh_cells = workspace.take("tanh_cells", (directions, steps, batch, hidden), x)
        outputs = workspace.take("outputs", (steps, batch, directions * hidden), x)
        flat_x = x.reshape(steps * batch, -1)
        recurrent = []
        for d in range(directions):
            torch.mm(flat_x, _doubled_cell_rows(weights[2 * d]).t(), out=gates[d].view(steps * batch, 4 * hidden))
            recurrent.append(_doubled_cell_rows(weights[2 * d + 1]).t())
        for step in range(steps):
            for d in range(directions):
                t, previous = (step, step - 1) if d == 0 else (steps - 1 - step, steps - step)
                columns = slice(d * hidden, (d + 1) * hidden)
                a = gates[d, t]
                if step:
                    a.addmm_(outputs[previous, :, columns], recurrent[d])
                a.sigmoid_()
                i, f, g, o = a.split(hidden, 1)
                g.mul_(2).sub_(1)
                c = cells[d, t]
                if step:
                    torch.mul(f, cells[d, previous], out=c).addcmul_(i, g)
                else:
                    torch.mul(i, g, out=c)
                torch.mul(o, _tanh(c, out=tanh_cells[d, t]), out=outputs[t, :, columns])
        final = torch.stack([cells[d, steps - 1 if d == 0 else 0] for d in range(directions)])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, *weights)
        ctx.workspace, ctx.buffers = workspace, (gates, cells, tanh_cells, outputs)
        return outputs.detach(), final

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs: torch.Tensor | None,
                 grad_final: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if ctx.buffers is None:
            raise RuntimeError("the CPU training LSTM layer supports one backward pass per forward pass "
                               "(its buffers go to the next step); retain_graph is not supported")
        x, *weights = ctx.saved_tensors
        gates, cells, tanh_cells, outputs = ctx.buffers
        workspace, ctx.buffers = ctx.workspace, None
        steps, batch, _ = x.shape
        directions, hidden = len(weights) // 2, weights[1].shape[1]
        grad_gates = workspace.take("gate_grads", (steps, batch, directions * 4 * hidden), x)
        scratch = x.new_empty(batch, hidden)
        grad_h = x.new_zeros(directions, batch, hidden)
        grad_c = grad_final.clone() if grad_final is not None else x.new_zeros(directions, batch, hidden)
        for step in range(steps):
            for d in range(directions):
                t, previous = (steps - 1 - step, steps - 2 - step) if d == 0 else (step, step + 1)
                first = step == steps - 1  # the series' first step in this direction: c and h before it are 0
                h, e = grad_h[d], grad_c[d]
                if grad_outputs is not None:
                    h.add_(grad_outputs[t, :, d * hidden : (d + 1) * hidden])
                i, f, g, o = gates[d, t].split(hidden, 1)
                tanh_c = tanh_cells[d, t]
                grad_block = grad_gates[t, :, d * 4 * hidden : (d + 1) * 4 * hidden]
                di, df, dgg, do = grad_block.split(hidden, 1)
                torch.mul(h, tanh_c, out=do).mul_(o)  # do = h tanh(c) o (1 - o)
                do.addcmul_(do, o, value=-1)
                torch.mul(h, o, out=scratch)  # e += h o (1 - tanh(c)^2)
                e.add_(scratch)
                e.addcmul_(scratch.mul_(tanh_c), tanh_c, value=-1)
                torch.mul(e, g, out=di).mul_(i)  # di = e g i (1 - i)
                di.addcmul_(di, i, value=-1)
                if first:
                    df.zero_()
                else:  # df = e c_previous f (1 - f)
                    torch.mul(e, cells[d, previous], out=df).mul_(f)
                    df.addcmul_(df, f, value=-1)
                torch.mul(e, i, out=dgg)  # dg = e i (1 - g^2)
                dgg.addcmul_(torch.mul(dgg, g, out=scratch), g, value=-1)
                e.mul_(f)
                if not first:
                    torch.mm(grad_block, weights[2 * d + 1], out=h)
        flat_grads = grad_gates.view(steps * batch, -1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(flat_grads, torch.cat(weights[0::2])).view_as(x)
        flat_x = x.reshape(steps * batch, -1)
        grad_weights: list[torch.Tensor] = []
        for d in range(directions):
            rows = slice(d * 4 * hidden, (d + 1) * 4 * hidden)
            columns = slice(d * hidden, (d + 1) * hidden)
            grad_weights.append(flat_grads[:, rows].t() @ flat_x)
            # h_previous of step t is outputs[t - 1] forward, outputs[t + 1] in reverse; the first step has none.
            later, earlier = grad_gates[1:, :, rows], outputs[:-1, :, columns]
            if d:
                later, earlier = grad_gates[:-1, :, rows], outputs[1:, :, columns]
            grad_weights.append(later.flatten(0, 1).t() @ earlier.flatten(0, 1))
        for name, buffer in zip(("gates", "cells", "tanh_cells", "outputs", "gate_grads"),
                                (gates, cells, tanh_cells, outputs, grad_gates)):
            workspace.give(name, buffer)
        return (grad_x, None, *grad_weights)
