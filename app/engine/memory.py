"""``estimate_memory``: the peak memory of a training step or an inference forward, exactly, without allocating.

The model is built on meta and materialised as fake tensors; one warm-up step
creates the optimizer state, then PyTorch's ``MemTracker`` follows every storage
of a second, steady-state step (zero_grad, forward, loss, backward,
optimizer.step) and gives the peak, broken down by kind. A saved-tensor hook
counts, storage by storage, what autograd keeps for backward and which layer
kept it. Nothing is allocated, so a 7B model is estimated on a laptop.

``measure=True`` runs the same step for real on the device and reads its peak:
``torch.cuda.max_memory_allocated`` on a GPU, the profiler's allocation events on
the CPU.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .cpu_workspace import op_workspace
from .errors import EngineError, InputError, MemoryBudgetError, NeedsRealRunError, ShapeMismatchError
from .memory_report import (
    LayerMemory,
    MemoryBreakdown,
    MemoryReport,
    Mode,
    OptimizerName,
    PrecisionName,
    TextbookFormula,
)
from .selection import (
    Selection,
    check_batch,
    check_module_count,
    dtype_name,
    input_shapes,
    loss_of,
    make_inputs,
    make_targets,
    parse_dtype,
    select,
)
from .summary import Tracer, expected_input, preserved_modes
from .torch_internals import (
    OpObserver,
    PhaseMemTracker,
    SavedTensorLedger,
    fake_mode,
    flop_counter,
    is_data_dependent_error,
    kineto_memory_events,
    kineto_range,
    storage_key,
)

OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3}),
    "sgd": (torch.optim.SGD, {"lr": 1e-2}),
    "sgd-momentum": (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}),
}
# Optimizer state per parameter, in parameter-sized copies, for the textbook formula.
STATE_COPIES = {"adam": 2, "adamw": 2, "sgd": 0, "sgd-momentum": 1}
PRECISIONS: dict[str, tuple[torch.dtype | None, torch.dtype | None]] = {
    # name: (parameter dtype, autocast dtype); None = keep the requested dtype
    "fp32": (None, None),
    "fp16": (torch.float16, None),
    "bf16": (torch.bfloat16, None),
    "amp-bf16": (torch.float32, torch.bfloat16),
    "amp-fp16": (torch.float32, torch.float16),
}
LOSS = "(loss)"
MEASURE_RANGE = "layerscope.measured_step"


@dataclass(frozen=True)
class StepPlan:
    """What one step does: mode, optimizer, dtypes, device."""

    mode: Mode
    optimizer: OptimizerName | None
    precision: PrecisionName
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    device: torch.device

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def default_device() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def make_plan(
    mode: str, optimizer: str, precision: str, dtype: str | torch.dtype | None, device: str | torch.device | None
) -> StepPlan:
    if mode not in ("train", "inference"):
        raise InputError(f"mode must be 'train' or 'inference', got {mode!r}", field="mode")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}", field="optimizer")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", field="precision")
    requested = parse_dtype(dtype) if dtype is not None else None
    param_dtype, autocast_dtype = PRECISIONS[precision]
    if param_dtype is None:
        param_dtype = requested or torch.float32
    elif requested is not None and requested not in (param_dtype, torch.float32):
        raise InputError(
            f"dtype {dtype_name(requested)} contradicts precision {precision} ({dtype_name(param_dtype)} parameters)",
            field="dtype",
        )
    target = torch.device(device) if device is not None else default_device()
    if target.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but this server has no GPU", field="device")
    if target.type not in ("cpu", "cuda"):
        raise InputError(f"device must be cpu or cuda, got {target}", field="device")
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", 0)
    return StepPlan(
        mode=mode,  # type: ignore[arg-type]
        optimizer=optimizer if mode == "train" else None,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        param_dtype=param_dtype,
        autocast_dtype=autocast_dtype,
        device=target,
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


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
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
        self.inputs = make_inputs(selection, batch_size, plan.param_dtype, plan.device, real=real)
        self.targets: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if plan.mode == "train":
            cls, kwargs = OPTIMIZERS[plan.optimizer or "adam"]
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = cls(trainable, **kwargs) if trainable else None

    def ensure_targets(self) -> None:
        """Labels shaped for the model's output (found by one forward without a graph)."""
        if self.targets is not None or self.plan.mode != "train":
            return
        with torch.no_grad(), self.plan.autocast():
            output = self.model(*self.inputs)
        logits = output[0] if isinstance(output, tuple | list) else output
        self.targets = make_targets(tuple(logits.shape), self.selection.kind, self.plan.device, real=self.real)
        del output, logits

    def train_step(self, phase: Callable[[str], None] = lambda _: None) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)
        phase("forward")
        with self.plan.autocast():
            output = self.model(*self.inputs)
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
            output = self.model(*self.inputs)
        del output

    def run(self, phase: Callable[[str], None] = lambda _: None) -> None:
        if self.plan.mode == "train":
            self.train_step(phase)
        else:
            self.inference(phase)

    def external_tensors(self) -> list[torch.Tensor]:
        return [*self.inputs, *([self.targets] if self.targets is not None else [])]


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


