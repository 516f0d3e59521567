"""``estimate_memory``: the peak memory of a training step or an inference forward, exactly, without allocating.

The model is built on meta and materialised as fake tensors; one warm-up step
creates the optimizer state, then PyTorch's ``MemTracker`` follows every storage
of a second, steady-state step (zero_grad, forward, loss, backward,
optimizer.step) and gives the peak, broken down by kind. A saved-tensor hook
counts, storage by storage, what autograd keeps for backward and which layer
kept it. Nothing is allocated, so a 7B model is estimated on a laptop.

``measure=True`` runs the same step for real on the device, on a private copy of
the model (the caller's module, its gradients and the RNG state are left exactly
as they were), and reads its peak: ``torch.cuda.max_memory_allocated`` on a GPU,
the profiler's allocation events on the CPU. A model fake tensors cannot run
(it reads its data) is measured without an estimate first.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .choices import (
    MAX_GPUS,
    MAX_NEW_TOKENS,
    MODES,
    OPTIMIZERS,
    SHARDINGS,
    Mode,
    OptimizerName,
    PrecisionName,
    dtype_name,
    resolve_precision,
)
from .cpu_workspace import op_workspace, rules_apply
from .device import resolve_device
from .errors import InputError, MemoryBudgetError, NeedsRealRunError
from .generation import enable_checkpointing, generation_loop, kv_cache
from .gpus import fits
from .memory_report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula
from .selection import (
    ModelInputs,
    Selection,
    check_batch,
    check_module_count,
    first_output,
    input_shapes,
    loss_of,
    make_inputs,
    make_targets,
    model_loss,
    select,
)
from .torch_internals import (
    OpObserver,
    PhaseMemTracker,
    SavedTensorLedger,
    fake_mode,
    flop_counter,
    kineto_memory_events,
    kineto_range,
    storage_key,
)
from .tracing import Tracer, failures_translated, preserved_modes
from .units import format_bytes

LOSS = "(loss)"
MEASURE_RANGE = "layerscope.measured_step"
PHASE_RANGE = "layerscope.phase."


@dataclass(frozen=True)
class StepPlan:
    """What one step does: mode, optimizer, dtypes, device."""

    mode: Mode
    optimizer: OptimizerName | None
    precision: PrecisionName
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    device: torch.device
    new_tokens: int = 0  # generate: tokens generated after the prompt
    checkpointing: bool = False  # train: each repeated block recomputed in backward

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def make_plan(
    mode: str,
    optimizer: str,
    precision: str | None,
    dtype: str | torch.dtype | None,
    device: str | torch.device | None,
    new_tokens: int = 32,
    checkpointing: bool = False,
) -> StepPlan:
    """Check the choices and reconcile dtype with precision: one decides the other; they may not contradict."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}", field="optimizer")
    if mode == "generate" and not 1 <= new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"new_tokens must be between 1 and {MAX_NEW_TOKENS:,}, got {new_tokens}", field="new_tokens")
    if checkpointing and mode != "train":
        raise InputError("checkpointing applies to training steps (it recomputes in backward)", field="checkpointing")
    choice = resolve_precision(precision, dtype)
    return StepPlan(
        mode=mode,  # type: ignore[arg-type]
        optimizer=optimizer if mode == "train" else None,  # type: ignore[arg-type]
        precision=choice.name,  # type: ignore[arg-type]
        param_dtype=choice.param_dtype,
        autocast_dtype=choice.autocast_dtype,
        device=resolve_device(device),
        new_tokens=new_tokens if mode == "generate" else 0,
        checkpointing=checkpointing,
    )


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on meta; ties are kept, nothing is copied."""
    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in memo:
            continue
        empty = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            empty = nn.Parameter(empty, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = empty
    return copy.deepcopy(module, memo)


def materialize(module: nn.Module, device: torch.device) -> None:
    """``to_empty`` that keeps tied parameters tied (it would give each owner its own copy)."""
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((sub, name))
    module.to_empty(device=device)
    for places in owners.values():
        first_module, first_name = places[0]
        shared = getattr(first_module, first_name)
        for sub, name in places[1:]:
            setattr(sub, name, shared)


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the storages behind ``tensors``, each storage once."""
    seen, total = set(), 0
    for tensor in tensors:
        key = storage_key(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def _optimizer_state_tensors(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if optimizer is None:
        return []
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


class StepRunner:
    """One training step or inference forward, the same for the fake estimate and the real measurement."""

    def __init__(self, model: nn.Module, selection: Selection, plan: StepPlan, batch_size: int, real: bool) -> None:
        self.model = model
        self.selection = selection
        self.plan = plan
        self.real = real
        self.inputs: ModelInputs = make_inputs(selection, batch_size, plan.param_dtype, plan.device, real=real)
        self.targets: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.cache: Any = None  # generate: the KV cache at the end
        self.decode_steps = 0  # generate: decode forwards begun so far
        if plan.mode == "train":
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = OPTIMIZERS[plan.optimizer or "adam"].build(trainable) if trainable else None

    def ensure_targets(self) -> None:
        """Labels shaped for the model's output (found by one forward without a graph), unless it has its own loss."""
        if self.targets is not None or self.plan.mode != "train":
            return
        with torch.no_grad(), self.plan.autocast():
            output = self.inputs.run(self.model)
        if model_loss(output) is None:
            shape = tuple(first_output(output).shape)
            self.targets = make_targets(shape, self.selection.kind, self.plan.device, real=self.real)
        del output

    def train_step(self, phase: Callable[[str], None] = lambda _: None) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)
        phase("forward")
        with self.plan.autocast():
            output = self.inputs.run(self.model)
            loss = loss_of(output, self.targets, self.selection.kind)
        del output
        phase("backward")
        loss.backward()
        del loss
        phase("optimizer")
        if self.optimizer is not None:
            self.optimizer.step()

    def inference(self, phase: Callable[[str], None] = lambda _: None) -> None:
        phase("forward")
        with torch.inference_mode(), self.plan.autocast():
            output = self.inputs.run(self.model)
        del output

    def generate(self, phase: Callable[[str], None] = lambda _: None) -> None:
        """Greedy generation with the family's KV-cache loop (Hugging Face: ``generate`` itself on real data)."""
        generator = generation_loop(self.selection)
        self.decode_steps = 0

        def on_step(stage: str) -> None:
            self.decode_steps += stage == "decode"
            phase(stage)

        with torch.inference_mode(), self.plan.autocast():
            self.cache = generator(self.model, self.inputs, self.plan.new_tokens, on_step, real=self.real)

    def run(self, phase: Callable[[str], None] = lambda _: None) -> None:
        if self.plan.mode == "train":
            self.train_step(phase)
        elif self.plan.mode == "generate":
            self.generate(phase)
        else:
            self.inference(phase)

    def external_tensors(self) -> list[torch.Tensor]:
        return [*self.inputs.tensors(), *([self.targets] if self.targets is not None else [])]


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


def _track_step(runner: StepRunner, model: nn.Module) -> StepAccount:
    """Warm up, then track one step with MemTracker and the saved-tensor ledger."""
    where = {"train": "training step", "generate": "generation"}.get(runner.plan.mode, "forward")
    warm = Tracer(model, count_flops=False, fast_paths=False)
    with failures_translated(warm, model, where), warm.attached():
        runner.ensure_targets()
        if runner.plan.mode == "train":
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
    hidden = OpObserver(_workspace_callback(tracker, runner.plan))
    with failures_translated(tracer, model, where), tracer.attached(), ledger.recording(), tracker, counter, hidden:
        runner.run(tracker.set_phase)
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
        optimizer_state=storage_bytes(_optimizer_state_tensors(runner.optimizer)),
        flops=counter.total,
        leaf_outputs=leaf_outputs,
        peak_marker=tracker.peak_marker,
    )


