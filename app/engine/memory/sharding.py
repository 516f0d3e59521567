"""Per-device memory of data-parallel training across N devices: DDP, ZeRO-2 and FSDP (ZeRO-3).

FSDP and ZeRO-2 are PyTorch's own FSDP2: ``fully_shard`` on each repeated block and
then on the root (``reshard_after_forward`` True for FSDP, False for ZeRO-2), run on
fake tensors over a fake process group of N ranks, and tracked by PyTorch's
``FSDPMemTracker`` (as torchtitan estimates memory). Every rank holds the same padded
shards, so rank 0's peak is every rank's.

DDP keeps a whole replica per device; its reducer adds flat gradient buckets that
hold a copy of every gradient (``gradient_as_bucket_view=False``, the default), so
its peak is one device's plus the trainable parameters' bytes. bench/sizing_accuracy.py
checks all three against real runs over local processes with the gloo backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..choices import OFFLOADED_KINDS, OFFLOADS
from ..errors import InputError
from ..tracing.torch_internals import (
    fake_mode,
    fake_process_group,
    fsdp_memory_tracker,
    fully_shard,
    scalar_reads_as_one,
)
from .adapters import prepare_weights
from .checkpointing import enable_checkpointing, keep_first_blocks, repeated_blocks, repeated_stacks
from .notes import step_notes
from .one_device import estimate_one_device
from .reference import tracing_everything
from .report import MemoryBreakdown, MemoryReport
from .runner import StepCase, StepRunner, meta_copy, storage_bytes


def estimate_sharded(case: StepCase) -> MemoryReport:
    """The per-device peak of one training step of ``batch_size`` samples per device over ``gpus`` devices."""
    if case.step.sharding == "ddp":
        return _ddp(case)
    return _fsdp(case, reshard=case.step.sharding == "fsdp")


def _ddp(case: StepCase) -> MemoryReport:
    selection, gpus = case.selection, case.step.gpus
    report = estimate_one_device(case)
    model = meta_copy(selection.module).to(case.step.param_dtype)
    prepare_weights(model, case.step)
    buckets = storage_bytes([p for p in model.parameters() if p.requires_grad])
    report.peak_bytes += buckets
    report.persistent_bytes += buckets
    report.breakdown.gradients += buckets
    report.notes.append(
        f"DDP over {gpus} devices: each holds the whole model and its optimizer state, plus the reducer's gradient "
        f"buckets ({buckets:,} bytes: a copy of every gradient, gradient_as_bucket_view=False), counted in gradients."
    )
    return report


@dataclass(frozen=True)
class ShardedTrace:
    """One rank's step: each phase's peak (FSDPMemTracker's kinds and "Total"), and its parameter shards' bytes."""

    phase_peaks: dict[str, dict[str, int]]
    shard_bytes: int
    host_peak: int = 0  # with offload: the host's peak (offloaded shards, optimizer state, its step)

    def peak(self) -> tuple[str, dict[str, int]]:
        """The step's peak: the phase and its snapshot (the earlier phase on a tie)."""
        order = [phase for phase in STEP_PHASES if phase in self.phase_peaks]
        phase = max(order, key=lambda name: (self.phase_peaks[name].get("Total", 0), -order.index(name)))
        return phase, self.phase_peaks[phase]


STEP_PHASES = ("setup", "forward", "backward", "optimizer")
SAMPLES = {1: [4, 5, 6], 2: [4, 6, 8]}  # blocks per stack traced, by the period of the stack's pattern


def _fsdp(case: StepCase, reshard: bool) -> MemoryReport:
    selection, gpus = case.selection, case.step.gpus
    stacks = repeated_stacks(selection.module)
    if not stacks:
        raise InputError(
            "FSDP shards each repeated block (a ModuleList or Sequential of blocks of one kind); this model has none: "
            "use sharding ddp",
            "sharding",
        )
    blocks = sum(len(stack) for stack in stacks)
    trace, shortened = _representative_trace(case, reshard, {len(stack) for stack in stacks})
    host_bytes = trace.host_peak if case.step.offload != "none" else None
    phase, at_peak = trace.peak()
    parts = dict.fromkeys(MemoryBreakdown.model_fields, 0)
    for kind, value in at_peak.items():
        if kind != "Total":
            parts[PARTS.get(kind, "transient")] += value
    kind = (
        "FSDP (ZeRO-3: parameters resharded after forward)"
        if reshard
        else "ZeRO-2 (parameters kept from forward to backward)"
    )
    how = (
        f"traced at {', '.join(map(str, shortened))} blocks per stack, where every phase's peak and its parts grow "
        "by the same bytes per block, and extended to the model's"
        if shortened
        else "traced whole"
    )
    offload = case.step.offload
    offload_notes = (
        [
            f"Offload {offload} ({OFFLOADS[offload]}): the peak and its parts are the GPU's, taken at every op over "
            f"the bytes FSDPMemTracker files outside {', '.join(sorted(OFFLOADED_KINDS[offload]))} (and the "
            f"optimizer's temporaries); host_bytes ({host_bytes:,}) is the host's peak of those. Derived from the "
            "trace's categories, not measured: FSDP2's CPU offload needs a CUDA device, which this estimate "
            "does not run on; pinned-memory staging copies and the transfers' timing are not counted."
        ]
        if offload != "none"
        else []
    )
    return MemoryReport(
        **case.report_fields(),
        host_bytes=host_bytes,
        peak_bytes=at_peak.get("Total", 0),
        phase=phase if phase in ("forward", "backward", "optimizer") else "forward",
        breakdown=MemoryBreakdown(**parts),
        persistent_bytes=0 if offload == "all" else trace.shard_bytes,
        saved_activation_bytes=0,
        step_flops=0,
        layers=[],
        formula=None,
        notes=[
            f"{kind} over {gpus} devices, batch {case.batch_size} per device: FSDP2 fully_shard on each of the "
            f"{blocks} repeated blocks and the root, run on fake tensors over a fake process group and tracked "
            f"by PyTorch's FSDPMemTracker ({how}); the peak is one rank's (all hold equal padded shards).",
            *offload_notes,
            *step_notes(case)[1:],
        ],
    )


def _representative_trace(case: StepCase, reshard: bool, lengths: set[int]) -> tuple[ShardedTrace, list[int]]:
    """One rank's step, from shortened copies of the model where that is exact.

    Every repeated block adds its shards, gradients, optimizer state and saved activations, so each phase's peak
    is affine in the number of blocks. Three shortened copies (4, 5, 6 blocks per stack; 4, 6, 8 when the stack
    is even, for blocks that alternate, such as Gemma-2's sliding and global layers) are traced; when every
    phase's peak and every part of it lies on one line through the three, the model's figures are that line at
    its length. Otherwise, or under the reference switch, the model is traced whole.
    """
    length = next(iter(lengths))
    period = 2 if length % 2 == 0 else 1
    samples = SAMPLES[period]
    if len(lengths) == 1 and length > samples[-1] + 1 and not tracing_everything():
        traces = [_trace(case, reshard, keep) for keep in samples]
        line = _on_one_line(traces, samples, length)
        if line is not None:
            return line, samples
    return _trace(case, reshard, None), []


def _on_one_line(traces: list[ShardedTrace], samples: list[int], length: int) -> ShardedTrace | None:
    """The figures at ``length`` blocks, when each lies on one line through the equally spaced samples."""
    phases = set(traces[0].phase_peaks)
    if any(set(trace.phase_peaks) != phases for trace in traces):
        return None
    steps = (length - samples[0]) // (samples[1] - samples[0])

    def extended(values: list[int]) -> int | None:
        first, second, third = values
        return first + steps * (second - first) if third - second == second - first else None

    peaks: dict[str, dict[str, int]] = {}
    for phase in phases:
        kinds = set().union(*(trace.phase_peaks[phase] for trace in traces))
        peaks[phase] = {}
        for kind in kinds:
            value = extended([trace.phase_peaks[phase].get(kind, 0) for trace in traces])
            if value is None:
                return None
            peaks[phase][kind] = value
    shard_bytes = extended([trace.shard_bytes for trace in traces])
    host_peak = extended([trace.host_peak for trace in traces])
    return None if shard_bytes is None or host_peak is None else ShardedTrace(peaks, shard_bytes, host_peak)


def _trace(case: StepCase, reshard: bool, keep: int | None) -> ShardedTrace:
    """One rank's steady-state step of the model (cut to ``keep`` blocks per stack when given)."""
    step, gpus = case.step, case.step.gpus
    model = meta_copy(case.selection.module)
    if keep is not None:
        keep_first_blocks(model, keep)
    model.to(step.param_dtype)
    prepare_weights(model, step)
    if step.checkpointing:
        enable_checkpointing(model)
    with fake_process_group(gpus) as mesh:
        for block in repeated_blocks(model):
            fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
        with fake_mode():
            model.to_empty(device=case.device)
            model.train()
            runner = StepRunner(model, case, real=False)
            runner.ensure_targets()  # also FSDP's lazy initialisation
            _warm_up(runner, model, whole_step=not reshard)
            tracker = fsdp_memory_tracker(model, runner.optimizer, OFFLOADED_KINDS[step.offload])
            tracker.track_inputs(tuple(runner.external_tensors()))

            def phase(name: str) -> None:
                tracker.phase = name

            with tracker:
                runner.run(phase)
            shard_bytes = storage_bytes([_local(p) for p in model.parameters()])
    return ShardedTrace(dict(tracker.phase_peaks), shard_bytes, tracker.host_peak)


def _warm_up(runner: StepRunner, model: nn.Module, whole_step: bool) -> None:
    """Untracked, what a first step leaves for the tracked one: a gradient on every trainable shard and the
    optimizer's state (made by its step, as the first real step makes it). ZeRO-2 and the reference run a whole
    step: ZeRO-2 keeps more from one step to the next than gradients and state."""
    if whole_step or tracing_everything():
        runner.run()
        return
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.zeros_like(param)
    if runner.optimizer is not None:
        with scalar_reads_as_one():
            runner.optimizer.step()


def _local(tensor: torch.Tensor) -> torch.Tensor:
    local = getattr(tensor, "to_local", None)
    return local() if callable(local) else tensor


PARTS = {  # FSDPMemTracker's kinds -> the report's
    "Sharded Param": "weights",
    "Unsharded Param": "transient",
    "Buffer": "buffers",
    "Sharded Grad": "gradients",
    "Unsharded Grad": "transient",
    "Activation": "activations",
    "Temp": "transient",
    "All Gather": "transient",
    "Reduce Scatter": "transient",
    "OptState": "optimizer_state",
    "Inputs": "inputs",
}
