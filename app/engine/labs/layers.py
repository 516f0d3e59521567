"""Labs on single layers: pooling, convolution, dropout and batch normalisation."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool, StrictInt, field_validator
from torch import nn

from ..errors import InputError
from ..tracing.geometry import window_output
from .base import F64, MAX_SIDE, NOTES_MATRIX, Erratum, LabInput, LabStep, Matrix, Number, _fmt, _list, _matrix

# ---------------------------------------------------------------- pooling and convolution


class PoolingInput(LabInput):
    matrix: Matrix = Field(default_factory=lambda: [list(r) for r in NOTES_MATRIX], description="The input, by rows.")
    kind: Literal["max", "avg"] = Field(
        "max", description="Max pooling keeps each window's largest value; avg its mean."
    )
    kernel_size: StrictInt = Field(2, ge=1, le=8)
    stride: StrictInt | None = Field(None, ge=1, le=8, description="Default: the kernel size, as in PyTorch.")
    padding: StrictInt = Field(0, ge=0, le=4)
    dilation: StrictInt = Field(1, ge=1, le=4, description="Max pooling only.")
    ceil_mode: StrictBool = False


def _windows(
    x: torch.Tensor, k: int, s: int, p: int, d: int, out_h: int, out_w: int, fill: float
) -> list[tuple[int, int, list[tuple[int, int]], list[float]]]:
    """Each output cell's window: the input cells it reads (padding cells read ``fill``)."""
    h, w = x.shape
    result = []
    for i in range(out_h):
        for j in range(out_w):
            cells, values = [], []
            for a in range(k):
                for b in range(k):
                    r, c = i * s - p + a * d, j * s - p + b * d
                    cells.append((r, c))
                    values.append(float(x[r, c]) if 0 <= r < h and 0 <= c < w else fill)
            result.append((i, j, cells, values))
    return result


def pooling_lab(body: PoolingInput) -> dict[str, Any]:
    x = _matrix(body.matrix, "matrix")
    k, s, p, d = body.kernel_size, body.stride or body.kernel_size, body.padding, body.dilation
    if p > k // 2:
        raise InputError(f"padding {p} is more than half the kernel size {k} (PyTorch refuses it)", "padding")
    if body.kind == "avg" and d != 1:
        raise InputError("average pooling has no dilation in PyTorch", "dilation")
    size = window_output(x.shape[0], k, s, p, d, body.ceil_mode), window_output(x.shape[1], k, s, p, d, body.ceil_mode)
    if min(size) < 1:
        raise InputError(f"a {k} x {k} window does not fit a {x.shape[0]} x {x.shape[1]} input", "kernel_size")
    batch = x[None, None]
    if body.kind == "max":
        out = F.max_pool2d(batch, k, s, p, d, ceil_mode=body.ceil_mode)[0, 0]
    else:
        out = F.avg_pool2d(batch, k, s, p, ceil_mode=body.ceil_mode)[0, 0]
    fill = -math.inf if body.kind == "max" else 0.0
    windows = []
    for (i, j, cells, values), result in zip(
        _windows(x, k, s, p, d, *out.shape, fill), out.flatten().tolist(), strict=True
    ):
        if body.kind == "max":
            arithmetic = f"max({', '.join(_fmt(v) for v in values if v != -math.inf)}) = {_fmt(result)}"
        else:  # count_include_pad: padding zeros count; windows past the padded input (ceil mode) are cut
            h, w = x.shape
            inside = [v for (r, c), v in zip(cells, values, strict=True) if -p <= r < h + p and -p <= c < w + p]
            arithmetic = f"({' + '.join(_fmt(v) for v in inside)}) / {len(inside)} = {_fmt(result)}"
        windows.append({"output": [i, j], "cells": cells, "arithmetic": arithmetic})
    steps = [
        _pooled_size("output height", "row", x.shape[0], size[0], k, s, p, d, body.ceil_mode),
        _pooled_size("output width", "column", x.shape[1], size[1], k, s, p, d, body.ceil_mode),
    ]
    return {
        "output": _list(out),
        "windows": windows,
        "steps": steps,
        "checks": [f"output computed by torch.nn.functional.{body.kind}_pool2d in float64"],
    }