def _workspace_callback(tracker: PhaseMemTracker, plan: StepPlan) -> Callable[[Any, tuple, dict, Any], None]:
    """Kernel workspaces the dispatcher cannot see (oneDNN's blocked buffers on the CPU)."""
    if plan.device.type != "cpu":
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
    account: StepAccount, plan: StepPlan, batch_size: int, param_bytes: int, trainable_bytes: int, peak: int
) -> TextbookFormula:
    layers = len(account.leaf_outputs)
    total_outputs = sum(account.leaf_outputs)
    per_sample = total_outputs / batch_size / layers if layers else 0.0
    forward = param_bytes + total_outputs
    copies = OPTIMIZERS[plan.optimizer].state_copies if plan.optimizer else 0
    training = forward + trainable_bytes + copies * trainable_bytes
    estimate = training if plan.mode == "train" else forward
    b = format_bytes
    lines = [
        f"M = parameters = {b(param_bytes)}",
        f"m = one sample's output per layer, averaged over {layers} layers = {b(per_sample)}",
        f"forward: M + B*m*layers = {b(param_bytes)} + {batch_size}*{b(per_sample)}*{layers} = {b(forward)}",
    ]
    if plan.mode == "train":
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
        expression="M + B*m*layers" + (" + gradients + optimizer state" if plan.mode == "train" else ""),
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


