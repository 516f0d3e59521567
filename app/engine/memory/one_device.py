"""Tracing one step on one device: the model materialised as fake tensors, one warm-up step, then
``MemTracker`` and the saved-tensor ledger over a steady-state step; the report built from what they saw.

``estimate.py`` (the entry points) and ``sharding.py`` (DDP builds on it) call ``estimate_one_device``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..choices import OPTIMIZERS
from ..errors import InputError
from ..step import Step
from ..tracing.cpu_workspace import op_workspace
from ..tracing.selection import Selection
from ..tracing.torch_internals import OpObserver, PhaseMemTracker, SavedTensorLedger, fake_mode, flop_counter
from ..tracing.tracer import Tracer, failures_translated, preserved_modes
from ..units import format_bytes
from .checkpointing import enable_checkpointing
from .generation import NotAffineError, TracedSteps, kv_cache, traces_every_step
from .notes import step_notes
from .report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula
from .runner import StepCase, StepRunner, materialize, meta_copy, optimizer_state_tensors, storage_bytes

LOSS = "(loss)"
PHASES = ("forward", "backward", "optimizer", "prefill", "decode")


def _prepare_model(case: StepCase) -> nn.Module:
    """The model the estimate runs: the engine's own meta build, or a meta copy (a user's module, or checkpointing,
    which changes the blocks' forwards)."""
    selection, step = case.selection, case.step
    model = selection.module if selection.owned and not step.checkpointing else meta_copy(selection.module)
    model.to(step.param_dtype)
    if step.checkpointing:
        enable_checkpointing(model)
    return model


def estimate_one_device(case: StepCase) -> MemoryReport:
    """The peak on one device, traced on fake tensors."""
    step = case.step
    model = _prepare_model(case)
    if step.trains and not any(p.requires_grad for p in model.parameters()):
        raise InputError(
            "this model has no trainable parameters, so a training step has nothing to update: "
            "ask for mode 'inference' (or add a layer with weights)",
            "mode",
        )
    with preserved_modes(model):
        model.train(step.trains)
        with fake_mode():
            materialize(model, case.device)
            runner = StepRunner(model, case, real=False)
            try:
                account = _track_step(runner, model, every_step=traces_every_step())
            except NotAffineError:  # a step's figures are not affine where steps were skipped: trace them all
                runner = StepRunner(model, case, real=False)
                account = _track_step(runner, model, every_step=True)
        params = list(model.parameters())
        param_bytes = storage_bytes(params)
        trainable_bytes = storage_bytes([p for p in params if p.requires_grad])
        buffer_bytes = storage_bytes(list(model.buffers()))
    return MemoryReport(
        **case.report_fields(),
        peak_bytes=account.peak,
        phase=account.phase if account.phase in PHASES else "forward",
        breakdown=_breakdown(account),
        persistent_bytes=param_bytes + buffer_bytes + (trainable_bytes if step.trains else 0) + account.optimizer_state,
        saved_activation_bytes=account.saved_total,
        step_flops=account.flops,
        layers=_layer_rows(model, account),
        formula=_formula(account, step, case.batch_size, param_bytes, trainable_bytes, account.peak),
        notes=step_notes(case),
        **_generation_fields(runner, account, case.selection),
    )


def _generation_fields(runner: StepRunner, account: StepAccount, selection: Selection) -> dict[str, Any]:
    """generate: the prompt, the new tokens and the KV cache (its bytes read off the cache's own tensors)."""
    if not runner.step.generates:
        return {}
    figures = kv_cache(runner.cache)
    prompt = selection.input_size[0]
    # Positions the cache has seen after the prefill (a sliding window holds fewer; the minimum below caps it).
    start = runner.seen_tokens - (runner.step.new_tokens - 1) if figures else prompt
    return {
        "new_tokens": runner.step.new_tokens,
        "prompt_tokens": prompt,
        "kv_cache_bytes": figures.bytes if figures else 0,
        "kv_cache_tokens": figures.tokens if figures else 0,
        "kv_cache_tokens_at_peak": min(start + account.peak_marker, figures.tokens) if figures else 0,
        "kv_cache_formula": figures.formula if figures else None,
    }


def _layer_rows(model: nn.Module, account: StepAccount) -> list[LayerMemory]:
    rows = []
    for path, module in model.named_modules():
        saved = account.saved_by_layer.get(path, 0)
        output = account.output_by_layer.get(path, 0)
        if saved or output:
            rows.append(LayerMemory(path=path, type=type(module).__name__, saved_bytes=saved, output_bytes=output))
    if account.saved_by_layer.get(LOSS):
        rows.append(LayerMemory(path=LOSS, type="loss", saved_bytes=account.saved_by_layer[LOSS], output_bytes=0))
    return rows


@dataclass
class StepAccount:
    """What one tracked step showed."""

    peak: int
    phase: str
    categories: dict[str, int]
    saved_at_peak: int
    saved_total: int
    saved_by_layer: dict[str, int]
    output_by_layer: dict[str, int]
    optimizer_state: int
    flops: int
    leaf_outputs: list[int]
    peak_marker: int = 0  # generate: decode steps begun when the peak happened


