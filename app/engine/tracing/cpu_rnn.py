"""What recurrent layers allocate on the CPU that a dispatch-level tracker cannot see.

PyTorch runs ``nn.GRU`` and ``nn.RNN`` on the CPU as its own loop (``_rnn_impl``):
per layer, the input projection of every time step at once (``T x B x gates x H``),
one output per step, then those stacked. ``nn.LSTM`` runs oneDNN's fused layer
(``mkldnn_rnn_layer``), which reorders both weight matrices, books a scratchpad of
its gates, and in training returns a workspace that backward reads.

Under ``torch.inference_mode`` a tracker sees ``aten.gru.input`` / ``aten.lstm.input``
as one op, so everything inside is hidden; with autograd it sees each layer's
``mkldnn_rnn_layer``, whose meta kernel returns an empty workspace
(``torch_internals.CpuKernelShapes`` gives it its real size). The sizes below were
read off torch 2.13's allocation events (``bench/cpu_kernels.py`` checks them);
bidirectional layers are counted as two directions run one after the other.
"""

from __future__ import annotations

from typing import Any

import torch

_aten = torch.ops.aten
GATES = {"gru": 3, "lstm": 4, "rnn_tanh": 1, "rnn_relu": 1}
# oneDNN's LSTM training workspace, per dtype: a x T x B x H + 512 x T x B + b x B x H + 12,288 bytes.
_WORKSPACE = {torch.float32: (60, 40), torch.bfloat16: (42, 32)}


def _dims(x: torch.Tensor, hx: torch.Tensor, batch_first: bool) -> tuple[int, int, int, int]:
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    return steps, batch, x.shape[-1], hx.shape[-1]


def workspace_bytes(steps: int, batch: int, hidden: int, dtype: torch.dtype) -> int:
    """The workspace ``mkldnn_rnn_layer`` returns in training, which its backward reads."""
    a, b = _WORKSPACE.get(dtype, _WORKSPACE[torch.float32])
    return a * steps * batch * hidden + 512 * steps * batch + b * batch * hidden + 12288


def _lstm_scratch(steps: int, batch: int, hidden: int, dtype: torch.dtype, train: bool) -> int:
    """oneDNN's LSTM scratchpad: its gates (float32 accumulation in training), and small per-step state."""
    if train:
        return steps * batch * 4 * hidden * 4 + 64 * steps * batch + 8 * batch * hidden + 12856
    per_bh = 36 if dtype == torch.float32 else 26
    return steps * batch * 4 * hidden * dtype.itemsize + 128 * steps * batch + per_bh * batch * hidden + 16384


def _reorders(in_size: int, hidden: int, size: int) -> int:
    """Both weight matrices reordered into oneDNN's layout."""
    return 4 * hidden * (in_size + hidden) * size


def composite_rnn(kind: str, args: tuple, output: Any) -> int:
    """``aten.gru.input`` / ``aten.rnn_*.input`` run whole: hidden bytes at their busiest layer."""
    x, hx, _params, _biases, layers, _dropout, _train, bidirectional, batch_first = args[:9]
    steps, batch, in_size, hidden = _dims(x, hx, batch_first)
    size, gates, directions = x.element_size(), GATES[kind], 2 if bidirectional else 1
    per_output = steps * batch * hidden * size
    projection = steps * batch * gates * hidden * size
    busiest = steps * batch * in_size * size + projection if batch_first else 0  # the time-major copy, briefly
    for layer in range(layers):
        previous = steps * batch * directions * hidden * size if layer else 0
        stacked = 0 if layer == layers - 1 else directions * per_output  # the last layer's is the op's output
        done = (directions - 1) * per_output  # the other direction's output, waiting to be concatenated
        busiest = max(busiest, previous + done + projection + per_output + stacked + batch * hidden * size)
    return busiest


def lstm_whole(args: tuple, output: Any) -> int:
    """``aten.lstm.input`` run whole (inference): each layer's oneDNN call with its reorders and scratchpad.

    A tracker sees the op whole only without autograd, where oneDNN runs its inference
    kernel whatever the module's ``train`` flag says.
    """
    x, (hx, _cx), _params, _biases, layers, _dropout, _train, bidirectional, batch_first = args[:9]
    steps, batch, in_size, hidden = _dims(x, hx, batch_first)
    size, directions = x.element_size(), 2 if bidirectional else 1
    copy = steps * batch * in_size * size if batch_first else 0
    states = 4 * layers * directions * batch * hidden * size  # zero initial states, and each layer's final ones
    busiest = 0
    for layer in range(layers):
        layer_in = in_size if layer == 0 else directions * hidden
        previous = steps * batch * layer_in * size if layer else 0
        out = steps * batch * directions * hidden * size if layer < layers - 1 else 0  # the last is the output
        work = _reorders(layer_in, hidden, size) + _lstm_scratch(steps, batch, hidden, x.dtype, False)
        busiest = max(busiest, copy + previous + out + work)
    return busiest + states


def mkldnn_layer(args: tuple, output: Any) -> int:
    """One ``mkldnn_rnn_layer`` call (with autograd): weight reorders and the scratchpad."""
    x, w_ih = args[0], args[1]
    hidden, train = args[10], args[15]
    steps, batch = x.shape[0], x.shape[1]  # time-major, whatever the batch_first flag says
    size = x.element_size()
    return _reorders(w_ih.shape[1], hidden, size) + _lstm_scratch(steps, batch, hidden, x.dtype, bool(train))


def mkldnn_layer_backward(args: tuple, output: Any) -> int:
    """``mkldnn_rnn_layer_backward``: blocked weight gradients, weight reorders and the scratchpad."""
    x, w_ih = args[0], args[1]
    hidden = args[15]
    steps, batch = x.shape[0], x.shape[1]  # time-major, whatever the batch_first flag says
    in_size = w_ih.shape[1]
    weights = 4 * hidden * (in_size + hidden)
    if x.dtype == torch.bfloat16:  # float32 weight gradients beside bf16 reorders; float32 hidden-state gradients
        return 6 * weights + 4 * steps * batch * hidden + 256 * hidden
    blocked_grads = weights * 4 + 2 * 4 * hidden * 16 * 4
    return (
        blocked_grads
        + _reorders(in_size, hidden, x.element_size())
        + _lstm_scratch(steps, batch, hidden, torch.float32, True)
    )


def rnn_workspace(func: object, args: tuple, output: Any) -> int | None:
    """Hidden bytes of a recurrent op on the CPU; None when ``func`` is not one."""
    if func is _aten.gru.input:
        return composite_rnn("gru", args, output)
    if func is _aten.rnn_tanh.input:
        return composite_rnn("rnn_tanh", args, output)
    if func is _aten.rnn_relu.input:
        return composite_rnn("rnn_relu", args, output)
    if func is _aten.lstm.input:
        return lstm_whole(args, output)
    if func is _aten.mkldnn_rnn_layer.default:
        return mkldnn_layer(args, output)
    if func is _aten.mkldnn_rnn_layer_backward.default:
        return mkldnn_layer_backward(args, output)
    return None