def _prepare_model(selection: Selection, plan: StepPlan) -> nn.Module:
    """The model the estimate runs: the engine's own meta build, or a meta copy (a user's module, or checkpointing,
    which changes the blocks' forwards)."""
    model = selection.module if selection.owned and not plan.checkpointing else meta_copy(selection.module)
    model.to(plan.param_dtype)
    if plan.checkpointing:
        enable_checkpointing(model)
    return model


def estimate_memory(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    dtype: str | torch.dtype | None = None,
    mode: Mode = "train",
    optimizer: OptimizerName = "adam",
    precision: PrecisionName | None = None,
    *,
    input_data: Any = None,
    measure: bool = False,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    input_kind: str | None = None,
    max_modules: int | None = None,
    real_run: contextlib.AbstractContextManager | None = None,
    new_tokens: int = 32,
    checkpointing: bool = False,
    gpus: int = 1,
    sharding: str = "fsdp",
) -> MemoryReport:
    """Peak memory of one steady-state training step, one inference forward, or a generation; allocation-free.

    ``mode="generate"`` generates ``new_tokens`` tokens greedily after a prompt of
    ``input_size`` tokens (a Hugging Face model as ``model.generate(ids,
    max_new_tokens=N, min_new_tokens=N, do_sample=False)`` does, with its default
    cache); the report adds the KV cache's bytes. ``checkpointing=True`` recomputes
    each repeated block in backward, and reports the peak without it beside. With
    ``gpus=N`` and ``sharding`` ("ddp", "zero2", "fsdp") ``batch_size`` is the
    per-device micro-batch and the peak is per device (the largest rank's).

    ``precision`` (fp32, bf16, fp16, amp-bf16, amp-fp16, fp64) decides the parameters'
    dtype, or ``dtype`` does when no precision is given. ``input_data`` gives the
    forward's own arguments (a tensor, a tuple, or a dict of keyword arguments;
    a Hugging Face model given ``labels`` is trained on its own loss). With
    ``measure=True`` the same step also runs for real on ``device`` (refused with
    ``MemoryBudgetError`` when the estimate exceeds ``budget_bytes``), on a private
    copy of the model, and the measured peak is reported beside the estimate.
    """
    batch_size = check_batch(batch_size)
    plan = make_plan(mode, optimizer, precision, dtype, device, new_tokens, checkpointing)
    check_sharding(plan, gpus, sharding)
    if plan.mode == "generate" and isinstance(model_or_name, str) and input_data is None:
        input_size = generation_prompt(model_or_name, config, input_size, plan.new_tokens)
    selection = select(model_or_name, config, input_size, input_kind, dtype=plan.param_dtype, input_data=input_data)
    check_module_count(selection.module, max_modules)
    if selection.input_data is not None:
        batch_size = selection.input_data.batch_size() or 1
    try:
        if gpus > 1:
            from .sharding import estimate_sharded

            report = estimate_sharded(selection, plan, batch_size, gpus, sharding)
        else:
            report = _estimate(selection, plan, batch_size)
        if plan.checkpointing:
            report.peak_without_checkpointing_bytes = _estimate(
                selection, dataclasses.replace(plan, checkpointing=False), batch_size
            ).peak_bytes
    except NeedsRealRunError as exc:
        if not measure:
            raise
        return _measured_only(selection, plan, batch_size, budget_bytes, real_run, exc)
    report.fits = fits(report.peak_bytes)
    if measure:
        if gpus > 1:
            raise InputError(
                "measure runs one device; sharded estimates are checked by bench/sizing_accuracy.py", "measure"
            )
        if budget_bytes is not None and report.peak_bytes > budget_bytes:
            raise MemoryBudgetError(report.peak_bytes, budget_bytes)
        with real_run or contextlib.nullcontext():  # e.g. the service's one-run-per-device gate
            _measure_into(report, selection, plan, batch_size)
    return report