def _pooled_size(label: str, axis: str, n: int, size: int, k: int, s: int, p: int, d: int, ceil: bool) -> LabStep:
    """The output size's formula, its value, and, in ceil mode, why a last window PyTorch drops is not counted."""
    rule = "ceil" if ceil else "floor"
    span = n + 2 * p - d * (k - 1) - 1
    raw = (-(-span // s) if ceil else span // s) + 1
    formula = f"{rule}(({n} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1 = {raw}"
    if raw != size:  # ceil mode: a last window that would start in the right padding or past it
        start = (raw - 1) * s - p
        formula += (
            f", less 1: the last window would start at {axis} {start}, past the input (in the right padding or "
            f"beyond), so PyTorch drops it (a window must start inside the input or its left padding) = {size}"
        )
    elif ceil:
        formula += " (the last window starts inside the input or its left padding: PyTorch keeps it)"
    return LabStep(label=label, formula=formula, value=size)


class ConvolutionInput(LabInput):
    matrix: Matrix = Field(default_factory=lambda: [list(r) for r in NOTES_MATRIX], description="The input, by rows.")
    kernel: Matrix = Field(
        default_factory=lambda: [[1, 0, -1], [1, 0, -1], [1, 0, -1]], description="The filter (a vertical-edge one)."
    )
    bias: Number = 0.0
    stride: StrictInt = Field(1, ge=1, le=8)
    padding: StrictInt = Field(0, ge=0, le=8)
    dilation: StrictInt = Field(1, ge=1, le=4)


def convolution_lab(body: ConvolutionInput) -> dict[str, Any]:
    x, w = _matrix(body.matrix, "matrix"), _matrix(body.kernel, "kernel")
    kh, kw = w.shape
    s, p, d = body.stride, body.padding, body.dilation
    size = window_output(x.shape[0], kh, s, p, d), window_output(x.shape[1], kw, s, p, d)
    if min(size) < 1:
        raise InputError(f"the {kh} x {kw} kernel does not fit a {x.shape[0]} x {x.shape[1]} input", "kernel")
    layer = nn.Conv2d(1, 1, (kh, kw), s, p, d, bias=True, dtype=F64)
    with torch.no_grad():
        layer.weight.copy_(w[None, None])
        layer.bias.fill_(body.bias)
        out = layer(x[None, None])[0, 0]
    padded = F.pad(x, (p, p, p, p))
    windows = []
    for i in range(size[0]):
        for j in range(size[1]):
            terms = [
                f"{_fmt(float(padded[i * s + a * d, j * s + b * d]))}*{_fmt(float(w[a, b]))}"
                for a in range(kh)
                for b in range(kw)
            ]
            bias = f" + {_fmt(body.bias)}" if body.bias else ""
            cells = [[i * s + a * d - p, j * s + b * d - p] for a in range(kh) for b in range(kw)]
            arithmetic = f"{' + '.join(terms)}{bias} = {_fmt(float(out[i, j]))}"
            windows.append({"output": [i, j], "cells": cells, "arithmetic": arithmetic})
    dense = x.numel() * out.numel()
    return {
        "output": _list(out),
        "windows": windows,
        "parameters": {"convolution": w.numel() + 1, "dense_equivalent": dense + out.numel()},
        "steps": [
            LabStep(
                label="output size",
                formula=f"floor(({x.shape[0]} + 2*{p} - {d}*({kh} - 1) - 1) / {s}) + 1 by "
                f"floor(({x.shape[1]} + 2*{p} - {d}*({kw} - 1) - 1) / {s}) + 1",
                value=list(size),
            ),
            LabStep(
                label="convolution's parameters",
                formula=f"{kh}*{kw} + 1 (bias) = S^2 x C_in x C_out + C_out",
                value=w.numel() + 1,
            ),
            LabStep(
                label="a dense layer from every input to every output",
                formula=f"({x.shape[0]}*{x.shape[1]}) * ({size[0]}*{size[1]}) + {out.numel()} = "
                "(W x H x C_in)(W_out x H_out x C_out) + biases",
                value=dense + out.numel(),
            ),
        ],
        "checks": ["output computed by torch.nn.Conv2d (cross-correlation, as PyTorch defines it) in float64"],
        "notes": [
            "PyTorch's Conv2d computes a cross-correlation: the kernel is not flipped (the notes' K * X reads the "
            "same way)."
        ],
    }


# ---------------------------------------------------------------- dropout


class DropoutInput(LabInput):
    x: list[Number] = Field(default_factory=lambda: [2, 8, -3, 11, 5], min_length=1, max_length=MAX_SIDE)
    p: float = Field(0.5, ge=0, lt=1, description="Probability of dropping a unit (PyTorch's p).")
    mask: list[StrictInt] | None = Field(
        default_factory=lambda: [1, 0, 1, 0, 1], description="1 keeps, 0 drops; null: sampled by PyTorch."
    )
    seed: StrictInt = Field(0, ge=0, le=2**31, description="For a sampled mask.")

    @field_validator("mask")
    @classmethod
    def _binary(cls, mask: list[int] | None) -> list[int] | None:
        if mask is not None and any(v not in (0, 1) for v in mask):
            raise ValueError("a mask holds 0s and 1s")
        return mask


def dropout_lab(body: DropoutInput) -> dict[str, Any]:
    x = torch.tensor(body.x, dtype=F64)
    keep = 1 - body.p
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(body.seed)
        sampled = F.dropout(torch.ones(x.shape, dtype=F64), body.p, training=True) != 0  # PyTorch's own mask
        torch.manual_seed(body.seed)
        torch_train = F.dropout(x, body.p, training=True)  # nn.Dropout in training, same draws
    notes = []
    if body.p == 0:  # PyTorch drops nothing at p = 0, whatever mask one writes
        mask = torch.ones(x.shape, dtype=F64)
        if body.mask is not None and 0 in body.mask:
            notes.append("p = 0: dropout keeps every unit, so the mask given was set aside (all ones).")
    elif body.mask is None:
        mask = sampled.to(F64)
    else:
        if len(body.mask) != len(body.x):
            raise InputError(f"the mask has {len(body.mask)} values for {len(body.x)} inputs", "mask")
        mask = torch.tensor(body.mask, dtype=F64)
    train = x * mask / keep  # what nn.Dropout does in training, for this mask (keep > 0: p < 1)
    layer = nn.Dropout(body.p).eval()
    with torch.no_grad():
        evaluation = layer(x)
    sampled_check = bool(torch.allclose(torch_train, x * sampled.to(F64) / keep))
    return {
        "mask": _list(mask),
        "train_output": _list(train),
        "eval_output": _list(evaluation),
        "original_train_output": _list(x * mask),
        "original_test_output": _list(keep * x),
        "steps": [
            LabStep(
                label="x (.) m (every position kept: dropped ones are 0)", formula="x_i m_i", value=_list(x * mask)
            ),
            LabStep(
                label="PyTorch, training (inverted dropout)",
                formula=f"x (.) m / (1 - p) = x (.) m / {_fmt(keep)}",
                value=_list(train),
            ),
            LabStep(label="PyTorch, evaluation", formula="x, unchanged", value=_list(evaluation)),
            LabStep(label="original convention, test", formula=f"(1 - p) x = {_fmt(keep)} x", value=_list(keep * x)),
            LabStep(
                label="why they agree",
                formula="E[x m / (1 - p)] = x (1 - p) / (1 - p) = x at train, matching x at eval; the original keeps "
                "E[x m] = (1 - p) x at train and scales test by (1 - p) instead",
            ),
        ],
        "checks": [
            "evaluation output from nn.Dropout in eval mode",
            f"torch.nn.functional.dropout in training, seed {body.seed}, gives x m / (1 - p) for the mask it draws: "
            f"{'yes' if sampled_check else 'no'}",
        ],
        "notes": notes,
        "errata": [
            Erratum(
                section="4.4 dropout example",
                notes_say="x (.) m = (2, -3, 5)",
                correct="(2, 0, -3, 0, 5): the product keeps every position",
                convention=False,
                example=True,
            ),
            Erratum(
                section="4.4 dropout at test",
                notes_say="x_test = p x_train",
                correct="the original convention (p the probability of keeping); PyTorch scales by 1/(1 - p) in "
                "training and changes nothing at test",
                convention=True,
            ),
        ],
    }


# ---------------------------------------------------------------- batch normalisation


class BatchNormInput(LabInput):
    batch: Matrix = Field(
        default_factory=lambda: [[1.0, 2.0, 0.5], [3.0, 0.0, 1.5], [2.0, 4.0, -0.5], [6.0, 2.0, 2.5]],
        description="Rows: samples; columns: features.",
    )
    gamma: list[Number] | None = Field(None, description="a in the notes; default ones.")
    beta: list[Number] | None = Field(None, description="b in the notes; default zeros.")
    momentum: float = Field(0.1, gt=0, le=1, description="PyTorch's momentum: the notes' m = 0.9 is 0.1 here.")
    eps: float = Field(1e-5, gt=0, le=1)
    steps: StrictInt = Field(3, ge=1, le=20, description="Training steps on this batch before evaluating.")


def batchnorm_lab(body: BatchNormInput) -> dict[str, Any]:
    x = _matrix(body.batch, "batch")
    n, features = x.shape
    if n < 2:
        raise InputError("a batch needs two samples or more for a variance", "batch")
    for name, values in (("gamma", body.gamma), ("beta", body.beta)):
        if values is not None and len(values) != features:
            raise InputError(
                f"{name} has {len(values)} values but the batch has {features} features (one {name} per feature, "
                "a column of the batch)",
                name,
            )
    layer = nn.BatchNorm1d(features, eps=body.eps, momentum=body.momentum, dtype=F64)
    with torch.no_grad():
        if body.gamma is not None:
            layer.weight.copy_(torch.tensor(body.gamma, dtype=F64))
        if body.beta is not None:
            layer.bias.copy_(torch.tensor(body.beta, dtype=F64))
    mean, biased, unbiased = x.mean(0), x.var(0, unbiased=False), x.var(0, unbiased=True)
    normalised = (x - mean) / torch.sqrt(biased + body.eps)
    running = []
    layer.train()
    with torch.no_grad():
        for step in range(body.steps):
            out = layer(x)
            running.append(
                {"step": step + 1, "running_mean": _list(layer.running_mean), "running_var": _list(layer.running_var)}
            )
        layer.eval()
        evaluated = layer(x)
    return {
        "mean": _list(mean),
        "variance_biased": _list(biased),
        "variance_unbiased": _list(unbiased),
        "normalised": _list(normalised),
        "train_output": _list(out),
        "running": running,
        "eval_output": _list(evaluated),
        "steps": [
            LabStep(label="batch mean", formula="mu_B = (1/n) sum_i x_i", value=_list(mean)),
            LabStep(
                label="batch variance (biased, used to normalise)",
                formula="(1/n) sum_i (x_i - mu_B)^2",
                value=_list(biased),
            ),
            LabStep(
                label="batch variance (unbiased, kept in running_var)",
                formula="(1/(n-1)) sum_i (x_i - mu_B)^2",
                value=_list(unbiased),
            ),
            LabStep(
                label="normalised", formula=f"(x - mu_B) / sqrt(sigma_B^2 + {_fmt(body.eps)})", value=_list(normalised)
            ),
            LabStep(label="output", formula="y = gamma x_hat + beta", value=_list(out)),
            LabStep(
                label="running statistics",
                formula=f"mu <- (1 - {_fmt(body.momentum)}) mu + {_fmt(body.momentum)} mu_B "
                f"(the notes: m mu + (1 - m) mu_B, m = {_fmt(1 - body.momentum)})",
                value=running[-1],
            ),
            LabStep(
                label="evaluation",
                formula="(x - running_mean) / sqrt(running_var + eps) gamma + beta",
                value=_list(evaluated),
            ),
        ],
        "checks": ["train and eval outputs and running statistics from nn.BatchNorm1d in float64"],
        "errata": [
            Erratum(
                section="5.2 BatchNorm",
                notes_say="mu <- m mu + (1 - m) mu_B, m about 0.9",
                correct="the same update; PyTorch writes it with momentum = 1 - m = 0.1, and keeps the unbiased "
                "variance",
                convention=True,
            )
        ],
    }
