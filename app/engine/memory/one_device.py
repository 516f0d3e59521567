"""Tracing one step on one device: the model materialised as fake tensors, one warm-up step, then
``MemTracker`` and the saved-tensor ledger over a steady-state step; the report built from what they saw.

``estimate.py`` (the entry points) and ``sharding.py`` (DDP builds on it) call ``estimate_one_device``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..choices import OPTIMIZERS
from ..errors import InputError
from ..lru import LRUCache
from ..step import Adapter, Step
from ..tracing.cpu_workspace import op_workspace
from ..tracing.selection import Selection
from ..tracing.torch_internals import (
    OpObserver,
    PhaseMemTracker,
    PhaseOpening,
    SavedTensorLedger,
    fake_mode,
    flop_counter,
    scalar_reads_as_one,
)
from ..tracing.tracer import Tracer, failures_translated, preserved_modes
from ..units import format_bytes
from .adapters import adapter_note, prepare_weights
from .checkpointing import enable_checkpointing
from .generation import NotAffineError, TracedSteps, kv_cache
from .notes import step_notes
from .quantization import QuantizedLinear
from .reference import tracing_everything
from .report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula
from .runner import StepCase, StepRunner, materialize, meta_copy, optimizer_state_tensors, storage_bytes

LOSS = "(loss)"
PHASES = ("forward", "backward", "optimizer", "prefill", "decode")


def _prepare_model(case: StepCase) -> nn.Module:
    """The model the estimate runs: the engine's own meta build, or a meta copy (a user's module, or checkpointing,
    which changes the blocks' forwards)."""
    selection, step = case.selection, case.step
    changed = step.checkpointing or step.adapter is not None or step.quantization is not None
    model = selection.module if selection.owned and not changed else meta_copy(selection.module)
    model.to(step.param_dtype)
    prepare_weights(model, step)
    if step.checkpointing:
        enable_checkpointing(model)
    return model


def estimate_one_device(case: StepCase) -> MemoryReport:
    """The peak on one device, traced on fake tensors.

    A training step traces its forward and backward once for every optimizer (``_passes``, reused while the
    selection, batch and precision stay the same) and adds the chosen optimizer's state and step from a trace
    over the parameters alone (``_optimizer_trace``): the same report as tracing the step with its optimizer
    (``reference.reference_traces``), at a fraction of the cost.
    """
    step = case.step
    if step.trains and not tracing_everything():
        passes = _passes(case)
        account = _with_optimizer(passes, _optimizer_trace(step.optimizer, passes.trainable, case.device))
        return _report(case, account, passes.facts, None)
    model = _prepare_model(case)
    if step.trains:
        _check_trainable(model)
    with preserved_modes(model):
        model.train(step.trains)
        with fake_mode():
            materialize(model, case.device)
            runner = StepRunner(model, case, real=False)
            try:
                account = _track_step(runner, model, every_step=tracing_everything())
            except NotAffineError:  # a step's figures are not affine where steps were skipped: trace them all
                runner = StepRunner(model, case, real=False)
                account = _track_step(runner, model, every_step=True)
        facts = _model_facts(model, account, case.step.adapter)
    return _report(case, account, facts, runner)


@dataclass(frozen=True)
class ModelFacts:
    """What a report needs of the model itself: its bytes, and its layers' rows."""

    param_bytes: int
    trainable_bytes: int
    buffer_bytes: int
    rows: list[LayerMemory]
    trainable_parameters: int
    frozen_parameters: int
    adapter_note: str | None = None
    quantized_bytes: int | None = None
    quantized_weights: int | None = None


def _model_facts(model: nn.Module, account: StepAccount, adapter: Adapter | None) -> ModelFacts:
    params = list(model.parameters())
    return ModelFacts(
        param_bytes=storage_bytes(params),
        trainable_bytes=storage_bytes([p for p in params if p.requires_grad]),
        buffer_bytes=storage_bytes(list(model.buffers())),
        rows=_layer_rows(model, account),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        frozen_parameters=sum(p.numel() for p in params if not p.requires_grad),
        adapter_note=adapter_note(model, adapter) if adapter is not None else None,
        **_quantized(model),
    )


def _quantized(model: nn.Module) -> dict[str, int]:
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    if not layers:
        return {}
    return {
        "quantized_bytes": storage_bytes([getattr(m, name) for m in layers for name in m.stored]),
        "quantized_weights": sum(m.in_features * m.out_features for m in layers),
    }