@contextlib.contextmanager
def _layer_errors(tracer: Tracer, model: nn.Module) -> Iterator[None]:
    """Turn a failure inside the model into an error naming the layer (as summarize does)."""
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:
        record, shapes = tracer.failing_layer()
        layer = record.path or type(model).__name__
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if is_data_dependent_error(exc):
            raise NeedsRealRunError(layer, reason) from None
        if record.path == "" and not tracer.stack:
            raise InputError(f"the step failed outside the model's layers: {reason}") from None
        raise ShapeMismatchError(
            layer, type(record.module).__name__, shapes, expected_input(record.module), reason
        ) from None


def _track_step(runner: StepRunner, model: nn.Module) -> StepAccount:
    """Warm up, then track one step with MemTracker and the saved-tensor ledger."""
    warm = Tracer(model, count_flops=False, fast_paths=False)
    with warm.attached(), _layer_errors(warm, model):
        runner.ensure_targets()
        if runner.plan.mode == "train":
            runner.run()  # creates gradients and the optimizer state: the measured step is a later one
    params = list(model.parameters())
    buffers = list(model.buffers())
    tracer = Tracer(model, count_flops=False, fast_paths=False)
    ledger = SavedTensorLedger(excluded=[*params, *buffers, *runner.external_tensors()])
    ledger.owner_of = lambda: tracer.stack[-1][0].path if tracer.stack else LOSS
    tracker = PhaseMemTracker()
    tracker.track_external(model, *([runner.optimizer] if runner.optimizer else []), *runner.external_tensors())
    tracker.saved_live = lambda: ledger.live_bytes
    counter = flop_counter()
    hidden = OpObserver(_workspace_callback(tracker, runner.plan))
    with tracer.attached(), _layer_errors(tracer, model), ledger.recording(), tracker, counter, hidden:
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
        optimizer_state=_storage_bytes(_optimizer_state_tensors(runner.optimizer)),
        flops=counter.total,
        leaf_outputs=leaf_outputs,
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
    copies = STATE_COPIES.get(plan.optimizer or "", 0)
    training = forward + trainable_bytes + copies * trainable_bytes
    estimate = training if plan.mode == "train" else forward
    mib = 2**20
    lines = [
        f"M = parameters = {param_bytes / mib:,.1f} MiB",
        f"m = one sample's output per layer, averaged over {layers} layers = {per_sample / mib:,.3f} MiB",
        f"forward: M + B*m*layers = {param_bytes / mib:,.1f} + {batch_size}*{per_sample / mib:,.3f}*{layers} "
        f"= {forward / mib:,.1f} MiB",
    ]
    if plan.mode == "train":
        state = {2: " + Adam's two moments 2M", 1: " + momentum M", 0: ""}[copies]
        lines.append(
            f"training: forward + gradients M{state} = {training / mib:,.1f} MiB "
            "(the notes' quiz gives the forward figure again for backward: it forgets these)"
        )
    ratio = peak / estimate if estimate else 0
    lines.append(f"exact peak: {peak / mib:,.1f} MiB, {ratio:.2f}x the textbook figure")
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
    model = selection.module if selection.owned else meta_copy(selection.module)
    model.to(plan.param_dtype)
    return model


