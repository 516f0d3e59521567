"""The largest batch that fits a GPU, from the exact trace.

``max_batch`` needs few estimates: a step's peak is close to affine in the batch size
(weights and optimizer state do not grow with it; activations and the KV cache grow
linearly), so two estimates predict the answer and its neighbours confirm it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from torch import nn

from ..errors import InputError
from ..gpus import DEFAULT_GPU, get_gpu
from ..memory import MemoryReport, estimate_memory
from ..step import Step
from ..tracing.selection import MAX_BATCH


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
    step, kwargs = Step.split(kwargs)
    kwargs.pop("measure", None)
    device = get_gpu(gpu)
    usable = device.usable_bytes()
    peaks: dict[int, MemoryReport] = {}

    def peak(batch: int) -> int:
        if batch not in peaks:
            peaks[batch] = estimate_memory(model_or_name, config, batch_size=batch, step=step, **kwargs)
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
