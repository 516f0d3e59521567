"""Measuring: run the step for real on a private copy of the model and read its peak.

``measure_peak`` reads ``torch.cuda.max_memory_allocated`` on a GPU, the profiler's
allocation events on the CPU. The caller's module, its gradients and the RNG state
are left exactly as they were. ``measured_only`` answers for a model that reads its
data (fake tensors cannot run it): real figures, with no estimate before them.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..choices import OPTIMIZERS
from ..errors import MemoryBudgetError, NeedsRealRunError
from ..tracing.torch_internals import SavedTensorLedger, flop_counter, kineto_memory_events, kineto_range
from ..tracing.tracer import Tracer, failures_translated
from .adapters import prepare_weights
from .checkpointing import enable_checkpointing
from .generation import kv_cache
from .notes import step_notes
from .report import MemoryBreakdown, MemoryReport
from .runner import StepCase, StepRunner, optimizer_state_tensors, storage_bytes

MEASURE_RANGE = "layerscope.measured_step"
PHASE_RANGE = "layerscope.phase."


def measure_into(report: MemoryReport, case: StepCase) -> None:
    """Run ``case`` for real and put the measured figures beside the estimate in ``report``."""
    measured = measure_peak(case)
    report.measured_peak_bytes = measured.peak
    report.measured_saved_activation_bytes = measured.saved
    report.measured_phase = measured.phase
    report.measured_kv_cache_bytes = measured.kv_cache_bytes
    report.measure_method = measured.method
    report.error_percent = (
        round((report.peak_bytes - measured.peak) / measured.peak * 100, 3) if measured.peak else None
    )


def measured_only(
    case: StepCase,
    budget_bytes: int | None,
    real_run: contextlib.AbstractContextManager | None,
    why: NeedsRealRunError,
) -> MemoryReport:
    """For a model that reads its data: real figures from a real step, with no estimate before it."""
    step = case.step
    params = list(case.selection.module.parameters())
    param_bytes = sum(p.numel() for p in params) * step.param_dtype.itemsize
    trainable_bytes = sum(p.numel() for p in params if p.requires_grad) * step.param_dtype.itemsize
    copies = OPTIMIZERS[step.optimizer].state_copies if step.trains else 0
    floor = param_bytes + ((1 + copies) * trainable_bytes if step.trains else 0)
    if budget_bytes is not None and floor > budget_bytes:
        raise MemoryBudgetError(floor, budget_bytes)
    with real_run or contextlib.nullcontext():
        measured = measure_peak(case)
    state = measured.persistent
    return MemoryReport(
        **case.report_fields(),
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
            *step_notes(case)[1:],
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


def _real_model(case: StepCase) -> nn.Module:
    """A private model for the real run: built afresh for the zoo, a deep copy of a module the caller passed."""
    selection = case.selection
    if selection.owned:
        import models

        model = models.build_model(selection.architecture or "", selection.config)
    else:
        model = copy.deepcopy(selection.module)
    model = model.to(device=case.device, dtype=case.step.param_dtype)
    prepare_weights(model, case.step)
    if case.step.checkpointing:
        enable_checkpointing(model)
    return model


def measure_peak(case: StepCase) -> Measured:
    """Run the step for real on a private copy; the caller's module and the RNG state are left as they were."""
    devices = [case.device.index or 0] if case.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        if case.device.type == "cuda":
            return _measure_cuda(case)
        return _measure_cpu(case)


def _ledger(runner: StepRunner, model: nn.Module) -> SavedTensorLedger:
    """Counts what the measured step saves for backward (it allocates nothing itself)."""
    return SavedTensorLedger(excluded=[*model.parameters(), *model.buffers(), *runner.external_tensors()])


def _persistent(runner: StepRunner, model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "weights": storage_bytes(params),
        "buffers": storage_bytes(list(model.buffers())),
        "gradients": storage_bytes([p.grad for p in params if p.grad is not None]),
        "optimizer_state": storage_bytes(optimizer_state_tensors(runner.optimizer)),
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


def _measure_cpu(case: StepCase) -> Measured:
    from torch.profiler import ProfilerActivity, profile, record_function

    model = _real_model(case)
    model.train(case.step.trains)
    runner = StepRunner(model, case, real=True)
    tracer = Tracer(model, count_flops=False, fast_paths=False, real=True)
    with failures_translated(tracer, model, "measured step"), tracer.attached():
        runner.ensure_targets()
    # Everything alive before profiling starts stays alive throughout: its bytes are the baseline.
    baseline = storage_bytes([*model.parameters(), *model.buffers(), *runner.external_tensors()])
    ledger = _ledger(runner, model)
    phases = _PhaseRanges()
    with failures_translated(tracer, model, "measured step"), tracer.attached():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            if case.step.trains:
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


def _measure_cuda(case: StepCase) -> Measured:  # pragma: no cover
    device = case.device
    torch.cuda.synchronize(device)
    # Warm cuBLAS and cuDNN so their workspaces are allocated before the baseline is read.
    a = torch.randn(64, 64, device=device, dtype=case.step.param_dtype)
    (a @ a).sum().item()
    conv = torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8, device=device), torch.randn(4, 3, 3, 3, device=device))
    conv.sum().item()
    del a, conv
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    model = _real_model(case)
    model.train(case.step.trains)
    runner = StepRunner(model, case, real=True)
    runner.ensure_targets()
    if case.step.trains:
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
