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

import torch

from ..errors import InputError
from ..tracing.torch_internals import fake_mode, fake_process_group, fsdp_memory_tracker, fully_shard
from .checkpointing import enable_checkpointing, repeated_blocks
from .notes import step_notes
from .one_device import estimate_one_device
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
    trainable = storage_bytes([p for p in selection.module.parameters() if p.requires_grad])
    buckets = trainable // selection.module.parameters().__next__().element_size() * case.step.param_dtype.itemsize
    report.peak_bytes += buckets
    report.persistent_bytes += buckets
    report.breakdown.gradients += buckets
    report.notes.append(
        f"DDP over {gpus} devices: each holds the whole model and its optimizer state, plus the reducer's gradient "
        f"buckets ({buckets:,} bytes: a copy of every gradient, gradient_as_bucket_view=False), counted in gradients."
    )
    return report


def _fsdp(case: StepCase, reshard: bool) -> MemoryReport:
    selection, step, gpus = case.selection, case.step, case.step.gpus
    model = meta_copy(selection.module)
    model.to(step.param_dtype)
    blocks = repeated_blocks(model)
    if not blocks:
        raise InputError(
            "FSDP shards each repeated block (a ModuleList or Sequential of blocks of one kind); this model has none: "
            "use sharding ddp",
            "sharding",
        )
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
            runner.ensure_targets()
            tracker = fsdp_memory_tracker(model, runner.optimizer)
            tracker.track_inputs(tuple(runner.external_tensors()))
            with tracker:
                for step in range(2):  # the first step creates gradients and the optimizer state
                    runner.run()
                    if step == 0:
                        tracker.reset_mod_stats()
            peak, parts = _peak(tracker)
            shard_bytes = storage_bytes([_local(p) for p in model.parameters()])
    kind = (
        "FSDP (ZeRO-3: parameters resharded after forward)"
        if reshard
        else "ZeRO-2 (parameters kept from forward to backward)"
    )
    return MemoryReport(
        **case.report_fields(),
        peak_bytes=peak,
        phase="backward",
        breakdown=MemoryBreakdown(**parts),
        persistent_bytes=shard_bytes,
        saved_activation_bytes=0,
        step_flops=0,
        layers=[],
        formula=None,
        notes=[
            f"{kind} over {gpus} devices, batch {case.batch_size} per device: FSDP2 fully_shard on each of the "
            f"{len(blocks)} repeated blocks and the root, run on fake tensors over a fake process group and tracked "
            "by PyTorch's FSDPMemTracker; the peak is one rank's (all hold equal padded shards).",
            *step_notes(case)[1:],
        ],
    )


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


def _peak(tracker: object) -> tuple[int, dict[str, int]]:
    """The tracker's peak (the largest device's), and its parts in the report's kinds."""
    snapshot = tracker.get_tracker_snapshot("peak")  # type: ignore[attr-defined]
    device_values = max(snapshot.values(), key=lambda values: values.get("Total", 0), default={})
    parts = dict.fromkeys(MemoryBreakdown.model_fields, 0)
    for key, value in device_values.items():
        kind = PARTS.get(getattr(key, "value", ""), "transient" if key != "Total" else None)
        if kind is not None:
            parts[kind] += value
    return device_values.get("Total", 0), parts
