"""GPU sizing from the exact trace: the largest batch that fits, and a roofline estimate of a step's time.

``max_batch`` needs few estimates: a step's peak is close to affine in the batch size
(weights and optimizer state do not grow with it; activations and the KV cache grow
linearly), so two estimates predict the answer and its neighbours confirm it.
``estimate_step_time`` is a roofline: the step's FLOPs (traced) over the GPU's peak
at the step's dtype times a utilisation, against its memory traffic over the
bandwidth times an efficiency; the larger wins. Both assumptions are arguments.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from torch import nn

from .errors import InputError
from .gpus import DEFAULT_GPU, get_gpu
from .memory import estimate_memory
from .memory_report import MemoryReport
from .selection import MAX_BATCH


class MaxBatchReport(BaseModel):
    """The largest batch whose peak fits a GPU's usable memory: peak_bytes <= usable_bytes < next_peak_bytes."""

    kind: str = "max-batch"
    gpu: str
    usable_bytes: int
    batch_size: int = Field(description="The largest batch that fits (0: not even one sample).")
    peak_bytes: int | None = Field(description="The peak at batch_size (null when it is 0).")
    next_peak_bytes: int | None = Field(description="The peak at batch_size + 1 (null at the batch limit).")
    estimates: int = Field(description="Estimates it took.")
    mode: str
    precision: str
    notes: list[str] = Field(default_factory=list)


def max_batch(
    model_or_name: str | nn.Module, config: dict[str, Any] | None = None, gpu: str = DEFAULT_GPU, **kwargs: Any
) -> MaxBatchReport:
    """The largest batch (per device, with ``gpus``) whose estimated peak fits ``gpu``'s usable memory.

    ``kwargs`` are ``estimate_memory``'s (input_size, mode, optimizer, precision, new_tokens,
    checkpointing, gpus, sharding...), without batch_size.
    """
    if "batch_size" in kwargs or "input_data" in kwargs:
        raise InputError(
            "max_batch chooses the batch size: give input_size, not batch_size or input_data", "batch_size"
        )
    kwargs.pop("measure", None)
    device = get_gpu(gpu)
    usable = device.usable_bytes()
    peaks: dict[int, MemoryReport] = {}

    def peak(batch: int) -> int:
        if batch not in peaks:
            peaks[batch] = estimate_memory(model_or_name, config, batch_size=batch, **kwargs)
        return peaks[batch].peak_bytes

    first = peak(1)
    if first > usable:
        return _report(gpu, usable, 0, None, first, peaks, "not even one sample fits")
    slope = max(1, peak(2) - first) if MAX_BATCH > 1 else 1
    fits = lambda batch: peak(batch) <= usable  # noqa: E731
    guess = min(MAX_BATCH, max(1, 1 + (usable - first) // slope))  # where the line crosses the usable memory
    if fits(guess):  # lo fits; hi does not (MAX_BATCH + 1: the limit)
        lo, hi = guess, MAX_BATCH + 1
        probe = guess + 1
        while probe <= MAX_BATCH and fits(probe):
            lo = probe
            probe = min(MAX_BATCH + 1, lo + max(1, (usable - peak(lo)) // slope + 1))
        hi = probe
    else:
        lo, hi = 1, guess
        probe = max(1, guess - max(1, (peak(guess) - usable) // slope + 1))
        while probe > lo and not fits(probe):
            hi = probe
            probe = max(lo, probe - max(1, (peak(probe) - usable) // slope + 1))
        lo = probe
    while hi - lo > 1:  # the line is not quite straight: bisect what is left
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    best = lo
    following = peak(best + 1) if best < MAX_BATCH else None
    return _report(gpu, usable, best, peak(best), following, peaks, None)


def _report(
    gpu: str,
    usable: int,
    batch: int,
    at: int | None,
    following: int | None,
    peaks: dict[int, MemoryReport],
    why: str | None,
) -> MaxBatchReport:
    sample = next(iter(peaks.values()))
    notes = [
        f"usable = the GPU's memory less {get_gpu(gpu).memory_bytes - usable:,} bytes (CUDA context reserve and "
        "the allocator's share); each figure is estimate_memory's exact peak at that batch",
    ]
    if why:
        notes.append(why)
    return MaxBatchReport(
        gpu=gpu,
        usable_bytes=usable,
        batch_size=batch,
        peak_bytes=at,
        next_peak_bytes=following,
        estimates=len(peaks),
        mode=sample.mode,
        precision=sample.precision,
        notes=notes,
    )


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
    kwargs.pop("measure", None)
    report = estimate_memory(model_or_name, config, **kwargs)
    compute_dtype = (
        "bfloat16"
        if report.precision in ("bf16", "amp-bf16")
        else ("float16" if report.precision in ("fp16", "amp-fp16") else report.dtype)
    )
    peak = device.peak_tflops(compute_dtype) * 1e12
    flop_rate, byte_rate = peak * utilization, device.bandwidth_gb_s * 1e9 * bandwidth_efficiency
    weights = report.breakdown.weights
    assumptions = [
        f"{device.name}: {device.peak_tflops(compute_dtype):,.1f} TFLOP/s dense at {compute_dtype}, "
        f"{device.bandwidth_gb_s:,.0f} GB/s ({device.source})",
        f"{utilization:.0%} of the peak FLOP/s and {bandwidth_efficiency:.0%} of the bandwidth are reached",
    ]
    if report.mode == "generate":
        prompt = estimate_memory(model_or_name, config, **{**kwargs, "mode": "inference"})
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
