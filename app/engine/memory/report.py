"""Typed memory report: the exact peak, what it is made of, and the textbook estimate beside it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..choices import Mode, OptimizerName, PrecisionName, ShardingName
from ..gpus import GpuFit

Phase = Literal["forward", "backward", "optimizer", "prefill", "decode"]


class MemoryBreakdown(BaseModel):
    """What the allocator holds at the peak, by kind; the parts add up to ``peak_bytes``."""

    weights: int = Field(description="Parameters.")
    buffers: int = Field(description="Buffers (BatchNorm running statistics, fixed tables).")
    gradients: int = Field(description="Parameter gradients live at the peak.")
    optimizer_state: int = Field(description="Optimizer state kept between steps (Adam: two moments per parameter).")
    activations: int = Field(description="Tensors saved for backward that are still alive at the peak.")
    inputs: int = Field(description="The input batch and its labels.")
    transient: int = Field(
        description="Everything else live at the peak: outputs not saved for backward, activation gradients, "
        "the optimizer's scratch tensors."
    )


class LayerMemory(BaseModel):
    """Memory one module is responsible for in the step."""

    path: str = Field(description="Module path ('' for the whole model, '(loss)' for the loss).")
    type: str
    saved_bytes: int = Field(description="Bytes this module's own ops saved for backward (each storage once).")
    output_bytes: int = Field(description="Bytes of the module's outputs.")


class TextbookFormula(BaseModel):
    """The course's estimate: M + B*m*layers for the forward pass; training adds gradients and optimizer state."""

    expression: str
    params_bytes: int = Field(description="M: bytes of the parameters.")
    batch_size: int = Field(description="B.")
    per_sample_layer_bytes: float = Field(description="m: mean bytes of one sample's output, over the layers.")
    layers: int = Field(description="Number of leaf layers.")
    forward_bytes: int = Field(description="M + B*m*layers.")
    training_bytes: int = Field(description="Forward + gradients (M) + optimizer state (Adam 2M, momentum M, SGD 0).")
    estimate_bytes: int = Field(description="The textbook figure for the chosen mode.")
    exact_bytes: int = Field(description="Layerscope's exact peak for the same mode.")
    lines: list[str] = Field(description="The arithmetic with the numbers filled in, and why the figures differ.")


class StageMemory(BaseModel):
    """One pipeline stage's GPU (a rank kind of its own): what it holds and its peak."""

    stage: int = Field(description="Stage index (0: the first, which embeds the tokens).")
    holds: str = Field(description="The layers on this stage.")
    in_flight_microbatches: int = Field(description="Micro-batches whose activations it holds at once under 1F1B.")
    peak_bytes: int = Field(description="This stage's peak.")
    phase: Phase = Field(description="Where its peak happens.")
    breakdown: MemoryBreakdown
    persistent_bytes: int = Field(description="Held between steps: its weights, buffers, gradients, optimizer state.")


class MemoryReport(BaseModel):
    """Peak memory of one steady-state training step or one inference forward."""

    kind: Literal["memory"] = "memory"
    architecture: str | None
    config: dict[str, Any] | None
    model_class: str
    input_shapes: list[list[int]]
    batch_size: int
    dtype: str = Field(description="Dtype of the parameters.")
    mode: Mode
    optimizer: OptimizerName | None = Field(description="Null for inference.")
    precision: PrecisionName
    device: str = Field(description="Device the step is estimated (and measured) for.")
    estimated: bool = Field(
        True,
        description="True: figures estimated on fake tensors. False: the model reads its data, so they were "
        "measured on a real step instead (measure=True).",
    )
    peak_bytes: int = Field(description="Most bytes the allocator holds at once during the step.")
    phase: Phase = Field(description="Where the peak happens.")
    breakdown: MemoryBreakdown
    persistent_bytes: int = Field(description="Held between steps: weights, buffers, gradients, optimizer state.")
    saved_activation_bytes: int = Field(description="Everything autograd saves for backward in the forward pass.")
    step_flops: int = Field(description="FLOPs of the whole step (forward, and backward when training).")
    layers: list[LayerMemory]
    formula: TextbookFormula | None = Field(
        description="The course's estimate beside the exact one (null when measured)."
    )
    measured_peak_bytes: int | None = Field(None, description="Peak measured on a real run, when asked for.")
    measured_phase: Phase | None = Field(None, description="Where the measured peak happens.")
    measured_saved_activation_bytes: int | None = Field(None, description="Saved bytes counted on the real run.")
    error_percent: float | None = Field(None, description="(estimate - measured) / measured x 100.")
    measure_method: str | None = Field(None, description="How the real peak was read.")
    new_tokens: int | None = Field(None, description="generate: tokens generated after the prompt.")
    prompt_tokens: int | None = Field(None, description="generate: tokens of the prompt (the source, encoder-decoder).")
    kv_cache_bytes: int | None = Field(
        None,
        description="generate: bytes of the KV cache once every token is in it: 2 x layers x KV heads x head dim x "
        "tokens x batch x bytes per element (sliding-window layers keep their window).",
    )
    kv_cache_tokens: int | None = Field(None, description="generate: tokens per sequence the cache holds at the end.")
    kv_cache_tokens_at_peak: int | None = Field(
        None, description="generate: tokens per sequence the cache held when the peak happened."
    )
    kv_cache_formula: str | None = Field(None, description="generate: the cache's bytes, worked out.")
    offload: str | None = Field(None, description="Sharded training: what lives in host memory (optimizer, all).")
    host_bytes: int | None = Field(
        None, description="With offload: one rank's peak in host memory (its offloaded shards, state and step)."
    )
    kv_cache_dtype: str | None = Field(
        None, description="generate: how the cache stores keys and values (auto: the compute dtype; fp8, int8)."
    )
    measured_kv_cache_bytes: int | None = Field(None, description="generate: the real run's cache, when measured.")
    checkpointing: bool = Field(False, description="Each repeated block recomputed in backward.")
    peak_without_checkpointing_bytes: int | None = Field(
        None, description="checkpointing: the same step's peak without it (the saving is the difference)."
    )
    gpus: int = Field(1, description="Devices the step runs on; peak_bytes is then per device (the largest rank's).")
    sharding: ShardingName | None = Field(None, description="How the devices share the model (gpus > 1).")
    tp: int = Field(1, description="Tensor-parallel GPUs; peak_bytes is then each rank's (all hold equal shards).")
    pp: int = Field(1, description="Pipeline stages (one GPU each); peak_bytes is then the largest stage's.")
    microbatches: int | None = Field(None, description="Pipeline parallel: micro-batches the batch is cut into.")
    stages: list[StageMemory] | None = Field(
        None, description="Pipeline parallel: every stage's peak (each stage is a rank kind of its own)."
    )
    adapter: dict[str, Any] | None = Field(None, description="The LoRA or DoRA adapter fine-tuned, when one is.")
    quantization: dict[str, Any] | None = Field(None, description="How the base's linear weights are stored.")
    quantized_weight_bytes: int | None = Field(
        None, description="Bytes of the quantized layers' stored tensors (packed weights, scales, zeros, codes)."
    )
    quantized_weights: int | None = Field(None, description="Weights those layers hold (out x in each).")
    trainable_parameters: int | None = Field(None, description="Parameters the step trains (an adapter's only).")
    frozen_parameters: int | None = Field(None, description="Parameters it keeps frozen (a fine-tuned base).")
    fits: list[GpuFit] = Field(default_factory=list, description="peak_bytes against every GPU of GET /api/gpus.")
    notes: list[str] = Field(default_factory=list)
