"""The course's worked examples, computed by PyTorch on the student's own numbers.

Each lab takes a small pydantic input whose defaults are the notes' own example,
computes every intermediate value with PyTorch in float64, and returns them with
the formula each came from (``steps``), the checks against PyTorch's own modules,
and, where the notes' figures differ, the erratum (citing the notes' section, and
saying so when the notes only use another convention).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator
from torch import nn

from .errors import InputError
from .geometry import window_output
from .units import format_bytes

F64 = torch.float64
MAX_SIDE = 32  # matrices and vectors the student types stay small: every value is shown
Number = float
Matrix = list[list[Number]]

NOTES_MATRIX: Matrix = [
    [1, 3, 2, 0, 1, 2],
    [4, 6, 5, 1, 3, 1],
    [7, 2, 8, 2, 0, 4],
    [3, 5, 0, 6, 7, 3],
    [2, 1, 9, 8, 2, 4],
    [1, 0, 3, 5, 2, 1],
]


class Step(BaseModel):
    label: str
    formula: str
    value: Any = None


class Erratum(BaseModel):
    section: str = Field(description="The notes' section, e.g. '4.4 dropout example'.")
    notes_say: str
    correct: str
    convention: bool = Field(description="True: the notes are right in another convention; False: a slip.")


class LabInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _matrix(rows: Matrix, what: str) -> torch.Tensor:
    if not rows or not all(rows) or len({len(r) for r in rows}) != 1:
        raise InputError(f"{what} must be a non-empty list of rows of equal length", what)
    if len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE:
        raise InputError(f"{what} is at most {MAX_SIDE} x {MAX_SIDE} here: every value is shown", what)
    return torch.tensor(rows, dtype=F64)


def _list(t: torch.Tensor, digits: int = 6) -> Any:
    return [_list(x, digits) for x in t] if t.dim() else round(float(t), digits)


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.3e}"


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


def pooling(body: PoolingInput) -> dict[str, Any]:
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
    rule = "ceil" if body.ceil_mode else "floor"
    h_formula = f"{rule}(({x.shape[0]} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1"
    steps = [
        Step(
            label="output height",
            formula=h_formula
            + (" (the last window must start inside the input or its left padding)" if body.ceil_mode else ""),
            value=size[0],
        ),
        Step(label="output width", formula=h_formula.replace(str(x.shape[0]), str(x.shape[1]), 1), value=size[1]),
    ]
    return {
        "output": _list(out),
        "windows": windows,
        "steps": steps,
        "checks": [f"output computed by torch.nn.functional.{body.kind}_pool2d in float64"],
    }


class ConvolutionInput(LabInput):
    matrix: Matrix = Field(default_factory=lambda: [list(r) for r in NOTES_MATRIX], description="The input, by rows.")
    kernel: Matrix = Field(
        default_factory=lambda: [[1, 0, -1], [1, 0, -1], [1, 0, -1]], description="The filter (a vertical-edge one)."
    )
    bias: Number = 0.0
    stride: StrictInt = Field(1, ge=1, le=8)
    padding: StrictInt = Field(0, ge=0, le=8)
    dilation: StrictInt = Field(1, ge=1, le=4)


def convolution(body: ConvolutionInput) -> dict[str, Any]:
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
            Step(
                label="output size",
                formula=f"floor(({x.shape[0]} + 2*{p} - {d}*({kh} - 1) - 1) / {s}) + 1 by "
                f"floor(({x.shape[1]} + 2*{p} - {d}*({kw} - 1) - 1) / {s}) + 1",
                value=list(size),
            ),
            Step(
                label="convolution's parameters",
                formula=f"{kh}*{kw} + 1 (bias) = S^2 x C_in x C_out + C_out",
                value=w.numel() + 1,
            ),
            Step(
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


# ---------------------------------------------------------------- softmax and cross-entropy


class SoftmaxInput(LabInput):
    logits: list[Number] = Field(default_factory=lambda: [2.0, 1.0, 0.1], min_length=2, max_length=MAX_SIDE)
    target: StrictInt = Field(0, ge=0, description="The true class.")
    temperature: float = Field(1.0, gt=0, le=100)
    label_smoothing: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _target_in_range(self) -> SoftmaxInput:
        if self.target >= len(self.logits):
            raise ValueError(f"target {self.target} is past the {len(self.logits)} classes")
        return self


def softmax(body: SoftmaxInput) -> dict[str, Any]:
    z = torch.tensor(body.logits, dtype=F64, requires_grad=True)
    scaled = z / body.temperature
    p = scaled.softmax(-1)
    loss = F.cross_entropy(scaled[None], torch.tensor([body.target]), label_smoothing=body.label_smoothing)
    (gradient,) = torch.autograd.grad(loss, z)
    k = len(body.logits)
    y = torch.full((k,), body.label_smoothing / k, dtype=F64)
    y[body.target] += 1 - body.label_smoothing
    exps = scaled.detach().exp()
    return {
        "probabilities": _list(p.detach()),
        "loss": round(float(loss.detach()), 8),
        "gradient": _list(gradient),
        "steps": [
            Step(label="scaled logits", formula=f"z / T, T = {_fmt(body.temperature)}", value=_list(scaled.detach())),
            Step(label="exponentials", formula="exp(z_i / T)", value=_list(exps)),
            Step(label="their sum", formula="sum_j exp(z_j / T)", value=round(float(exps.sum()), 6)),
            Step(label="probabilities", formula="p_i = exp(z_i / T) / sum_j exp(z_j / T)", value=_list(p.detach())),
            Step(
                label="target distribution",
                formula=f"y = (1 - {_fmt(body.label_smoothing)}) one_hot({body.target}) + "
                f"{_fmt(body.label_smoothing)}/{k}",
                value=_list(y),
            ),
            Step(
                label="cross-entropy",
                formula="L = -sum_i y_i log p_i (= -log p_target without smoothing)",
                value=round(float(loss.detach()), 8),
            ),
            Step(label="gradient", formula="dL/dz = (p - y) / T", value=_list((p.detach() - y) / body.temperature)),
        ],
        "checks": [
            "loss from torch.nn.functional.cross_entropy (log-softmax and NLL in one, as nn.CrossEntropyLoss)",
            "gradient from torch.autograd, equal to (p - y) / T",
        ],
    }


# ---------------------------------------------------------------- backpropagation


class BackpropInput(LabInput):
    x: list[Number] = Field(default_factory=lambda: [0.05, 0.10], min_length=1, max_length=8)
    w1: Matrix = Field(default_factory=lambda: [[0.15, 0.20], [0.25, 0.30]], description="Hidden layer, out x in.")
    b1: list[Number] = Field(default_factory=lambda: [0.35, 0.35])
    w2: Matrix = Field(default_factory=lambda: [[0.40, 0.45]], description="Output layer, out x hidden.")
    b2: list[Number] = Field(default_factory=lambda: [0.60])
    target: list[Number] = Field(default_factory=lambda: [0.01])
    activation: Literal["sigmoid", "relu", "tanh"] = "sigmoid"
    learning_rate: float = Field(0.5, gt=0, le=10)


def backprop(body: BackpropInput) -> dict[str, Any]:
    x = torch.tensor(body.x, dtype=F64)
    w1, w2 = _matrix(body.w1, "w1").requires_grad_(), _matrix(body.w2, "w2").requires_grad_()
    b1 = torch.tensor(body.b1, dtype=F64, requires_grad=True)
    b2 = torch.tensor(body.b2, dtype=F64, requires_grad=True)
    target = torch.tensor(body.target, dtype=F64)
    if (
        w1.shape != (len(body.b1), len(body.x))
        or w2.shape != (len(body.b2), len(body.b1))
        or len(body.target) != len(body.b2)
    ):
        raise InputError("shapes: w1 is hidden x inputs, b1 hidden, w2 outputs x hidden, b2 and target outputs", "w1")
    act = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}[body.activation]
    z1 = w1 @ x + b1
    h = act(z1)
    y = w2 @ h + b2  # a linear output: a regression, trained with the squared error
    loss = 0.5 * ((y - target) ** 2).sum()
    grads = torch.autograd.grad(loss, (w1, b1, w2, b2))
    with torch.no_grad():
        dloss_dy = y - target
        dact = {"sigmoid": h * (1 - h), "relu": (z1 > 0).to(F64), "tanh": 1 - h**2}[body.activation]
        delta1 = (w2.T @ dloss_dy) * dact
        manual = {"w2": torch.outer(dloss_dy, h), "b2": dloss_dy, "w1": torch.outer(delta1, x), "b1": delta1}
    steps = [
        Step(label="hidden pre-activation", formula="z1 = W1 x + b1", value=_list(z1.detach())),
        Step(label="hidden activation", formula=f"h = {body.activation}(z1)", value=_list(h.detach())),
        Step(label="output", formula="y = W2 h + b2", value=_list(y.detach())),
        Step(label="loss", formula="L = 1/2 sum (y - t)^2", value=round(float(loss.detach()), 10)),
        Step(label="dL/dy", formula="y - t", value=_list(dloss_dy)),
        Step(
            label=f"{body.activation}'(z1)",
            formula={"sigmoid": "h (1 - h)", "relu": "1 where z1 > 0", "tanh": "1 - h^2"}[body.activation],
            value=_list(dact),
        ),
        Step(label="dL/dz1 (chain rule)", formula="(W2^T dL/dy) * act'(z1)", value=_list(delta1)),
    ]
    weights = []
    names = ("w1", "b1", "w2", "b2")
    for name, param, grad in zip(names, (w1, b1, w2, b2), grads, strict=True):
        for index in (
            torch.cartesian_prod(*[torch.arange(n) for n in param.shape])
            if param.dim() > 1
            else torch.arange(param.shape[0])[:, None]
        ):
            idx = tuple(int(i) for i in index)
            g, m = float(grad[idx]), float(manual[name][idx])
            chain = (
                f"dL/dy[{idx[0]}] * h[{idx[1]}]"
                if name == "w2"
                else "dL/dy"
                if name == "b2"
                else f"dL/dz1[{idx[0]}] * x[{idx[1]}]"
                if name == "w1"
                else "dL/dz1"
            )
            weights.append(
                {
                    "weight": f"{name}{list(idx)}",
                    "chain": chain,
                    "gradient": round(m, 10),
                    "autograd": round(g, 10),
                    "updated": round(float(param.detach()[idx]) - body.learning_rate * g, 10),
                }
            )
    return {
        "output": _list(y.detach()),
        "loss": round(float(loss.detach()), 10),
        "weights": weights,
        "steps": steps,
        "checks": [
            f"every gradient equals torch.autograd's (largest difference "
            f"{max(abs(w['gradient'] - w['autograd']) for w in weights):.1e})",
            f"updated = weight - {_fmt(body.learning_rate)} x gradient: one SGD step",
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


def dropout(body: DropoutInput) -> dict[str, Any]:
    x = torch.tensor(body.x, dtype=F64)
    keep = 1 - body.p
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(body.seed)
        sampled = F.dropout(torch.ones(x.shape, dtype=F64), body.p, training=True) != 0  # PyTorch's own mask
        torch.manual_seed(body.seed)
        torch_train = F.dropout(x, body.p, training=True)  # nn.Dropout in training, same draws
    if body.mask is None:
        mask = sampled.to(F64)
    else:
        if len(body.mask) != len(body.x):
            raise InputError(f"the mask has {len(body.mask)} values for {len(body.x)} inputs", "mask")
        mask = torch.tensor(body.mask, dtype=F64)
    train = x * mask / keep if keep else x * 0  # what nn.Dropout does in training, for this mask
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
            Step(label="x (.) m (every position kept: dropped ones are 0)", formula="x_i m_i", value=_list(x * mask)),
            Step(
                label="PyTorch, training (inverted dropout)",
                formula=f"x (.) m / (1 - p) = x (.) m / {_fmt(keep)}",
                value=_list(train),
            ),
            Step(label="PyTorch, evaluation", formula="x, unchanged", value=_list(evaluation)),
            Step(label="original convention, test", formula=f"(1 - p) x = {_fmt(keep)} x", value=_list(keep * x)),
            Step(
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
        "errata": [
            Erratum(
                section="4.4 dropout example",
                notes_say="x (.) m = (2, -3, 5)",
                correct="(2, 0, -3, 0, 5): the product keeps every position",
                convention=False,
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


def batchnorm(body: BatchNormInput) -> dict[str, Any]:
    x = _matrix(body.batch, "batch")
    n, features = x.shape
    if n < 2:
        raise InputError("a batch needs two samples or more for a variance", "batch")
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
            Step(label="batch mean", formula="mu_B = (1/n) sum_i x_i", value=_list(mean)),
            Step(
                label="batch variance (biased, used to normalise)",
                formula="(1/n) sum_i (x_i - mu_B)^2",
                value=_list(biased),
            ),
            Step(
                label="batch variance (unbiased, kept in running_var)",
                formula="(1/(n-1)) sum_i (x_i - mu_B)^2",
                value=_list(unbiased),
            ),
            Step(
                label="normalised", formula=f"(x - mu_B) / sqrt(sigma_B^2 + {_fmt(body.eps)})", value=_list(normalised)
            ),
            Step(label="output", formula="y = gamma x_hat + beta", value=_list(out)),
            Step(
                label="running statistics",
                formula=f"mu <- (1 - {_fmt(body.momentum)}) mu + {_fmt(body.momentum)} mu_B "
                f"(the notes: m mu + (1 - m) mu_B, m = {_fmt(1 - body.momentum)})",
                value=running[-1],
            ),
            Step(
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


# ---------------------------------------------------------------- byte-pair encoding


class BpeInput(LabInput):
    words: dict[str, StrictInt] = Field(
        default_factory=lambda: {"low": 5, "lower": 2, "newest": 6, "widest": 3},
        description="Word -> count in the corpus.",
    )
    merges: StrictInt = Field(10, ge=0, le=200)
    tokenize: str = Field("lowest", max_length=64, description="A new word to split with the learned merges.")

    @field_validator("words")
    @classmethod
    def _bounded(cls, words: dict[str, int]) -> dict[str, int]:
        if not words or len(words) > 200 or any(not w or len(w) > 64 or c < 1 for w, c in words.items()):
            raise ValueError("1 to 200 words of 1 to 64 characters, each with a count of 1 or more")
        return words


def bpe(body: BpeInput) -> dict[str, Any]:
    corpus = {(*word, "</w>"): count for word, count in body.words.items()}
    vocabulary = sorted({symbol for word in corpus for symbol in word})
    history, learned = [], []
    for step in range(body.merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in corpus.items():
            for a, b in itertools.pairwise(word):
                pairs[(a, b)] += count
        if not pairs:
            break
        best, count = max(pairs.items(), key=lambda item: item[1])  # ties: the pair seen first in the corpus
        learned.append(best)
        corpus = {_merge(word, best): c for word, c in corpus.items()}
        vocabulary.append(best[0] + best[1])
        history.append(
            {
                "step": step + 1,
                "top_pairs": [{"pair": list(p), "count": c} for p, c in pairs.most_common(5)],
                "merge": list(best),
                "count": count,
                "corpus": {" ".join(w): c for w, c in corpus.items()},
                "vocabulary_size": len(vocabulary),
            }
        )
    word = (*body.tokenize, "</w>")
    for pair in learned:
        word = _merge(word, pair)
    return {
        "merges": [list(p) for p in learned],
        "history": history,
        "vocabulary": vocabulary,
        "tokens": list(word),
        "steps": [
            Step(
                label="start",
                formula="every character is a token; </w> marks a word's end",
                value=sorted({c for w in body.words for c in w}),
            ),
            Step(
                label="each step",
                formula="count adjacent pairs (weighted by word counts), merge the most frequent",
                value=len(history),
            ),
            Step(label=f"tokenize {body.tokenize!r}", formula="apply the learned merges in order", value=list(word)),
        ],
        "notes": [
            "Ties go to the pair seen first, reading the words in the order given (as in Sennrich et al.'s "
            "reference code), so every run gives the same merges."
        ],
    }


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


# ---------------------------------------------------------------- attention


class AttentionInput(LabInput):
    q: Matrix = Field(
        default_factory=lambda: [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], description="Queries, by rows."
    )
    k: Matrix = Field(
        default_factory=lambda: [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], description="Keys, by rows."
    )
    v: Matrix = Field(
        default_factory=lambda: [[1, 2, 0, 0], [0, 1, 0, 3], [2, 0, 1, 0], [0, 0, 2, 1]], description="Values, by rows."
    )
    causal: StrictBool = Field(False, description="Query i sees keys up to its own position (aligned at the end).")
    heads: StrictInt = Field(1, ge=1, le=8, description="Split the width into this many heads.")


def attention(body: AttentionInput) -> dict[str, Any]:
    q, k, v = _matrix(body.q, "q"), _matrix(body.k, "k"), _matrix(body.v, "v")
    if q.shape[1] != k.shape[1] or k.shape[0] != v.shape[0]:
        raise InputError(
            f"q {list(q.shape)} and k {list(k.shape)} need one width; k and v {list(v.shape)} one length", "k"
        )
    d, h = q.shape[1], body.heads
    if d % h or v.shape[1] % h:
        raise InputError(f"the width {d} must divide into {h} heads", "heads")
    t_q, t_k = q.shape[0], k.shape[0]
    split = lambda m: m.view(m.shape[0], h, -1).transpose(0, 1)  # noqa: E731  (T, d) -> (heads, T, d/h)
    qh, kh, vh = split(q), split(k), split(v)
    d_k = d // h
    scores = qh @ kh.transpose(-2, -1)
    scaled = scores / math.sqrt(d_k)
    allowed = (
        torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q)
        if body.causal
        else torch.ones(t_q, t_k, dtype=torch.bool)
    )
    masked = scaled.masked_fill(~allowed, -math.inf)
    weights = masked.softmax(-1)
    output = weights @ vh
    reference = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed)
    return {
        "scores": _list(scores),
        "scaled": _list(scaled),
        "weights": _list(weights),
        "output": _list(output.transpose(0, 1).reshape(t_q, -1)),
        "kind": "self" if t_q == t_k else "cross",
        "steps": [
            Step(label="scores", formula=f"Q K^T: ({t_q} x {d_k}) (x) ({d_k} x {t_k}) per head", value=_list(scores)),
            Step(label="scaled", formula=f"Q K^T / sqrt(d_k), d_k = {d}/{h} = {d_k}", value=_list(scaled)),
            Step(
                label="mask",
                formula="causal: -inf above the diagonal (aligned so the last query sees every key)"
                if body.causal
                else "none",
                value=_list(allowed.to(F64)),
            ),
            Step(label="weights", formula="softmax over each row (each row sums to 1)", value=_list(weights)),
            Step(
                label="output",
                formula="weights V, heads concatenated",
                value=_list(output.transpose(0, 1).reshape(t_q, -1)),
            ),
        ],
        "checks": [
            f"output equals torch.nn.functional.scaled_dot_product_attention (largest difference "
            f"{float((reference - output).abs().max()):.1e})"
        ],
        "notes": [
            f"{t_q} queries, {t_k} keys: "
            + ("cross-attention, keys and values from another sequence." if t_q != t_k else "self-attention.")
        ],
    }


# ---------------------------------------------------------------- positional encoding


class PositionalInput(LabInput):
    positions: StrictInt = Field(10, ge=1, le=64, description="Positions 0 .. positions-1.")
    d_model: StrictInt = Field(16, ge=2, le=64)
    shift: StrictInt = Field(3, ge=0, le=64, description="k in PE(pos + k) = M_k PE(pos).")

    @field_validator("d_model")
    @classmethod
    def _even(cls, d: int) -> int:
        if d % 2:
            raise ValueError("d_model is even: sin and cos come in pairs")
        return d


def positional_encoding(body: PositionalInput) -> dict[str, Any]:
    from models.transformer import sinusoid_table

    d = body.d_model
    frequencies = 1 / torch.pow(torch.tensor(10000.0, dtype=F64), torch.arange(0, d, 2, dtype=F64) / d)
    angles = torch.arange(body.positions + body.shift, dtype=F64)[:, None] * frequencies  # (T, d/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # PE(pos, 2i), PE(pos, 2i+1)
    zoo = float((sinusoid_table(body.positions + body.shift, d).to(F64) - table).abs().max())
    m = torch.zeros(d, d, dtype=F64)  # block-diagonal rotation by k * omega_i
    for i, w in enumerate(frequencies):
        c, s = math.cos(body.shift * w), math.sin(body.shift * w)
        m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=F64)
    shifted = table[: body.positions] @ m.T
    error = float((shifted - table[body.shift : body.shift + body.positions]).abs().max())
    return {
        "table": _list(table[: body.positions], 5),
        "frequencies": _list(frequencies, 8),
        "m_k": _list(m, 6),
        "max_error": error,
        "steps": [
            Step(label="PE(pos, 2i)", formula="sin(pos / 10000^(2i/d)), i = 0 .. d/2 - 1", value=None),
            Step(label="PE(pos, 2i+1)", formula="cos(pos / 10000^(2i/d))", value=None),
            Step(label="frequencies", formula="omega_i = 1 / 10000^(2i/d)", value=_list(frequencies, 8)),
            Step(
                label=f"M_{body.shift}",
                formula="block-diagonal: [[cos k omega_i, sin k omega_i], [-sin k omega_i, cos k omega_i]] on each "
                "(sin, cos) pair",
                value=None,
            ),
            Step(
                label=f"PE(pos + {body.shift}) - M_{body.shift} PE(pos)",
                formula="largest absolute difference over the table",
                value=error,
            ),
        ],
        "checks": [
            f"the zoo's transformer table (models.transformer.sinusoid_table, float32) differs by at most {zoo:.1e}"
        ],
        "errata": [
            Erratum(
                section="8.3 positional encoding",
                notes_say="i in {1, ..., d/2}",
                correct="i in {0, ..., d/2 - 1}",
                convention=False,
            )
        ],
    }


# ---------------------------------------------------------------- parameters and memory (the quiz)


class LayersInput(LabInput):
    sizes: list[StrictInt] = Field(
        default_factory=lambda: [10, 200, 100, 1],
        min_length=2,
        max_length=12,
        description="Input, hidden..., output widths.",
    )
    batch_size: StrictInt = Field(32, ge=1, le=65_536)
    bytes_per_value: StrictInt = Field(4, ge=1, le=8, description="4 for float32.")
    optimizer: Literal["sgd", "sgd-momentum", "adam", "adamw"] = "adam"

    @field_validator("sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= s <= 65_536 for s in sizes):
            raise ValueError("every width is between 1 and 65,536")
        return sizes


def parameters(body: LayersInput) -> dict[str, Any]:
    rows, weights, biases = [], 0, 0
    for i, (a, b) in enumerate(zip(body.sizes, body.sizes[1:], strict=False)):
        rows.append({"layer": f"W{i + 1}", "shape": [b, a], "weights": a * b, "biases": b, "formula": f"{a}*{b} + {b}"})
        weights, biases = weights + a * b, biases + b
    model = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(body.sizes, body.sizes[1:], strict=False)])
    counted = sum(p.numel() for p in model.parameters())
    return {
        "layers": rows,
        "weights": weights,
        "with_biases": weights + biases,
        "steps": [
            Step(
                label="weights",
                formula=" + ".join(f"{a}*{b}" for a, b in zip(body.sizes, body.sizes[1:], strict=False)),
                value=weights,
            ),
            Step(
                label="with biases", formula=f"{weights:,} + {biases:,} (one per output unit)", value=weights + biases
            ),
        ],
        "checks": [f"nn.Sequential of nn.Linear layers counts {counted:,} parameters"],
    }


def memory(body: LayersInput) -> dict[str, Any]:
    from .choices import OPTIMIZERS
    from .memory import estimate_memory

    params = parameters(body)["with_biases"]
    big_m = params * body.bytes_per_value
    per_sample = sum(body.sizes[1:]) * body.bytes_per_value / (len(body.sizes) - 1)  # m: mean output per layer
    layers = len(body.sizes) - 1
    forward = big_m + body.batch_size * per_sample * layers
    copies = OPTIMIZERS[body.optimizer].state_copies
    training = forward + big_m + copies * big_m
    dtype = {8: "float64", 4: "float32", 2: "bfloat16"}.get(body.bytes_per_value)
    exact = None
    if dtype is not None:
        layers_spec = []
        for i, (a, b) in enumerate(zip(body.sizes, body.sizes[1:], strict=False)):
            layers_spec.append({"type": "Linear", "in_features": a, "out_features": b})
            if i < layers - 1:
                layers_spec.append({"type": "ReLU"})
        config = {"input_shape": [body.sizes[0]], "layers": layers_spec}
        inference = estimate_memory("sequential", config, batch_size=body.batch_size, mode="inference", dtype=dtype)
        train = estimate_memory("sequential", config, batch_size=body.batch_size, optimizer=body.optimizer, dtype=dtype)
        exact = {"inference": inference.peak_bytes, "train": train.peak_bytes}
    return {
        "forward_bytes": int(forward),
        "training_bytes": int(training),
        "exact": exact,
        "readable": {
            "M": format_bytes(big_m),
            "forward": format_bytes(forward),
            "training": format_bytes(training),
            **(
                {"exact_inference": format_bytes(exact["inference"]), "exact_train": format_bytes(exact["train"])}
                if exact
                else {}
            ),
        },
        "steps": [
            Step(label="M", formula=f"{params:,} parameters x {body.bytes_per_value} bytes", value=format_bytes(big_m)),
            Step(label="m", formula="one sample's output per layer, averaged", value=format_bytes(per_sample)),
            Step(
                label="forward (the notes)",
                formula=f"M + B m layers = {format_bytes(big_m)} + {body.batch_size} x {format_bytes(per_sample)} "
                f"x {layers}",
                value=format_bytes(forward),
            ),
            Step(
                label="training",
                formula=f"forward + gradients (M) + {body.optimizer} state ({copies}M)",
                value=format_bytes(training),
            ),
            Step(
                label="exact (traced by Layerscope's engine)",
                formula="what the allocator holds at the peak",
                value=exact and {k: format_bytes(v) for k, v in exact.items()},
            ),
        ],
        "errata": [
            Erratum(
                section="9.1 quiz, memory",
                notes_say="backward: M + B m layers, the same as forward",
                correct="training also holds the gradients (about M) and the optimizer's state (Adam: 2M); autograd "
                "keeps what backward needs, not every output",
                convention=False,
            )
        ],
    }


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Lab:
    name: str
    title: str
    section: str  # where the notes teach it
    input_cls: type[LabInput]
    compute: Callable[[Any], dict[str, Any]]
    layer_types: tuple[str, ...] = ()  # the explorer links these layers' rows to the lab

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "section": self.section,
            "layer_types": list(self.layer_types),
            "input_schema": self.input_cls.model_json_schema(),
            "defaults": self.input_cls().model_dump(mode="json"),
        }


LABS: dict[str, Lab] = {
    lab.name: lab
    for lab in (
        Lab(
            "pooling",
            "Max and average pooling",
            "4.2",
            PoolingInput,
            pooling,
            ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"),
        ),
        Lab("convolution", "Convolution", "4.1", ConvolutionInput, convolution, ("Conv1d", "Conv2d", "Conv3d")),
        Lab("softmax", "Softmax and cross-entropy", "6.2-6.3", SoftmaxInput, softmax, ("Softmax", "LogSoftmax")),
        Lab("backprop", "Backpropagation", "3", BackpropInput, backprop),
        Lab("dropout", "Dropout", "4.4", DropoutInput, dropout, ("Dropout", "Dropout1d", "Dropout2d")),
        Lab(
            "batchnorm",
            "Batch normalisation",
            "5",
            BatchNormInput,
            batchnorm,
            ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
        ),
        Lab("bpe", "Byte-pair encoding", "8.1", BpeInput, bpe, ("TokenEmbedding",)),
        Lab("attention", "Attention", "8.2", AttentionInput, attention, ("MultiHeadAttention",)),
        Lab(
            "positional-encoding",
            "Positional encoding",
            "8.3",
            PositionalInput,
            positional_encoding,
            ("SinusoidalPositionalEncoding",),
        ),
        Lab("parameters", "Counting parameters (quiz 1)", "9.1", LayersInput, parameters, ("Linear",)),
        Lab("memory", "Memory of a forward and a training step (quiz 1)", "9.1", LayersInput, memory),
    )
}


@functools.cache
def describe_labs() -> list[dict[str, Any]]:
    """Every lab's description (input schema, the notes' example): fixed, so built once."""
    return [lab.describe() for lab in LABS.values()]


def run_lab(name: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """Compute lab ``name`` from the student's values (none: the notes' example)."""
    from pydantic import ValidationError

    lab = LABS.get(name)
    if lab is None:
        raise InputError(f"no lab {name!r}; the labs are {', '.join(LABS)}", "name")
    try:
        body = lab.input_cls.model_validate(values or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        cause = (first.get("ctx") or {}).get("error")
        raise InputError(f"lab {name}: {field}: {cause or first['msg']}", field) from None
    result = lab.compute(body)
    steps = [s.model_dump() if isinstance(s, Step) else s for s in result.pop("steps", [])]
    errata = [e.model_dump() if isinstance(e, Erratum) else e for e in result.pop("errata", [])]
    return {
        "lab": name,
        "title": lab.title,
        "section": lab.section,
        "inputs": body.model_dump(mode="json"),
        **result,
        "steps": steps,
        "errata": errata,
        "checks": result.get("checks", []),
        "notes": result.get("notes", []),
    }