def _track_step(runner: StepRunner, model: nn.Module, every_step: bool = False) -> StepAccount:
    """Warm up, then track one step with MemTracker and the saved-tensor ledger.

    A generation traces only the steps that decide its peak unless ``every_step`` (the reference): the FLOPs
    and layer outputs of the skipped steps are added from their traced neighbours.
    """
    where = {"train": "training step", "generate": "generation"}.get(runner.step.mode, "forward")
    warm = Tracer(model, count_flops=False, fast_paths=False)
    with failures_translated(warm, model, where), warm.attached():
        runner.ensure_targets()
        if runner.step.trains:
            runner.run()  # creates gradients and the optimizer state: the measured step is a later one
    params = list(model.parameters())
    buffers = list(model.buffers())
    tracer = Tracer(model, count_flops=False, fast_paths=False)
    ledger = SavedTensorLedger(excluded=[*params, *buffers, *runner.external_tensors()])
    ledger.owner_of = lambda: tracer.stack[-1].record.path if tracer.stack else LOSS
    tracker = PhaseMemTracker()
    tracker.track_external(model, *([runner.optimizer] if runner.optimizer else []), *runner.external_tensors())
    tracker.saved_live = lambda: ledger.live_bytes
    tracker.marker = lambda: runner.decode_steps
    counter = flop_counter()
    hidden = OpObserver(_workspace_callback(tracker, runner.device))
    records = list(tracer.records.values())
    if runner.step.generates and not every_step:
        runner.traced = TracedSteps(
            totals=lambda: {"flops": counter.total, **{str(i): r.output_bytes for i, r in enumerate(records)}},
            frozen=tracker.frozen,
            on_skip=lambda steps: setattr(runner, "decode_steps", runner.decode_steps + steps),
        )
    with failures_translated(tracer, model, where), tracer.attached(), ledger.recording(), tracker, counter, hidden:
        runner.run(tracker.set_phase)
    if runner.traced is not None:  # what the skipped steps add: their FLOPs and their layers' outputs
        added = runner.traced.steps.skipped()
        counter.total += added.pop("flops", 0)
        for index, extra in added.items():
            records[int(index)].output_bytes += extra
        runner.traced = None
    categories = tracker.peak_by_category()
    leaf_outputs = [
        record.output_bytes for record in tracer.records.values() if record.calls and not list(record.module.children())
    ]
    return StepAccount(
        peak=tracker.peak_bytes(),
        phase=tracker.peak_phase,
        categories=categories,
        saved_at_peak=tracker.peak_saved,
        saved_total=ledger.total_bytes,
        saved_by_layer=dict(ledger.by_owner),
        output_by_layer={record.path: record.output_bytes for record in tracer.records.values() if record.calls},
        optimizer_state=storage_bytes(optimizer_state_tensors(runner.optimizer)),
        flops=counter.total,
        leaf_outputs=leaf_outputs,
        peak_marker=tracker.peak_marker,
    )


def _workspace_callback(tracker: PhaseMemTracker, device: torch.device) -> Callable[[Any, tuple, dict, Any], None]:
    """Kernel workspaces the dispatcher cannot see (oneDNN's blocked buffers on the CPU)."""
    if device.type != "cpu":
        return lambda *_: None

    def note(func: Any, args: tuple, kwargs: dict, output: Any) -> None:
        tracker.note_transient(op_workspace(func, args, kwargs, output))

    return note


def _breakdown(account: StepAccount) -> MemoryBreakdown:
    c = account.categories
    optimizer_state = min(c["optstate"], account.optimizer_state)
    activations = min(account.saved_at_peak, c["activation"])
    return MemoryBreakdown(
        weights=c["parameter"],
        buffers=c["buffer"],
        gradients=c["gradient"],
        optimizer_state=optimizer_state,
        activations=activations,
        inputs=c["other"],
        transient=(c["optstate"] - optimizer_state) + (c["activation"] - activations) + c["temp"],
    )


def _formula(
    account: StepAccount, step: Step, batch_size: int, param_bytes: int, trainable_bytes: int, peak: int
) -> TextbookFormula:
    layers = len(account.leaf_outputs)
    total_outputs = sum(account.leaf_outputs)
    per_sample = total_outputs / batch_size / layers if layers else 0.0
    forward = param_bytes + total_outputs
    copies = OPTIMIZERS[step.optimizer].state_copies if step.trains else 0
    training = forward + trainable_bytes + copies * trainable_bytes
    estimate = training if step.trains else forward
    b = format_bytes
    lines = [
        f"M = parameters = {b(param_bytes)}",
        f"m = one sample's output per layer, averaged over {layers} layers = {b(per_sample)}",
        f"forward: M + B*m*layers = {b(param_bytes)} + {batch_size}*{b(per_sample)}*{layers} = {b(forward)}",
    ]
    if step.trains:
        state = {2: " + Adam's two moments 2M", 1: " + momentum M", 0: ""}[copies]
        lines.append(
            f"training: forward + gradients M{state} = {b(training)} "
            "(the notes' quiz gives the forward figure again for backward: it forgets these)"
        )
    ratio = peak / estimate if estimate else 0
    lines.append(f"exact peak: {b(peak)}, {ratio:.2f}x the textbook figure")
    lines.append(
        "they differ because autograd keeps only what backward needs (a ReLU done in place, a pooling's "
        "indices, a layer's input rather than its output), frees each saved tensor as soon as backward has "
        "used it, and the peak adds temporaries the formula ignores"
    )
    return TextbookFormula(
        expression="M + B*m*layers" + (" + gradients + optimizer state" if step.trains else ""),
        params_bytes=param_bytes,
        batch_size=batch_size,
        per_sample_layer_bytes=per_sample,
        layers=layers,
        forward_bytes=forward,
        training_bytes=training,
        estimate_bytes=estimate,
        exact_bytes=peak,
        lines=lines,
    )
