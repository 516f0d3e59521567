"""Estimating: the peak memory of a training step, an inference forward or a generation, exactly, without
allocating.

The model is built on meta and materialised as fake tensors; one warm-up step
creates the optimizer state, then PyTorch's ``MemTracker`` follows every storage
of a second, steady-state step (zero_grad, forward, loss, backward,
optimizer.step) and gives the peak, broken down by kind. A saved-tensor hook
counts, storage by storage, what autograd keeps for backward and which layer
kept it. Nothing is allocated, so a 7B model is estimated on a laptop.
``measure=True`` also runs the step for real (``measure.py``) and reports both.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ..device import resolve_device
from ..errors import InputError, MemoryBudgetError, NeedsRealRunError
from ..gpus import fits
from ..step import Step
from ..tracing.selection import check_batch, check_module_count, select
from .measure import measure_into, measured_only
from .one_device import estimate_one_device
from .pipeline_parallel import estimate_pipeline_parallel
from .quantization import from_quantization_config
from .report import MemoryReport
from .runner import StepCase
from .sharding import estimate_sharded
from .tensor_parallel import estimate_tensor_parallel


def estimate_memory(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    *,
    step: Step | None = None,
    input_data: Any = None,
    measure: bool = False,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    input_kind: str | None = None,
    max_modules: int | None = None,
    real_run: contextlib.AbstractContextManager | None = None,
    **options: Any,
) -> MemoryReport:
    """Peak memory of one steady-state training step, one inference forward, or a generation; allocation-free.

    The step is ``step`` (a ``Step``), or its options as keywords: ``mode`` (train,
    inference, generate), ``optimizer``, ``precision`` (fp32, bf16, fp16, amp-bf16,
    amp-fp16, fp64) or ``dtype``, ``new_tokens``, ``checkpointing``, ``gpus`` and
    ``sharding`` (see ``Step``). ``mode="generate"`` generates ``new_tokens`` tokens
    greedily after a prompt of ``input_size`` tokens (a Hugging Face model as
    ``model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)`` does,
    with its default cache); the report adds the KV cache's bytes.
    ``checkpointing=True`` recomputes each repeated block in backward, and reports the
    peak without it beside. With ``gpus=N`` and ``sharding`` ("ddp", "zero2", "fsdp")
    ``batch_size`` is the per-device micro-batch and the peak is per device.

    ``input_data`` gives the forward's own arguments (a tensor, a tuple, or a dict of
    keyword arguments; a Hugging Face model given ``labels`` is trained on its own
    loss). With ``measure=True`` the same step also runs for real on ``device``
    (refused with ``MemoryBudgetError`` when the estimate exceeds ``budget_bytes``),
    on a private copy of the model, and the measured peak is reported beside the
    estimate.
    """
    if step is not None and options:
        raise InputError(f"give step or its options ({', '.join(options)}), not both", next(iter(options)))
    step = step if step is not None else Step.of(**options)
    step.check()
    batch_size = check_batch(batch_size)
    if step.generates and isinstance(model_or_name, str) and input_data is None:
        input_size = generation_prompt(model_or_name, config, input_size, step.new_tokens)
    selection = select(model_or_name, config, input_size, input_kind, dtype=step.param_dtype, input_data=input_data)
    check_module_count(selection.module, max_modules)
    if selection.input_data is not None:
        batch_size = selection.input_data.batch_size() or 1
    case = StepCase(selection, step, batch_size, resolve_device(device))
    return estimate_case(case, measure=measure, budget_bytes=budget_bytes, real_run=real_run)


def estimate_case(
    case: StepCase,
    measure: bool = False,
    budget_bytes: int | None = None,
    real_run: contextlib.AbstractContextManager | None = None,
) -> MemoryReport:
    """The estimate of a case whose selection and step are already checked (the engine's jobs start here)."""
    case = _with_stored_quantization(case)
    if measure and case.step.quantization is not None:
        raise InputError(
            "measure runs PyTorch's own layers here; quantized kernels (bitsandbytes, GPTQ, AWQ, fp8) need their "
            "GPU: the quantized layouts are checked by their storage (tests) and scripts/gpu_check.py",
            "measure",
        )
    try:
        report = _estimate_any(case)
        if case.step.checkpointing:
            plain = StepCase(case.selection, case.step.replace(checkpointing=False), case.batch_size, case.device)
            report.peak_without_checkpointing_bytes = _estimate_any(plain).peak_bytes
    except NeedsRealRunError as exc:
        if not measure:
            raise
        return measured_only(case, budget_bytes, real_run, exc)
    report.fits = fits(report.peak_bytes)
    if measure:
        if case.step.sharded:
            raise InputError(
                "measure runs one device; sharded estimates are checked by bench/sizing_accuracy.py", "measure"
            )
        if budget_bytes is not None and report.peak_bytes > budget_bytes:
            raise MemoryBudgetError(report.peak_bytes, budget_bytes)
        with real_run or contextlib.nullcontext():  # e.g. the service's one-run-per-device gate
            measure_into(report, case)
    return report


def _estimate_any(case: StepCase) -> MemoryReport:
    if case.step.tp > 1:
        return estimate_tensor_parallel(case)
    if case.step.pp > 1:
        return estimate_pipeline_parallel(case)
    return estimate_sharded(case) if case.step.sharded else estimate_one_device(case)


def generation_prompt(name: str, config: dict[str, Any] | None, input_size: Any, new_tokens: int) -> Any:
    """The prompt's shape for a generation: by default the family's input, shortened so that the prompt and the
    new tokens fit the context; a given prompt that does not fit is refused, saying by how much."""
    import models

    context = token_context(name, config)
    if context is None:
        return input_size
    arch = models.get_architecture(name)
    parsed = arch.parse_config(config)
    room = context - new_tokens + 1  # the last new token is never fed back
    if room < 1:
        raise InputError(f"{new_tokens:,} new tokens do not fit this config's context of {context:,}", "new_tokens")
    if input_size is None:
        return (min(arch.default_input(parsed)[0], room),)
    prompt = input_size[0] if isinstance(input_size, list | tuple) else input_size
    if prompt > room:
        raise InputError(
            f"a prompt of {prompt:,} tokens and {new_tokens:,} new ones pass this config's context of {context:,}: "
            f"the prompt can be {room:,} tokens at most",
            "input_size",
        )
    return input_size


def token_context(name: str, config: dict[str, Any] | None) -> int | None:
    """The positions a token model's config can attend to (its context), or None for a model of other inputs."""
    import models

    arch = models.get_architecture(name)
    parsed = arch.parse_config(config)
    if arch.context is None or arch.kind(parsed).value != "tokens":
        return None
    return arch.context(parsed)


def _with_stored_quantization(case: StepCase) -> StepCase:
    """The case with the quantization its config's checkpoint is stored in, unless the step names one."""
    if case.step.quantization is not None or not case.selection.owned or not case.selection.architecture:
        return case
    import models

    arch = models.get_architecture(case.selection.architecture)
    if arch.stored_quantization is None:
        return case
    spec = arch.stored_quantization(arch.parse_config(case.selection.config))
    if not spec:
        return case
    try:
        quantization = from_quantization_config(spec)
    except ValueError as exc:  # pydantic's, on values the config gives
        raise InputError(f"quantization_config: {exc}", "config.quantization_config") from None
    return StepCase(case.selection, case.step.replace(quantization=quantization), case.batch_size, case.device)
