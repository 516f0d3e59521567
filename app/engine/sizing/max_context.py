"""The longest context that fits a GPU at a given batch, from the exact trace.

For a generation the context is the prompt plus the new tokens (the prompt is what
grows; ``new_tokens`` stays as asked); for a training step or a forward it is the
sequence length. The prompt lengths 1,024 and 2,048 (or the config's whole context when
it is shorter) draw a line, and the largest length the line says fits is estimated to
check it (``search.largest_fitting``, three estimates where the peak is affine in the
length); where it is not (attention that keeps a length x length score), the search
goes on with estimates only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from torch import nn

from ..errors import InputError
from ..gpus import DEFAULT_GPU, get_gpu
from ..memory import MemoryReport, estimate_memory, token_context
from ..step import Step
from .search import fit_note, largest_fitting

FIRST_LENGTH = 1024  # the line's first prompt length (or the whole room, when it is shorter): long enough that
# the prefill, not the first decode steps, holds the peak, as it does at the lengths the answer usually has


class MaxContextReport(BaseModel):
    """The longest context whose peak fits a GPU's usable memory at ``batch_size``."""

    kind: str = "max-context"
    gpu: str
    usable_bytes: int
    batch_size: int
    new_tokens: int = Field(description="New tokens generated after the prompt (0 outside generation).")
    prompt_tokens: int = Field(description="The longest prompt (sequence) that fits (0: not even one token).")
    context_tokens: int = Field(description="prompt_tokens + new_tokens: the positions the step holds.")
    config_context: int = Field(description="The config's own limit on positions.")
    limited_by_config: bool = Field(description="The config's context, not the memory, is what stops it.")
    peak_bytes: int | None = Field(description="The peak at prompt_tokens (null when it is 0).")
    next_peak_bytes: int | None = Field(description="The peak at one more prompt token (null at the config's limit).")
    next_from_line: bool
    estimates: int
    mode: str
    precision: str
    notes: list[str] = Field(default_factory=list)


def max_context(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    gpu: str = DEFAULT_GPU,
    batch_size: int = 1,
    **kwargs: Any,
) -> MaxContextReport:
    """The longest prompt (with ``new_tokens`` after it, in a generation) whose estimated peak at ``batch_size``
    fits ``gpu``'s usable memory. ``kwargs`` are ``estimate_memory``'s step options, without input_size."""
    if "input_size" in kwargs or "input_data" in kwargs:
        raise InputError("max_context chooses the sequence length: give no input_size or input_data", "input_size")
    if not isinstance(model_or_name, str):
        raise InputError("max_context needs a named token model (its config says its context)", "architecture")
    step, kwargs = Step.split(kwargs)
    kwargs.pop("measure", None)
    context = token_context(model_or_name, config)
    if context is None:
        raise InputError(f"{model_or_name} does not take tokens: max_context is for token models", "architecture")
    new_tokens = step.new_tokens if step.generates else 0
    room = context - new_tokens + 1 if step.generates else context  # the last new token is never fed back
    if room < 1:
        raise InputError(f"{new_tokens:,} new tokens do not fit this config's context of {context:,}", "new_tokens")
    usable = get_gpu(gpu).usable_bytes()
    reports: dict[int, MemoryReport] = {}

    def peak(length: int) -> int:
        reports[length] = estimate_memory(
            model_or_name, config, input_size=(length,), batch_size=batch_size, step=step, **kwargs
        )
        return reports[length].peak_bytes

    fit = largest_fitting(peak, usable, low=1, high=room, first=FIRST_LENGTH, second=2 * FIRST_LENGTH)
    sample = next(iter(reports.values()))
    notes = [
        f"usable = the GPU's memory less {get_gpu(gpu).memory_bytes - usable:,} bytes (CUDA context reserve and "
        "the allocator's share); each figure is estimate_memory's exact peak at that prompt length",
        fit_note(fit, "prompt length"),
    ]
    if fit.size == room:
        notes.append(f"the whole context of {context:,} positions fits: the config, not the memory, is the limit")
    return MaxContextReport(
        gpu=gpu,
        usable_bytes=usable,
        batch_size=batch_size,
        new_tokens=new_tokens,
        prompt_tokens=fit.size,
        context_tokens=fit.size + new_tokens if fit.size else 0,
        config_context=context,
        limited_by_config=fit.size == room,
        peak_bytes=fit.peak,
        next_peak_bytes=fit.next_peak,
        next_from_line=fit.next_from_line,
        estimates=len(reports),
        mode=sample.mode,
        precision=sample.precision,
        notes=notes,
    )