def generation_prompt(name: str, config: dict[str, Any] | None, input_size: Any, new_tokens: int) -> Any:
    """The prompt's shape for a generation: by default the family's input, shortened so that the prompt and the
    new tokens fit the context; a given prompt that does not fit is refused, saying by how much."""
    import models

    arch = models.get_architecture(name)
    parsed = arch.parse_config(config)
    if arch.context is None or arch.kind(parsed).value != "tokens":
        return input_size
    context = arch.context(parsed)
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


def check_sharding(plan: StepPlan, gpus: int, sharding: str) -> None:
    if not 1 <= gpus <= MAX_GPUS:
        raise InputError(f"gpus must be between 1 and {MAX_GPUS:,}, got {gpus}", "gpus")
    if sharding not in SHARDINGS:
        raise InputError(f"sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}", "sharding")
    if gpus > 1 and plan.mode != "train":
        raise InputError(
            "gpus > 1 sizes data-parallel training (DDP, ZeRO-2, FSDP); serving across devices needs tensor "
            "parallelism, which is not modelled: size one device's share with mode inference or generate",
            "gpus",
        )


def _estimate(selection: Selection, plan: StepPlan, batch_size: int) -> MemoryReport:
    model = _prepare_model(selection, plan)
    if plan.mode == "train" and not any(p.requires_grad for p in model.parameters()):
        raise InputError(
            "this model has no trainable parameters, so a training step has nothing to update: "
            "ask for mode 'inference' (or add a layer with weights)",
            "mode",
        )
    with preserved_modes(model):
        model.train(plan.mode == "train")
        with fake_mode():
            materialize(model, plan.device)
            runner = StepRunner(model, selection, plan, batch_size, real=False)
            account = _track_step(runner, model)
        params = list(model.parameters())
        param_bytes = storage_bytes(params)
        trainable_bytes = storage_bytes([p for p in params if p.requires_grad])
        buffer_bytes = storage_bytes(list(model.buffers()))
    return MemoryReport(
        architecture=selection.architecture,
        config=selection.config,
        model_class=type(model).__name__,
        input_shapes=input_shapes(selection, batch_size),
        batch_size=batch_size,
        dtype=dtype_name(plan.param_dtype),
        mode=plan.mode,
        optimizer=plan.optimizer,
        precision=plan.precision,
        device=str(plan.device),
        peak_bytes=account.peak,
        phase=account.phase if account.phase in PHASES else "forward",
        breakdown=_breakdown(account),
        persistent_bytes=param_bytes
        + buffer_bytes
        + (trainable_bytes if plan.mode == "train" else 0)
        + account.optimizer_state,
        saved_activation_bytes=account.saved_total,
        step_flops=account.flops,
        layers=_layer_rows(model, account),
        formula=_formula(account, plan, batch_size, param_bytes, trainable_bytes, account.peak),
        notes=_notes(plan),
        checkpointing=plan.checkpointing,
        **_generation_fields(runner, account, selection),
    )


