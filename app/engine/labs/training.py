"""Labs on learning: softmax and cross-entropy, backpropagation through a tiny MLP."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt, model_validator

from ..errors import InputError
from .base import F64, MAX_SIDE, LabInput, LabStep, Matrix, Number, _fmt, _list, _matrix

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


def softmax_lab(body: SoftmaxInput) -> dict[str, Any]:
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
            LabStep(
                label="scaled logits", formula=f"z / T, T = {_fmt(body.temperature)}", value=_list(scaled.detach())
            ),
            LabStep(label="exponentials", formula="exp(z_i / T)", value=_list(exps)),
            LabStep(label="their sum", formula="sum_j exp(z_j / T)", value=round(float(exps.sum()), 6)),
            LabStep(label="probabilities", formula="p_i = exp(z_i / T) / sum_j exp(z_j / T)", value=_list(p.detach())),
            LabStep(
                label="target distribution",
                formula=f"y = (1 - {_fmt(body.label_smoothing)}) one_hot({body.target}) + "
                f"{_fmt(body.label_smoothing)}/{k}",
                value=_list(y),
            ),
            LabStep(
                label="cross-entropy",
                formula="L = -sum_i y_i log p_i (= -log p_target without smoothing)",
                value=round(float(loss.detach()), 8),
            ),
            LabStep(label="gradient", formula="dL/dz = (p - y) / T", value=_list((p.detach() - y) / body.temperature)),
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


def backprop_lab(body: BackpropInput) -> dict[str, Any]:
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
        LabStep(label="hidden pre-activation", formula="z1 = W1 x + b1", value=_list(z1.detach())),
        LabStep(label="hidden activation", formula=f"h = {body.activation}(z1)", value=_list(h.detach())),
        LabStep(label="output", formula="y = W2 h + b2", value=_list(y.detach())),
        LabStep(label="loss", formula="L = 1/2 sum (y - t)^2", value=round(float(loss.detach()), 10)),
        LabStep(label="dL/dy", formula="y - t", value=_list(dloss_dy)),
        LabStep(
            label=f"{body.activation}'(z1)",
            formula={"sigmoid": "h (1 - h)", "relu": "1 where z1 > 0", "tanh": "1 - h^2"}[body.activation],
            value=_list(dact),
        ),
        LabStep(label="dL/dz1 (chain rule)", formula="(W2^T dL/dy) * act'(z1)", value=_list(delta1)),
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
