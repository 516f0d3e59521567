"""Worked formulas for a layer's figures, with the numbers filled in.

The course works AlexNet through by hand: ``floor((224 + 2*2 - 11)/4) + 1 = 55``
and ``96*3*11^2 + 96 = 34,944``. These functions write the same lines for any
layer, from its hyperparameters and the shapes the tracer recorded. Shapes are
batch first; figures marked "per sample" leave the batch out.
"""

from __future__ import annotations

import math

from torch import nn

from models.attention import MultiHeadAttention
from models.transformer import SinusoidalPositionalEncoding, TokenEmbedding

from ..tracing.geometry import pool_window, window_output
from .base import Shape, _dims, _power, explains, n


def _conv_size(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> str:
    """'floor((224 + 2*2 - 11)/4) + 1 = 55', with PyTorch's ceil-mode rule when it applies."""
    rounding = "ceil" if ceil else "floor"
    pad = f" + 2*{p}" if p else ""
    reach = f"{d}*({k}-1) - 1" if d != 1 else f"{k}"
    expr = f"{rounding}(({size}{pad} - {reach})/{s}) + 1"
    value = (size + 2 * p - d * (k - 1) - 1) / s
    counted = (math.ceil(value) if ceil else math.floor(value)) + 1
    out = window_output(size, k, s, p, d, ceil)
    if out != counted:
        return (
            f"{expr} = {counted}, less the last window, which would start in the right padding "
            f"(({counted} - 1)*{s} >= {size} + {p}): PyTorch drops it, so {out}"
        )
    return f"{expr} = {out}"


def _spatial_lines(
    names: list[str], sizes: Shape, k: tuple, s: tuple, p: tuple, d: tuple, ceil: bool = False
) -> list[str]:
    """One line per spatial axis, merged when the axes share size and hyperparameters."""
    lines = []
    if len(set(zip(sizes, k, s, p, d, strict=True))) == 1 and len(names) > 1:
        joined = " = ".join(f"{a}_out" for a in names)
        return [f"{joined} = {_conv_size(sizes[0], k[0], s[0], p[0], d[0], ceil)}"]
    for i, axis in enumerate(names):
        lines.append(f"{axis}_out = {_conv_size(sizes[i], k[i], s[i], p[i], d[i], ceil)}")
    return lines


_AXES = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}


@explains(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Conv2d, inp: Shape | None, out: Shape | None) -> list[str]:
    dims = len(m.kernel_size)
    k, s, d = m.kernel_size, m.stride, m.dilation
    p = m.padding if isinstance(m.padding, tuple) else None
    lines = []
    if inp and out and p is not None:
        lines += _spatial_lines(_AXES[dims], inp[-dims:], k, s, p, d)
    elif isinstance(m.padding, str):
        lines.append(f"padding='{m.padding}': output size {_dims(out[-dims:] if out else None)}")
    c_in = m.in_channels // m.groups
    c_in_text = f"({m.in_channels}/{m.groups})" if m.groups > 1 else f"{m.in_channels}"
    weights = m.out_channels * c_in * math.prod(k)
    line = f"params = {m.out_channels}*{c_in_text}*{_power(k)}"
    if m.bias is not None:
        line += f" + {m.out_channels} = {n(weights + m.out_channels)} ({n(weights)} weights + {m.out_channels} biases)"
    else:
        line += f" = {n(weights)} (no bias)"
    lines.append(line)
    if out:
        positions = math.prod(out[-dims:])
        per_output = c_in * math.prod(k)
        macs = m.out_channels * positions * per_output
        spatial = "*".join(str(x) for x in out[-dims:])
        lines.append(f"MACs per sample = ({m.out_channels}*{spatial} outputs) * ({c_in}*{_power(k)} each) = {n(macs)}")
        lines.append(f"output per sample = {_dims(out[1:])} = {n(math.prod(out[1:]))} values")
    return lines