def estimate_memory(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    dtype: str | torch.dtype | None = None,
    mode: Mode = "train",
    optimizer: OptimizerName = "adam",
    precision: PrecisionName = "fp32",
    *,
    measure: bool = False,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    input_kind: str | None = None,
    max_modules: int | None = None,
    real_run: contextlib.AbstractContextManager | None = None,
) -> MemoryReport:
    """Peak memory of one steady-state training step (or one inference forward), exact and allocation-free.

    With ``measure=True`` the same step also runs for real on ``device`` (refused
    with ``MemoryBudgetError`` when the estimate exceeds ``budget_bytes``) and
    the measured peak is reported beside the estimate.
    """
    batch_size = check_batch(batch_size)
    plan = make_plan(mode, optimizer, precision, dtype, device)
    selection = select(model_or_name, config, input_size, input_kind, dtype=plan.param_dtype)
    check_module_count(selection.module, max_modules)
    model = _prepare_model(selection, plan)
    with preserved_modes(model):
        model.train(plan.mode == "train")
        with fake_mode():
            materialize(model, plan.device)
            runner = StepRunner(model, selection, plan, batch_size, real=False)
            account = _track_step(runner, model)
        params = list(model.parameters())
        param_bytes = _storage_bytes(params)
        trainable_bytes = _storage_bytes([p for p in params if p.requires_grad])
    breakdown = _breakdown(account)
    report = MemoryReport(
        architecture=selection.architecture,
        config=selection.config,
        model_class=type(model).__name__,
        input_shapes=[list(s) for s in input_shapes(selection, batch_size)],
        batch_size=batch_size,
        dtype=dtype_name(plan.param_dtype),
        mode=plan.mode,
        optimizer=plan.optimizer,
        precision=plan.precision,
        device=str(plan.device),
        peak_bytes=account.peak,
        phase=account.phase if account.phase in ("forward", "backward", "optimizer") else "forward",
        breakdown=breakdown,
        persistent_bytes=param_bytes
        + _buffer_bytes(model)
        + (trainable_bytes if plan.mode == "train" else 0)
        + account.optimizer_state,
        saved_activation_bytes=account.saved_total,
        step_flops=account.flops,
        layers=_layer_rows(model, account),
        formula=_formula(account, plan, batch_size, param_bytes, trainable_bytes, account.peak),
        notes=_notes(plan),
    )
    if measure:
        if budget_bytes is not None and report.peak_bytes > budget_bytes:
            raise MemoryBudgetError(report.peak_bytes, budget_bytes)
        with real_run or contextlib.nullcontext():  # e.g. the service's one-run-per-device gate
            _measure_into(report, selection, plan, batch_size)
    return report


def _buffer_bytes(model: nn.Module) -> int:
    return _storage_bytes(list(model.buffers()))


def _layer_rows(model: nn.Module, account: StepAccount) -> list[LayerMemory]:
    rows = []
    for path, module in model.named_modules():
        saved = account.saved_by_layer.get(path, 0)
        output = account.output_by_layer.get(path, 0)
        if saved or output:
            rows.append(LayerMemory(path=path, type=type(module).__name__, saved_bytes=saved, output_bytes=output))
    if account.saved_by_layer.get(LOSS):
        rows.append(
            LayerMemory(path=LOSS, type="CrossEntropyLoss", saved_bytes=account.saved_by_layer[LOSS], output_bytes=0)
        )
    return rows