def _report(case: StepCase, account: StepAccount, facts: ModelFacts, runner: StepRunner | None) -> MemoryReport:
    step = case.step
    held = facts.param_bytes + facts.buffer_bytes + (facts.trainable_bytes if step.trains else 0)
    return MemoryReport(
        **case.report_fields(),
        peak_bytes=account.peak,
        phase=account.phase if account.phase in PHASES else "forward",
        breakdown=_breakdown(account),
        persistent_bytes=held + account.optimizer_state,
        saved_activation_bytes=account.saved_total,
        step_flops=account.flops,
        layers=[row.model_copy() for row in facts.rows],
        formula=_formula(account, step, case.batch_size, facts.param_bytes, facts.trainable_bytes, account.peak),
        notes=step_notes(case) + [note for note in (facts.adapter_note, _quantized_note(facts, step)) if note],
        trainable_parameters=facts.trainable_parameters,
        quantized_weight_bytes=facts.quantized_bytes,
        quantized_weights=facts.quantized_weights,
        frozen_parameters=facts.frozen_parameters,
        **(_generation_fields(runner, account, case.selection) if runner is not None else {}),
    )


# ---------------------------------------------------------------- a training step: passes, then the optimizer


@dataclass(frozen=True)
class PassTrace:
    """A training step's forward and backward with no optimizer: what every optimizer's step shares."""

    account: StepAccount  # optimizer_state 0; account.opening: what was live as the optimizer's phase began
    facts: ModelFacts
    trainable: tuple[tuple[tuple[int, ...], torch.dtype], ...]  # the trainable parameters' shapes and dtypes


@dataclass(frozen=True)
class OptimizerTrace:
    """One optimizer over a model's trainable parameters: its state, and what its step adds at its peak."""

    state_bytes: int
    extra_bytes: int  # the step's peak above what was live when it began
    extra_categories: dict[str, int]


_PASSES: LRUCache[str, PassTrace] = LRUCache(8)
_OPTIMIZERS: LRUCache[str, OptimizerTrace] = LRUCache(32)


def _passes(case: StepCase) -> PassTrace:
    """The forward and backward, from the cache when this selection, batch, precision and device were traced."""
    key = _passes_key(case)
    hit = _PASSES.get(key) if key is not None else None
    if hit is not None:
        return hit
    model = _prepare_model(case)
    _check_trainable(model)
    with preserved_modes(model):
        model.train(True)
        with fake_mode():
            materialize(model, case.device)
            runner = StepRunner(model, case, real=False, with_optimizer=False)
            account = _track_step(runner, model, warm_up=False)
        facts = _model_facts(model, account, case.step.adapter)
        shapes = tuple((tuple(p.shape), p.dtype) for p in model.parameters() if p.requires_grad)
    trace = PassTrace(account, facts, shapes)
    if key is not None:
        _PASSES.put(key, trace)
    return trace


def _check_trainable(model: nn.Module) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(
            "this model has no trainable parameters, so a training step has nothing to update: "
            "ask for mode 'inference' (or add a layer with weights)",
            "mode",
        )


def _passes_key(case: StepCase) -> str | None:
    """Equal for steps whose forward and backward are the same; None for a module the caller owns (it may change
    between calls)."""
    selection = case.selection
    if not selection.owned:
        return None
    given = (
        [(name, list(t.shape), str(t.dtype)) for name, t in _named_tensors(selection.input_data)]
        if selection.input_data is not None
        else None
    )
    parts = [
        selection.architecture,
        selection.config,
        list(selection.input_size),
        given,
        selection.no_padding,
        case.batch_size,
        str(case.device),
        case.step.precision_choice.name,
        case.step.checkpointing,
        case.step.adapter.model_dump(mode="json") if case.step.adapter is not None else None,
    ]
    return json.dumps(parts, sort_keys=True, default=str)


def _named_tensors(inputs: Any) -> list[tuple[str, torch.Tensor]]:
    named = [(str(i), t) for i, t in enumerate(inputs.args) if isinstance(t, torch.Tensor)]
    return named + [(k, t) for k, t in inputs.kwargs.items() if isinstance(t, torch.Tensor)]


