"""The largest batch that fits a GPU, from the exact trace.

``max_batch`` needs three estimates where the peak is affine in the batch (weights and
optimizer state do not grow with it; activations and the KV cache grow linearly): batch
2 and 4 draw the line (batch 1 can differ in kind, and is estimated only when 2 does not
fit), and the largest batch the line says fits is estimated to check it
(``search.largest_fitting``); where the check fails, the search goes on.
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
from .search import Fit, fit_note, largest_fitting


class MaxBatchReport(BaseModel):
    """The largest batch whose peak fits a GPU's usable memory: peak_bytes <= usable_bytes < next_peak_bytes."""

    kind: str = "max-batch"
    gpu: str
    usable_bytes: int
    batch_size: int = Field(description="The largest batch that fits (0: not even one sample).")
    peak_bytes: int | None = Field(description="The peak at batch_size (null when it is 0).")
    next_peak_bytes: int | None = Field(description="The peak at batch_size + 1 (null at the batch limit).")
    estimates: int = Field(description="Estimates it took.")
    next_from_line: bool = Field(
        False,
        description="next_peak_bytes is the line through three estimates that lie on it exactly, not a fourth "
        "estimate.",
    )
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
    usable = get_gpu(gpu).usable_bytes()
    reports: dict[int, MemoryReport] = {}

    def peak(batch: int) -> int:
        reports[batch] = estimate_memory(model_or_name, config, batch_size=batch, step=step, **kwargs)
        return reports[batch].peak_bytes

    fit = largest_fitting(peak, usable, low=1, high=MAX_BATCH, first=2, second=4)
    return _report(gpu, usable, fit, reports[next(iter(reports))])


def _report(gpu: str, usable: int, fit: Fit, sample: MemoryReport) -> MaxBatchReport:
    notes = [
        f"usable = the GPU's memory less {get_gpu(gpu).memory_bytes - usable:,} bytes (CUDA context reserve and "
        "the allocator's share); each figure is estimate_memory's exact peak at that batch",
        fit_note(fit, "batch size"),
    ]
    if fit.size == 0:
        notes.append("not even one sample fits")
    return MaxBatchReport(
        gpu=gpu,
        usable_bytes=usable,
        batch_size=fit.size,
        peak_bytes=fit.peak,
        next_peak_bytes=fit.next_peak,
        estimates=len(fit.peaks),
        next_from_line=fit.next_from_line,
        mode=sample.mode,
        precision=sample.precision,
        notes=notes,
    )