@explains(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(m: nn.ConvTranspose2d, inp: Shape | None, out: Shape | None) -> list[str]:
    dims = len(m.kernel_size)
    lines = []
    if inp and out:
        for axis, size, k, s, p, op, d in zip(
            _AXES[dims], inp[-dims:], m.kernel_size, m.stride, m.padding, m.output_padding, m.dilation, strict=True
        ):
            value = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            lines.append(f"{axis}_out = ({size} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {op} + 1 = {value}")
    weights = m.in_channels * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    bias = m.out_channels if m.bias is not None else 0
    lines.append(
        f"params = {m.in_channels}*{m.out_channels // m.groups}*{_power(m.kernel_size)}"
        + (f" + {bias}" if bias else "")
        + f" = {n(weights + bias)}"
    )
    return lines


@explains(nn.Linear)
def _linear(m: nn.Linear, inp: Shape | None, out: Shape | None) -> list[str]:
    weights = m.out_features * m.in_features
    if m.bias is not None:
        params = f"params = {m.out_features}*{m.in_features} + {m.out_features} = {n(weights + m.out_features)}"
        params += f" (W is {m.out_features} x {m.in_features}, b has {m.out_features})"
    else:
        params = f"params = {m.out_features}*{m.in_features} = {n(weights)} (no bias)"
    lines = ["y = W x + b" if m.bias is not None else "y = W x", params]
    if inp:
        positions = math.prod(inp[1:-1]) if len(inp) > 2 else 1
        macs = m.in_features * m.out_features * positions
        if positions > 1:
            per = f"{m.in_features}*{m.out_features} per position"
            lines.append(f"MACs per sample = {per} * {n(positions)} positions = {n(macs)}")
        else:
            lines.append(f"MACs per sample = {m.in_features}*{m.out_features} = {n(macs)}")
    return lines


@explains(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool(m: nn.MaxPool2d, inp: Shape | None, out: Shape | None) -> list[str]:
    w = pool_window(m)
    dims, k = w.dims, w.kernel
    kind = "maximum" if isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d) else "average"
    lines = []
    if inp:
        lines += _spatial_lines(_AXES[dims], inp[-dims:], k, w.stride, w.padding, w.dilation, ceil=w.ceil)
    lines.append(f"each output is the {kind} of a {'x'.join(map(str, k))} window; no parameters")
    return lines


@explains(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
def _adaptive_pool(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    kind = "average" if "Avg" in type(m).__name__ else "maximum"
    if not (inp and out):
        return [f"output size fixed at {m.output_size}; no parameters"]
    dims = len(out) - 2 if len(out) > 2 else 1
    src, dst = inp[-dims:], out[-dims:]
    if src == dst:
        return [f"input already {_dims(src)}: identity; no parameters"]
    lines = [f"{_dims(src)} -> {_dims(dst)} whatever the input size: each output takes the {kind} of its window"]
    for axis, (size_in, size_out) in enumerate(zip(src, dst, strict=True)):
        # PyTorch's windows: start = floor(i * in / out), end = ceil((i + 1) * in / out); they may overlap
        spans = [(i * size_in // size_out, -(-(i + 1) * size_in // size_out)) for i in range(size_out)]
        shown = ", ".join(f"[{a}, {b})" for a, b in spans[:8]) + (", ..." if size_out > 8 else "")
        name = "axis" if dims == 1 else ("height", "width", "depth")[axis] if dims <= 3 else f"axis {axis}"
        lines.append(
            f"{name} windows, start = floor(i*{size_in}/{size_out}), end = ceil((i+1)*{size_in}/{size_out}): {shown}"
        )
    lines.append("no parameters")
    return lines


@explains(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm(m: nn.BatchNorm2d, inp: Shape | None, out: Shape | None) -> list[str]:
    c = m.num_features
    lines = ["y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta, per channel over the batch"]
    if m.affine:
        lines.append(f"params = 2*{c} = {n(2 * c)} (gamma and beta per channel)")
    if m.track_running_stats:
        lines.append(
            f"buffers = 2*{c} + 1 = {n(2 * c + 1)} (running mean and variance per channel, batches seen); "
            f"updated as mu <- (1 - {m.momentum})*mu + {m.momentum}*mu_B (PyTorch's momentum {m.momentum} is the "
            f"notes' m = {1 - (m.momentum or 0):g}), running_var keeping the unbiased batch variance; "
            "used instead of the batch's statistics at eval"
        )
    return lines


@explains(nn.LayerNorm)
def _layer_norm(m: nn.LayerNorm, inp: Shape | None, out: Shape | None) -> list[str]:
    size = math.prod(m.normalized_shape)
    lines = [f"normalise each position over its last {len(m.normalized_shape)} dim(s) ({n(size)} values)"]
    if m.elementwise_affine:
        count = size * (2 if m.bias is not None else 1)
        what = "gain and bias" if m.bias is not None else "gain"
        lines.append(f"params = {'2*' if m.bias is not None else ''}{n(size)} = {n(count)} ({what})")
    return lines


@explains(nn.GroupNorm)
def _group_norm(m: nn.GroupNorm, inp: Shape | None, out: Shape | None) -> list[str]:
    lines = [f"normalise over {m.num_groups} groups of {m.num_channels // m.num_groups} channels"]
    if m.affine:
        lines.append(f"params = 2*{m.num_channels} = {n(2 * m.num_channels)}")
    return lines


@explains(nn.Embedding)
def _embedding(m: nn.Embedding, inp: Shape | None, out: Shape | None) -> list[str]:
    # Ids without a batch dimension are positions (arange(T)), shared by the batch: a position embedding.
    what = "position" if inp is not None and len(inp) == 1 else "token"
    lines = [
        f"params = {n(m.num_embeddings)}*{m.embedding_dim} = {n(m.num_embeddings * m.embedding_dim)} "
        f"(one {m.embedding_dim}-vector per {what}: a one-hot vector times this matrix)"
    ]
    if inp and out:
        lines.append(f"lookup: ids {_dims(inp)} -> vectors {_dims(out)}; no multiplications")
    return lines


@explains(TokenEmbedding)
def _token_embedding(m: TokenEmbedding, inp: Shape | None, out: Shape | None) -> list[str]:
    return [f"embedding(ids) * sqrt(d_model) = embedding(ids) * {m.scale:.4g}", *_embedding(m.embedding, inp, out)]


@explains(SinusoidalPositionalEncoding)
def _positional(m: SinusoidalPositionalEncoding, inp: Shape | None, out: Shape | None) -> list[str]:
    d = m.table.shape[1]
    return [
        f"PE(pos, 2i) = sin(pos / 10000^(2i/{d})), PE(pos, 2i+1) = cos(pos / 10000^(2i/{d})), i = 0 .. {d // 2 - 1}",
        "added to the embeddings; a fixed table, no parameters",
    ]


@explains(MultiHeadAttention, all_inputs=True)
def _attention(m: MultiHeadAttention, inputs: list[Shape] | None, out: Shape | None) -> list[str]:
    d, h = m.d_model, m.heads
    per = d * d + (d if m.q_proj.bias is not None else 0)
    lines = [
        f"softmax(Q K^T / sqrt(d_k)) V with d_k = {d}/{h} = {m.d_k}",
        f"params = 4*({d}*{d}" + (f" + {d}" if m.q_proj.bias is not None else "") + f") = {n(4 * per)} "
        "(W_Q, W_K, W_V, W_O)",
    ]
    if inputs:
        t_q = inputs[0][1]
        t_k = inputs[1][1] if len(inputs) > 1 and len(inputs[1]) == 3 else t_q  # cross-attention: the context
        if t_k != t_q:
            lines.append(f"cross-attention: {t_q} queries (this sequence) against {t_k} keys and values (the context)")
        lines.append(
            f"weights per sample: {h} heads x {t_q} x {t_k} = {n(h * t_q * t_k)} scores"
            + (" (sdpa: computed in blocks, never stored whole)" if m.impl == "sdpa" else "")
        )
        lines.append(
            f"MACs per sample for Q K^T and weights x V = 2*{h}*{t_q}*{t_k}*{m.d_k} = {n(2 * h * t_q * t_k * m.d_k)}"
        )
    return lines


@explains(nn.Flatten)
def _flatten(m: nn.Flatten, inp: Shape | None, out: Shape | None) -> list[str]:
    if not (inp and out):
        return []
    end = m.end_dim if m.end_dim >= 0 else len(inp) + m.end_dim
    merged = inp[m.start_dim : end + 1]
    return [f"{'*'.join(map(str, merged))} = {n(math.prod(merged))}: reshapes, no parameters"]


@explains(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
def _dropout(m: nn.Dropout, inp: Shape | None, out: Shape | None) -> list[str]:
    p = m.p
    if p == 0:
        return ["p = 0: the identity"]
    scale = 1 / (1 - p)
    example = [v * scale * keep for v, keep in zip((2, 8, -3, 11, 5), (1, 0, 1, 0, 1), strict=True)]
    shown = ", ".join(f"{v:g}" for v in example)
    return [
        f"p = {p:g}: in training each {'channel' if type(m) is not nn.Dropout else 'value'} is zeroed with "
        f"probability {p:g} and the kept ones scaled by 1/(1 - {p:g}) = {scale:.4g} (inverted dropout)",
        f"e.g. x = (2, 8, -3, 11, 5) with mask (1, 0, 1, 0, 1) gives ({shown}): every position stays",
        "at evaluation it is the identity: nothing is rescaled at test time",
    ]


_ACTIVATION_FORMULAS: dict[type, str] = {
    nn.ReLU: "max(0, x)",
    nn.ReLU6: "min(max(0, x), 6)",
    nn.LeakyReLU: "max(0, x) + slope * min(0, x)",
    nn.ELU: "x if x > 0 else alpha*(exp(x) - 1)",
    nn.GELU: "x * Phi(x), Phi the standard normal CDF",
    nn.SiLU: "x * sigmoid(x)",
    nn.Mish: "x * tanh(softplus(x))",
    nn.Sigmoid: "1 / (1 + exp(-x))",
    nn.Tanh: "tanh(x)",
    nn.Hardswish: "x * relu6(x + 3) / 6",
    nn.Softplus: "log(1 + exp(x))",
    nn.Softmax: "exp(x_i) / sum_j exp(x_j)",
    nn.LogSoftmax: "x_i - log(sum_j exp(x_j))",
}


@explains(*_ACTIVATION_FORMULAS)
def _activation(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    formula = _ACTIVATION_FORMULAS[type(m)]
    note = " (in place: overwrites its input)" if getattr(m, "inplace", False) else ""
    return [f"{formula}, element-wise{note}; shape unchanged {_dims(out)}; no parameters"]


@explains(nn.LocalResponseNorm)
def _lrn(m: nn.LocalResponseNorm, inp: Shape | None, out: Shape | None) -> list[str]:
    return [
        f"b = a / ({m.k:g} + {m.alpha:g}/{m.size} * sum of a^2 over {m.size} neighbouring channels)^{m.beta:g}",
        "no parameters",
    ]