def _optimizer_trace(
    name: str, trainable: tuple[tuple[tuple[int, ...], torch.dtype], ...], device: torch.device
) -> OptimizerTrace:
    """The optimizer's state (created by a first step, as the reference's warm-up step creates it) and the peak
    its next step adds, traced over fake parameters and gradients of the model's shapes."""
    key = json.dumps([name, [[list(shape), str(dtype)] for shape, dtype in trainable], str(device)])
    hit = _OPTIMIZERS.get(key)
    if hit is not None:
        return hit
    with fake_mode():
        params = [nn.Parameter(torch.empty(shape, dtype=dtype, device=device)) for shape, dtype in trainable]
        for param in params:
            param.grad = torch.empty_like(param)
        optimizer = OPTIMIZERS[name].build(params)
        with scalar_reads_as_one():
            optimizer.step()
        tracker = PhaseMemTracker()
        tracker.track_external(*params, *[p.grad for p in params], optimizer)
        start, before = tracker.current_bytes(), tracker.current_by_category()
        with tracker, scalar_reads_as_one():
            optimizer.step()
        peak, at_peak = tracker.peak_bytes(), tracker.peak_by_category()
        state = storage_bytes(optimizer_state_tensors(optimizer))
    trace = OptimizerTrace(state, peak - start, {k: at_peak[k] - before.get(k, 0) for k in at_peak})
    _OPTIMIZERS.put(key, trace)
    return trace


def _with_optimizer(passes: PassTrace, optimizer: OptimizerTrace) -> StepAccount:
    """The step with its optimizer: the state is live throughout; the step's temporaries come on top of what was
    live as the optimizer's phase began. The higher of the two peaks is the step's (the earlier on a tie)."""
    account, opening, state = passes.account, passes.account.opening, optimizer.state_bytes
    passes_peak = account.peak + state
    categories = {**account.categories, "optstate": account.categories.get("optstate", 0) + state}
    if opening is not None and opening.total + state + optimizer.extra_bytes > passes_peak:
        categories = dict(opening.categories)
        categories["optstate"] = categories.get("optstate", 0) + state
        for kind, extra in optimizer.extra_categories.items():
            categories[kind] = categories.get(kind, 0) + extra
        return dataclasses.replace(
            account,
            peak=opening.total + state + optimizer.extra_bytes,
            phase="optimizer",
            categories=categories,
            saved_at_peak=opening.saved,
            optimizer_state=state,
        )
    return dataclasses.replace(account, peak=passes_peak, categories=categories, optimizer_state=state)


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
    opening: PhaseOpening | None = None  # train: what was live as the optimizer's phase began


def _track_step(runner: StepRunner, model: nn.Module, every_step: bool = False, warm_up: bool = True) -> StepAccount:
    """Warm up, then track one step with MemTracker and the saved-tensor ledger.

    A generation traces only the steps that decide its peak unless ``every_step`` (the reference): the FLOPs
    and layer outputs of the skipped steps are added from their traced neighbours.
    """
    where = {"train": "training step", "generate": "generation"}.get(runner.step.mode, "forward")
    warm = Tracer(model, count_flops=False, fast_paths=False)
    with failures_translated(warm, model, where), warm.attached():
        runner.ensure_targets()
        if runner.step.trains and warm_up:
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
    step_flops: list[int] = []  # the count as the optimizer's phase begins: the step's FLOPs leave its update out

    def set_phase(phase: str) -> None:
        if phase == "optimizer":
            step_flops.append(counter.total)
        tracker.set_phase(phase)

    with failures_translated(tracer, model, where), tracer.attached(), ledger.recording(), tracker, counter, hidden:
        runner.run(set_phase)
    if step_flops:
        counter.total = step_flops[0]
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
        opening=tracker.openings.get("optimizer"),
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


def _quantized_note(facts: ModelFacts, step: Step) -> str | None:
    if not facts.quantized_bytes or step.quantization is None:
        return None
    bits = facts.quantized_bytes * 8 / facts.quantized_weights
    return (
        f"linear layers stored as {step.quantization.method}: {format_bytes(facts.quantized_bytes)} "
        f"({facts.quantized_bytes:,} bytes) for {facts.quantized_weights:,} weights, {bits:.3f} bits per weight with "
        "their scales, zeros and codes; the output head and the embeddings stay in the parameters' dtype. Each "
        "product dequantizes its weight into the compute dtype for a moment (bitsandbytes' training path)"
    )