PHASES = ("forward", "backward", "optimizer", "prefill", "decode")


def _generation_fields(runner: StepRunner, account: StepAccount, selection: Selection) -> dict[str, Any]:
    """generate: the prompt, the new tokens and the KV cache (its bytes read off the cache's own tensors)."""
    if runner.plan.mode != "generate":
        return {}
    figures = kv_cache(runner.cache)
    prompt = selection.input_size[0]
    start = figures.tokens - (runner.plan.new_tokens - 1) if figures else prompt  # tokens after the prefill
    return {
        "new_tokens": runner.plan.new_tokens,
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


def _notes(plan: StepPlan) -> list[str]:
    notes = [
        "Peak of the allocator's live bytes during one steady-state step, tracked on fake tensors by "
        "torch.distributed._tools.mem_tracker.MemTracker; nothing was allocated.",
    ]
    if plan.mode == "train":
        notes.append(
            f"Step: zero_grad(set_to_none=True), forward, loss, backward, {plan.optimizer}.step() with "
            f"PyTorch's default implementation on {plan.device.type} (the optimizer state already exists). The loss "
            "is the model's own when it computes one, cross-entropy for classes and tokens, MSE for one output."
        )
    else:
        notes.append("Step: one forward pass under torch.inference_mode(): nothing is saved for backward.")
    if plan.device.type == "cuda":
        notes.append("CUDA figures round each allocation up to 512 bytes, as the caching allocator does.")
    elif not rules_apply():
        notes.append(
            f"oneDNN's convolution buffers are modelled from torch 2.13's kernels; this is torch {torch.__version__}, "
            "so convolution peaks on the CPU may be off."
        )
    return notes


# ---------------------------------------------------------------- measured mode


def _measure_into(report: MemoryReport, selection: Selection, plan: StepPlan, batch_size: int) -> None:
    measured = measure_peak(selection, plan, batch_size)
    report.measured_peak_bytes = measured.peak
    report.measured_saved_activation_bytes = measured.saved
    report.measured_phase = measured.phase
    report.measured_kv_cache_bytes = measured.kv_cache_bytes
    report.measure_method = measured.method
    report.error_percent = (
        round((report.peak_bytes - measured.peak) / measured.peak * 100, 3) if measured.peak else None
    )


def _measured_only(
    selection: Selection,
    plan: StepPlan,
    batch_size: int,
    budget_bytes: int | None,
    real_run: contextlib.AbstractContextManager | None,
    why: NeedsRealRunError,
) -> MemoryReport:
    """For a model that reads its data: real figures from a real step, with no estimate before it."""
    module = selection.module
    params = [p for p in module.parameters()]
    param_bytes = sum(p.numel() for p in params) * plan.param_dtype.itemsize
    trainable_bytes = sum(p.numel() for p in params if p.requires_grad) * plan.param_dtype.itemsize
    copies = OPTIMIZERS[plan.optimizer].state_copies if plan.optimizer else 0
    floor = param_bytes + ((1 + copies) * trainable_bytes if plan.mode == "train" else 0)
    if budget_bytes is not None and floor > budget_bytes:
        raise MemoryBudgetError(floor, budget_bytes)
    with real_run or contextlib.nullcontext():
        measured = measure_peak(selection, plan, batch_size)
    state = measured.persistent
    return MemoryReport(
        architecture=selection.architecture,
        config=selection.config,
        model_class=type(module).__name__,
        input_shapes=input_shapes(selection, batch_size),
        batch_size=batch_size,
        dtype=dtype_name(plan.param_dtype),
        mode=plan.mode,
        optimizer=plan.optimizer,
        precision=plan.precision,
        device=str(plan.device),
        estimated=False,
        peak_bytes=measured.peak,
        phase=measured.phase,
        breakdown=MemoryBreakdown(
            weights=state["weights"],
            buffers=state["buffers"],
            gradients=state["gradients"],
            optimizer_state=state["optimizer_state"],
            activations=0,
            inputs=state["inputs"],
            transient=max(0, measured.peak - sum(state.values())),
        ),
        persistent_bytes=state["weights"] + state["buffers"] + state["gradients"] + state["optimizer_state"],
        saved_activation_bytes=measured.saved,
        step_flops=measured.flops,
        layers=[],
        formula=None,
        measured_peak_bytes=measured.peak,
        measured_saved_activation_bytes=measured.saved,
        measured_phase=measured.phase,
        measure_method=measured.method,
        notes=[
            f"Measured, not estimated: {why}".replace(" it cannot be inspected without allocating.", ""),
            "The breakdown holds what persists between steps; 'transient' is everything else at the peak "
            "(activations included: a real run cannot tell them apart).",
            *_notes(plan)[1:],
        ],
    )


@dataclass
class Measured:
    """What a real step showed."""

    peak: int
    saved: int
    phase: str
    method: str
    flops: int
    persistent: dict[str, int]
    kv_cache_bytes: int | None = None  # generate: the real cache's bytes


def _real_model(selection: Selection, plan: StepPlan) -> nn.Module:
    """A private model for the real run: built afresh for the zoo, a deep copy of a module the caller passed."""
    if selection.owned:
        import models

        model = models.build_model(selection.architecture or "", selection.config)
    else:
        model = copy.deepcopy(selection.module)
    model = model.to(device=plan.device, dtype=plan.param_dtype)
    if plan.checkpointing:
        enable_checkpointing(model)
    return model


def measure_peak(selection: Selection, plan: StepPlan, batch_size: int) -> Measured:
    """Run the step for real on a private copy; the caller's module and the RNG state are left as they were."""
    devices = [plan.device.index or 0] if plan.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        if plan.device.type == "cuda":
            return _measure_cuda(selection, plan, batch_size)
        return _measure_cpu(selection, plan, batch_size)


def _ledger(runner: StepRunner, model: nn.Module) -> SavedTensorLedger:
    """Counts what the measured step saves for backward (it allocates nothing itself)."""
    return SavedTensorLedger(excluded=[*model.parameters(), *model.buffers(), *runner.external_tensors()])


def _persistent(runner: StepRunner, model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "weights": storage_bytes(params),
        "buffers": storage_bytes(list(model.buffers())),
        "gradients": storage_bytes([p.grad for p in params if p.grad is not None]),
        "optimizer_state": storage_bytes(_optimizer_state_tensors(runner.optimizer)),
        "inputs": storage_bytes(runner.external_tensors()),
    }


class _PhaseRanges:
    """Profiler ranges around each phase of the measured step, to tell where the measured peak falls."""

    def __init__(self) -> None:
        self._open: torch.autograd.profiler.record_function | None = None

    def __call__(self, phase: str) -> None:
        self.close()
        self._open = torch.autograd.profiler.record_function(PHASE_RANGE + phase)
        self._open.__enter__()

    def close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None


def _measure_cpu(selection: Selection, plan: StepPlan, batch_size: int) -> Measured:
    from torch.profiler import ProfilerActivity, profile, record_function

    model = _real_model(selection, plan)
    model.train(plan.mode == "train")
    runner = StepRunner(model, selection, plan, batch_size, real=True)
    tracer = Tracer(model, count_flops=False, fast_paths=False, real=True)
    with failures_translated(tracer, model, "measured step"), tracer.attached():
        runner.ensure_targets()
    # Everything alive before profiling starts stays alive throughout: its bytes are the baseline.
    baseline = storage_bytes([*model.parameters(), *model.buffers(), *runner.external_tensors()])
    ledger = _ledger(runner, model)
    phases = _PhaseRanges()
    with failures_translated(tracer, model, "measured step"), tracer.attached():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            if plan.mode == "train":
                runner.run()  # warm-up: gradients and optimizer state are allocated inside the profile
            with record_function(MEASURE_RANGE), ledger.recording():
                runner.run(phases)
                phases.close()
        flops = _step_flops(runner)
    start, end = kineto_range(prof, MEASURE_RANGE)
    ranges = [(name.removeprefix(PHASE_RANGE), s, e) for name, s, e in _phase_ranges(prof)]
    live = baseline
    peak = None
    peak_time = start
    for time_ns, nbytes, device in kineto_memory_events(prof):
        if device != "cpu":
            continue
        if time_ns < start:
            live += nbytes
            continue
        if time_ns > end:
            break
        peak = live if peak is None else peak
        live += nbytes
        if live > peak:
            peak, peak_time = live, time_ns
    phase = next((name for name, s, e in ranges if s <= peak_time <= e), "forward")
    cache = kv_cache(runner.cache)
    return Measured(
        peak=peak if peak is not None else live,
        saved=ledger.total_bytes,
        phase=phase,
        method="torch.profiler allocation events (CPU)",
        flops=flops,
        persistent=_persistent(runner, model),
        kv_cache_bytes=cache.bytes if cache else None,
    )


def _step_flops(runner: StepRunner) -> int:
    """FLOPs of one more step, counted after the measured one (a dispatch mode would change its kernels)."""
    counter = flop_counter()
    with counter:
        runner.run()
    return counter.total


def _phase_ranges(prof: torch.profiler.profile) -> list[tuple[str, int, int]]:
    return [
        (e.name(), e.start_ns(), e.end_ns())
        for e in prof.profiler.kineto_results.events()
        if e.name().startswith(PHASE_RANGE)
    ]


def _measure_cuda(selection: Selection, plan: StepPlan, batch_size: int) -> Measured:  # pragma: no cover
    device = plan.device
    torch.cuda.synchronize(device)
    # Warm cuBLAS and cuDNN so their workspaces are allocated before the baseline is read.
    a = torch.randn(64, 64, device=device, dtype=plan.param_dtype)
    (a @ a).sum().item()
    conv = torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8, device=device), torch.randn(4, 3, 3, 3, device=device))
    conv.sum().item()
    del a, conv
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    model = _real_model(selection, plan)
    model.train(plan.mode == "train")
    runner = StepRunner(model, selection, plan, batch_size, real=True)
    runner.ensure_targets()
    if plan.mode == "train":
        runner.run()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    ledger = _ledger(runner, model)
    peaks: dict[str, int] = {}
    last = {"phase": "forward"}

    def phase(name: str) -> None:
        torch.cuda.synchronize(device)
        peaks[last["phase"]] = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        last["phase"] = name

    with ledger.recording():
        runner.run(phase)
    torch.cuda.synchronize(device)
    peaks[last["phase"]] = torch.cuda.max_memory_allocated(device)
    flops = _step_flops(runner)
    top = max(peaks, key=lambda k: peaks[k])
    persistent = _persistent(runner, model)
    result = Measured(
        peak=peaks[top] - baseline,
        saved=ledger.total_bytes,
        phase=top,
        method="torch.cuda.max_memory_allocated (after warm-up, relative to the baseline)",
        flops=flops,
        persistent=persistent,
    )
    del runner, model
    torch.cuda.empty_cache()
    return result
