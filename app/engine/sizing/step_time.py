"""A roofline estimate of a step's time on a GPU.

``estimate_step_time`` divides the step's FLOPs (traced) by the GPU's peak at the
step's dtype times a utilisation, and its memory traffic by the bandwidth times an
efficiency; the larger wins. Both assumptions are arguments; the report says it is
an estimate.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from torch import nn

from ..choices import dtype_name
from ..errors import InputError
from ..gpus import DEFAULT_GPU, get_gpu
from ..memory import estimate_memory
from ..step import Step


class StepTimeReport(BaseModel):
    """A roofline estimate: labelled as such, with its assumptions."""

    kind: str = "step-time"
    estimate: bool = Field(True, description="Always true: a model of the time, not a measurement.")
    gpu: str
    mode: str
    flops: int = Field(description="FLOPs of the step (traced).")
    bytes_moved: int = Field(description="Bytes read and written from memory, as modelled (see assumptions).")
    peak_tflops: float = Field(description="The GPU's dense peak at the step's compute dtype.")
    utilization: float = Field(description="Share of the peak FLOP/s assumed reached (model FLOPs utilisation).")
    bandwidth_efficiency: float = Field(description="Share of the memory bandwidth assumed reached.")
    compute_seconds: float
    memory_seconds: float
    seconds: float = Field(description="The larger of the two: the step's estimated time.")
    bound: str = Field(description="compute or memory: which limit sets the time.")
    prefill_seconds: float | None = Field(None, description="generate: the prompt's forward.")
    decode_seconds_per_token: float | None = Field(None, description="generate: one decode step.")
    tokens_per_second: float | None = Field(None, description="generate: new tokens per second, whole batch.")
    assumptions: list[str]


def estimate_step_time(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    gpu: str = DEFAULT_GPU,
    utilization: float = 0.4,
    bandwidth_efficiency: float = 0.8,
    **kwargs: Any,
) -> StepTimeReport:
    """Roofline time of a training step, an inference forward, or a generation (prefill and per-token decode)."""
    if not 0.01 <= utilization <= 1 or not 0.01 <= bandwidth_efficiency <= 1:
        raise InputError("utilization and bandwidth_efficiency are shares between 0.01 and 1", "utilization")
    device = get_gpu(gpu)
    step, kwargs = Step.split(kwargs)
    kwargs.pop("measure", None)
    report = estimate_memory(model_or_name, config, step=step, **kwargs)
    compute_dtype = step.compute_dtype
    peak = device.peak_tflops(compute_dtype) * 1e12
    flop_rate, byte_rate = peak * utilization, device.bandwidth_gb_s * 1e9 * bandwidth_efficiency
    weights = report.breakdown.weights
    assumptions = [
        f"{device.name}: {device.peak_tflops(compute_dtype):,.1f} TFLOP/s dense at {dtype_name(compute_dtype)}, "
        f"{device.bandwidth_gb_s:,.0f} GB/s ({device.source})",
        f"{utilization:.0%} of the peak FLOP/s and {bandwidth_efficiency:.0%} of the bandwidth are reached",
    ]
    if report.mode == "generate":
        prompt = estimate_memory(
            model_or_name, config, step=step.replace(mode="inference", kv_cache_dtype="auto"), **kwargs
        )
        prefill = max(prompt.step_flops / flop_rate, (weights + report.breakdown.activations) / byte_rate)
        decodes = max(1, (report.new_tokens or 1) - 1)
        decode_flops = max(0, report.step_flops - prompt.step_flops) / decodes
        cache = report.kv_cache_bytes or 0
        decode_bytes = weights + cache // 2  # every weight once per token, and the cache at its mean length
        decode = max(decode_flops / flop_rate, decode_bytes / byte_rate)
        total = prefill + decodes * decode
        assumptions.append(
            "prefill: the prompt's forward FLOPs, or reading the weights once; decode: each token reads every "
            "weight and the KV cache (at its mean length) once"
        )
        return StepTimeReport(
            gpu=gpu,
            mode=report.mode,
            flops=report.step_flops,
            bytes_moved=weights + decodes * decode_bytes,
            peak_tflops=peak / 1e12,
            utilization=utilization,
            bandwidth_efficiency=bandwidth_efficiency,
            compute_seconds=report.step_flops / flop_rate,
            memory_seconds=(weights + decodes * decode_bytes) / byte_rate,
            seconds=total,
            bound="memory" if decode_bytes / byte_rate > decode_flops / flop_rate else "compute",
            prefill_seconds=prefill,
            decode_seconds_per_token=decode,
            tokens_per_second=report.batch_size / decode,
            assumptions=assumptions,
        )
    if report.mode == "train":
        moved = 3 * weights + 2 * report.breakdown.optimizer_state + 2 * weights + 2 * report.saved_activation_bytes
        assumptions.append(
            "memory traffic: weights read in forward and backward and updated, gradients written and read, "
            "optimizer state read and written, saved activations written and read once"
        )
    else:
        moved = weights + 2 * sum(layer.output_bytes for layer in report.layers)
        assumptions.append("memory traffic: every weight read once, every layer's output written and read once")
    compute, memory = report.step_flops / flop_rate, moved / byte_rate
    return StepTimeReport(
        gpu=gpu,
        mode=report.mode,
        flops=report.step_flops,
        bytes_moved=moved,
        peak_tflops=peak / 1e12,
        utilization=utilization,
        bandwidth_efficiency=bandwidth_efficiency,
        compute_seconds=compute,
        memory_seconds=memory,
        seconds=max(compute, memory),
        bound="compute" if compute >= memory else "memory",
        assumptions=assumptions,
    )