def _notes(plan: StepPlan) -> list[str]:
    notes = [
        "Peak of the allocator's live bytes during one steady-state step, tracked on fake tensors by "
        "torch.distributed._tools.mem_tracker.MemTracker; nothing was allocated.",
    ]
    if plan.mode == "train":
        notes.append(
            f"Step: zero_grad(set_to_none=True), forward, cross-entropy, backward, {plan.optimizer}.step() with "
            f"PyTorch's default implementation on {plan.device.type} (the optimizer state already exists)."
        )
    else:
        notes.append("Step: one forward pass under torch.inference_mode(): nothing is saved for backward.")
    if plan.device.type == "cuda":
        notes.append("CUDA figures round each allocation up to 512 bytes, as the caching allocator does.")
    return notes


# ---------------------------------------------------------------- measured mode


def _measure_into(report: MemoryReport, selection: Selection, plan: StepPlan, batch_size: int) -> None:
    peak, saved, method = measure_peak(selection, plan, batch_size)
    report.measured_peak_bytes = peak
    report.measured_saved_activation_bytes = saved
    report.measure_method = method
    report.error_percent = round((report.peak_bytes - peak) / peak * 100, 3) if peak else None


def _real_model(selection: Selection, plan: StepPlan) -> nn.Module:
    if selection.owned:
        import models

        model = models.build_model(selection.architecture or "", selection.config)
    else:
        model = selection.module
    return model.to(device=plan.device, dtype=plan.param_dtype)


def measure_peak(selection: Selection, plan: StepPlan, batch_size: int) -> tuple[int, int, str]:
    """Run the step for real; returns (peak bytes, saved-for-backward bytes, method)."""
    if plan.device.type == "cuda":
        return _measure_cuda(selection, plan, batch_size)
    return _measure_cpu(selection, plan, batch_size)


def _ledger(runner: StepRunner, model: nn.Module) -> SavedTensorLedger:
    """Counts what the measured step saves for backward (it allocates nothing itself)."""
    return SavedTensorLedger(excluded=[*model.parameters(), *model.buffers(), *runner.external_tensors()])


def _measure_cpu(selection: Selection, plan: StepPlan, batch_size: int) -> tuple[int, int, str]:
    from torch.profiler import ProfilerActivity, profile, record_function

    model = _real_model(selection, plan)
    with preserved_modes(model):
        model.train(plan.mode == "train")
        runner = StepRunner(model, selection, plan, batch_size, real=True)
        runner.ensure_targets()
        # Everything alive before profiling starts stays alive throughout: its bytes are the baseline.
        baseline = _storage_bytes([*model.parameters(), *model.buffers(), *runner.external_tensors()])
        ledger = _ledger(runner, model)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            if plan.mode == "train":
                runner.run()  # warm-up: gradients and optimizer state are allocated inside the profile
            with record_function(MEASURE_RANGE), ledger.recording():
                runner.run()
        start, end = kineto_range(prof, MEASURE_RANGE)
        live = baseline
        peak = None
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
            peak = max(peak, live)
    return (peak if peak is not None else live), ledger.total_bytes, "torch.profiler allocation events (CPU)"


def _measure_cuda(selection: Selection, plan: StepPlan, batch_size: int) -> tuple[int, int, str]:  # pragma: no cover
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
    with preserved_modes(model):
        model.train(plan.mode == "train")
        runner = StepRunner(model, selection, plan, batch_size, real=True)
        runner.ensure_targets()
        if plan.mode == "train":
            runner.run()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        ledger = _ledger(runner, model)
        with ledger.recording():
            runner.run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - baseline
        saved = ledger.total_bytes
    del runner, model
    torch.cuda.empty_cache()
    return peak, saved, "torch.cuda.max_memory_allocated (after warm-up, relative to the baseline)"
