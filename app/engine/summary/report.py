"""Typed reports the engine returns; every formatter (JSON, CSV, table, page) reads these."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, Field

Shape = list[int]


class LayerRow(BaseModel):
    """One module of the model, in tree order (parents before children)."""

    path: str = Field(description="Dotted module path, e.g. 'features.conv1'; '' for the whole model.")
    name: str = Field(description="Last component of the path (the class name for the whole model).")
    type: str = Field(description="Module class name, e.g. 'Conv2d'.")
    depth: int = Field(description="Nesting depth: 0 for the whole model, 1 for its direct children...")
    parent: str | None = Field(description="Path of the parent module; null for the whole model.")
    is_leaf: bool = Field(description="True when the module has no submodules.")
    calls: int = Field(description="Times the module ran in one forward pass (0: defined but unused).")
    input_shape: Shape | None = Field(description="Shape of the first tensor input, batch first.")
    input_shapes: list[Shape] = Field(description="Shapes of every tensor input, in argument order.")
    output_shape: Shape | None = Field(description="Shape of the first tensor output, batch first.")
    output_shapes: list[Shape] = Field(description="Shapes of every tensor output.")
    params: int = Field(
        description="Parameters this module holds itself (not its submodules'); a shared or tied "
        "parameter counts only at its first owner, so the column adds up to the total."
    )
    trainable_params: int = Field(description="Of `params`, those with requires_grad.")
    non_trainable_params: int = Field(description="Of `params`, those without requires_grad.")
    params_inclusive: int = Field(description="Parameters of this module and all its submodules.")
    buffers: int = Field(description="Elements in buffers this module holds itself (e.g. BatchNorm running stats).")
    macs: int = Field(
        description="Multiply-accumulates done by this module's own code in one forward pass of the whole "
        "batch, excluding its submodules (so the column adds up to the total)."
    )
    flops: int = Field(description="Floating-point operations of `macs`: FLOPs = 2 x MACs (one multiply, one add).")
    macs_inclusive: int = Field(description="MACs of this module and all its submodules.")
    flops_inclusive: int = Field(description="FLOPs of this module and all its submodules (2 x macs_inclusive).")
    output_bytes: int = Field(description="Bytes of all tensors this module outputs, for the whole batch.")
    shared_params: list[str] = Field(
        default_factory=list,
        description="Parameters of this module that are the same tensor as one owned earlier (tied weights).",
    )
    explain: list[str] = Field(
        default_factory=list, description="The formulas behind the figures, with the numbers filled in."
    )


class Totals(BaseModel):
    """Whole-model figures; the per-row columns add up to these."""

    params: int = Field(description="Distinct parameters (shared or tied weights counted once).")
    trainable_params: int
    non_trainable_params: int
    buffers: int = Field(description="Elements in buffers.")
    macs: int = Field(description="Multiply-accumulates for one forward pass of the whole batch.")
    flops: int = Field(description="FLOPs for one forward pass of the whole batch: 2 x MACs.")
    param_bytes: int = Field(description="Bytes the parameters occupy at the chosen dtype.")
    buffer_bytes: int = Field(description="Bytes the buffers occupy.")
    input_bytes: int = Field(description="Bytes of the input tensors for the whole batch.")
    output_bytes: int = Field(description="Bytes of the model's output for the whole batch.")
    activation_bytes: int = Field(
        description="Sum of every leaf layer's output bytes: the textbook B*m*layers, not what autograd keeps."
    )
    output_shape: Shape | None = Field(description="Shape of the model's (first) output.")
    active_params: int = Field(
        description="Parameters one token uses: params, less each mixture of experts' experts beyond its top-k "
        "(equal to params for a dense model)."
    )


class SummaryReport(BaseModel):
    """Per-layer shapes, parameters and FLOPs of one architecture at one input."""

    kind: Literal["summary"] = "summary"
    architecture: str | None = Field(description="Registered name, or null for a user-supplied module.")
    config: dict[str, Any] | None = Field(description="The validated config, every field filled in.")
    model_class: str
    input_kind: str = Field(description="vector, image, tokens or seq2seq.")
    input_size: list[int] = Field(description="One sample's shape, without the batch dimension.")
    input_shapes: list[Shape] = Field(description="Shapes of the tensors fed to the model, batch first.")
    batch_size: int
    dtype: str
    run: Literal["meta", "fake", "real"] = Field(
        "meta",
        description="How the figures were obtained: traced on meta tensors or fake tensors (nothing allocated), or "
        "measured on a real forward (a model that reads its data, with real input_data and allow_real_run).",
    )
    totals: Totals
    layers: list[LayerRow]
    notes: list[str] = Field(default_factory=list, description="Conventions and caveats worth knowing.")

    def row(self, path: str) -> LayerRow:
        """The row for ``path``; raises KeyError listing the closest paths."""
        for layer in self.layers:
            if layer.path == path:
                return layer
        close = difflib.get_close_matches(path, [layer.path for layer in self.layers], n=5)
        raise KeyError(f"no layer {path!r}" + (f"; closest: {', '.join(close)}" if close else ""))
