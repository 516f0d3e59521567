"""The quiz's labs: counting a network's parameters, and the memory of a forward and a training step."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, StrictInt, field_validator
from torch import nn

from ..choices import OPTIMIZERS, OptimizerName
from ..units import format_bytes
from .base import Erratum, LabInput, LabStep

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
    optimizer: OptimizerName = "adam"

    @field_validator("sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= s <= 65_536 for s in sizes):
            raise ValueError("every width is between 1 and 65,536")
        return sizes


def parameters_lab(body: LayersInput) -> dict[str, Any]:
    rows, weights, biases = [], 0, 0
    for i, (a, b) in enumerate(zip(body.sizes, body.sizes[1:], strict=False)):
        rows.append({"layer": f"W{i + 1}", "shape": [b, a], "weights": a * b, "biases": b, "formula": f"{a}*{b} + {b}"})
        weights, biases = weights + a * b, biases + b
    with torch.device("meta"):  # shapes without storage: widths up to 65,536 cost nothing
        model = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(body.sizes, body.sizes[1:], strict=False)])
    counted = sum(p.numel() for p in model.parameters())
    return {
        "layers": rows,
        "weights": weights,
        "with_biases": weights + biases,
        "steps": [
            LabStep(
                label="weights",
                formula=" + ".join(f"{a}*{b}" for a, b in zip(body.sizes, body.sizes[1:], strict=False)),
                value=weights,
            ),
            LabStep(
                label="with biases", formula=f"{weights:,} + {biases:,} (one per output unit)", value=weights + biases
            ),
        ],
        "checks": [f"nn.Sequential of nn.Linear layers (built on the meta device) counts {counted:,} parameters"],
    }


def memory_lab(body: LayersInput) -> dict[str, Any]:
    from ..memory.estimate import estimate_memory

    params = parameters_lab(body)["with_biases"]
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
            LabStep(
                label="M", formula=f"{params:,} parameters x {body.bytes_per_value} bytes", value=format_bytes(big_m)
            ),
            LabStep(label="m", formula="one sample's output per layer, averaged", value=format_bytes(per_sample)),
            LabStep(
                label="forward (the notes)",
                formula=f"M + B m layers = {format_bytes(big_m)} + {body.batch_size} x {format_bytes(per_sample)} "
                f"x {layers}",
                value=format_bytes(forward),
            ),
            LabStep(
                label="training",
                formula=f"forward + gradients (M) + {body.optimizer} state ({copies}M)",
                value=format_bytes(training),
            ),
            LabStep(
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
