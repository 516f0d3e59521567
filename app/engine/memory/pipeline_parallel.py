"""Per-GPU memory under pipeline parallelism: a decoder's layers split into stages, run by the 1F1B schedule.

Each GPU holds one stage: an equal share of the repeated blocks, the first stage the
token embeddings too, the last the final norm, the output head and the loss (the split
torchtitan makes: the model with the other stages' layers taken out). The batch is cut
into ``microbatches``; under 1F1B stage ``s`` of ``pp`` runs ``pp - s - 1`` forwards
before its first backward, so it holds up to ``pp - s`` micro-batches' activations at
once: the first stage the most, the last the fewest. Each stage is a rank kind of its
own, and each is traced: ``torch.distributed.pipelining``'s own ``Schedule1F1B`` runs
one training step of that stage on fake tensors over a fake process group (its sends
and receives return at once; its receive buffers, one per micro-batch, are allocated
as on a real run), and ``MemTracker`` follows every storage. bench/sizing_accuracy.py
checks every stage against real gloo runs of the same schedule over 2 and 4 processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..choices import OPTIMIZERS
from ..errors import InputError
from ..tracing.selection import is_hugging_face
from ..tracing.torch_internals import (
    PhaseMemTracker,
    fake_mode,
    fake_process_group,
    pipeline_buffers,
    pipeline_schedule,
    prepare_pipeline,
    scalar_reads_as_one,
)
from ..tracing.tracer import preserved_modes
from .checkpointing import enable_checkpointing
from .notes import step_notes
from .reference import tracing_everything
from .report import MemoryBreakdown, MemoryReport, StageMemory
from .runner import StepCase, materialize, meta_copy, storage_bytes
from .tensor_parallel import CATEGORIES


class PipelineStageModule(nn.Module):
    """One stage of a Hugging Face decoder: its share of the blocks; the embeddings on the first stage, the final
    norm and the output head on the last. Input: token ids [B, T] (first) or hidden states [B, T, hidden];
    output: hidden states [B, T, hidden], or the logits [B, T, vocab] (last)."""

    def __init__(self, model: nn.Module, stage: int, stages: int) -> None:
        super().__init__()
        base = model.base_model
        per_stage = len(base.layers) // stages
        self.first_layer = stage * per_stage
        base.layers = nn.ModuleList(list(base.layers)[self.first_layer : self.first_layer + per_stage])
        self.is_first, self.is_last = stage == 0, stage == stages - 1
        if not self.is_first:
            model.set_input_embeddings(None)
        if not self.is_last:
            base.norm = nn.Identity()
            model.set_output_embeddings(nn.Identity())
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": x} if self.is_first else {"inputs_embeds": x}
        return self.model(**inputs).logits


def check_pipeline(model: nn.Module, pp: int, batch_size: int, microbatches: int) -> int:
    """The number of repeated blocks, once the layout is known to split evenly (else InputError naming the
    numbers)."""
    base = getattr(model, "base_model", None) if is_hugging_face(model) else None
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not isinstance(getattr(base, "norm", None), nn.Module):
        raise InputError(
            "pipeline parallelism splits a Hugging Face decoder's blocks (base_model.layers, then a final norm) "
            "into stages, and this model has no such stack",
            "pp",
        )
    if len(layers) % pp:
        raise InputError(
            f"pp={pp} does not divide num_hidden_layers={len(layers):,}: each stage must hold an equal share", "pp"
        )
    if batch_size % microbatches:
        raise InputError(
            f"microbatches={microbatches} does not divide the batch of {batch_size:,}: the schedule cuts the batch "
            "into equal micro-batches",
            "microbatches",
        )
    return len(layers)


def in_flight(stage: int, stages: int, microbatches: int) -> int:
    """Micro-batches whose activations stage ``stage`` holds at once under 1F1B."""
    return min(stages - stage, microbatches)


def estimate_pipeline_parallel(case: StepCase) -> MemoryReport:
    """Every stage's peak (one rank kind each); ``peak_bytes`` is the largest, the GPU a layout needs."""
    step = case.step
    pp, microbatches = step.pp, step.pipeline_microbatches
    layers = check_pipeline(case.selection.module, pp, case.batch_size, microbatches)
    stages = [_trace_stage(case, stage, pp, microbatches, layers) for stage in range(pp)]
    worst = max(stages, key=lambda s: s.peak_bytes)
    return MemoryReport(
        **case.report_fields(),
        peak_bytes=worst.peak_bytes,
        phase=worst.phase,
        breakdown=worst.breakdown,
        persistent_bytes=worst.persistent_bytes,
        saved_activation_bytes=0,
        step_flops=0,
        layers=[],
        formula=None,
        stages=stages,
        notes=[
            f"pipeline parallel over {pp} GPUs: {layers // pp} of the {layers} blocks per stage, the batch of "
            f"{case.batch_size:,} cut into {microbatches} micro-batches of {case.batch_size // microbatches:,}, run "
            "by torch.distributed.pipelining's Schedule1F1B on fake tensors over a fake process group, each stage "
            f"traced (stage {worst.stage} peaks highest; stages lists them all). Received activations and "
            "gradients (one buffer per micro-batch, kept between steps) count as inputs.",
            *step_notes(case)[1:],
        ],
    )


def traced_microbatches(stage: int, stages: int, microbatches: int) -> int:
    """Micro-batches a stage's trace runs: enough for 1F1B's steady state (one forward after the first backward,
    gradients then live, with ``pp - s`` micro-batches in flight), and no fewer than the stages (the schedule
    needs one per stage); each further one repeats it and adds only its receive buffers and its slice of the
    batch, which are counted. The last stage keeps every micro-batch's output until the step returns them merged,
    so it runs them all."""
    if tracing_everything() or stage == stages - 1:
        return microbatches
    return min(microbatches, max(stages, stages - stage + 1))


def _trace_stage(case: StepCase, stage: int, stages: int, microbatches: int, layers: int) -> StageMemory:
    step, device = case.step, case.device
    model = meta_copy(case.selection.module)
    module = PipelineStageModule(model, stage, stages)
    module.to(step.param_dtype)
    if step.checkpointing:
        enable_checkpointing(module)
    config = model.config
    micro, tokens = case.batch_size // microbatches, _sequence_length(case)
    traced = traced_microbatches(stage, stages, microbatches)
    with fake_process_group(stages, rank=stage), preserved_modes(module), fake_mode():
        module.train()
        materialize(module, device)
        ids = torch.zeros(micro * traced, tokens, dtype=torch.long, device=device) if module.is_first else None
        targets = torch.zeros(micro * traced, tokens, dtype=torch.long, device=device) if module.is_last else None
        example_input = (
            ids[:micro]
            if ids is not None
            else torch.empty(micro, tokens, config.hidden_size, dtype=step.param_dtype, device=device)
        )
        with torch.no_grad(), step.autocast(device):
            example_output = module(example_input)
        if not module.is_first:
            example_input.requires_grad_(True)
        if not module.is_last:
            example_output.requires_grad_(True)
        schedule = pipeline_schedule(module, stage, stages, device, traced, example_input, example_output, _token_loss)
        del example_input, example_output
        optimizer = OPTIMIZERS[step.optimizer].build([p for p in module.parameters() if p.requires_grad])
        arguments = [ids] if ids is not None else []
        keywords = {"target": targets} if targets is not None else {}

        def run(phase: Any = lambda _: None) -> None:
            optimizer.zero_grad(set_to_none=True)
            phase("forward")
            with step.autocast(device), scalar_reads_as_one():  # the schedule's warm-up vote reads one value
                schedule.step(*arguments, **keywords)
            phase("optimizer")
            with scalar_reads_as_one():
                optimizer.step()

        _warm_up(run, schedule, module, optimizer, ids, targets, micro)
        tracker = PhaseMemTracker()
        phases = [
            module.register_forward_pre_hook(lambda *_: tracker.set_phase("forward")),
            module.register_forward_hook(lambda _m, _i, output: _on_backward(output, tracker)),
        ]
        inputs = [t for t in (ids, targets) if t is not None]
        buffers = pipeline_buffers(schedule)
        try:
            tracker.track_external(module, optimizer, *inputs, *buffers)
            with tracker:
                run(tracker.set_phase)
        finally:
            for handle in phases:
                handle.remove()
        persistent = storage_bytes([*module.parameters(), *module.buffers()])
        categories, peak, phase = tracker.peak_by_category(), tracker.peak_bytes(), tracker.peak_phase
        # The micro-batches not traced: each adds its receive buffers and its slice of the batch, live throughout.
        untraced = (microbatches - traced) * (storage_bytes(buffers) + storage_bytes(inputs)) // traced
    parts = dict.fromkeys(MemoryBreakdown.model_fields, 0)
    for kind, value in categories.items():
        parts[CATEGORIES.get(kind, "transient")] += value
    parts["inputs"] += untraced
    breakdown = MemoryBreakdown(**parts)
    per_stage = layers // stages
    holds = [f"blocks {stage * per_stage}–{(stage + 1) * per_stage - 1}"]
    if stage == 0:
        holds.insert(0, "embeddings")
    if stage == stages - 1:
        holds.append("final norm, output head and loss")
    return StageMemory(
        stage=stage,
        holds=", ".join(holds),
        in_flight_microbatches=in_flight(stage, stages, microbatches),
        peak_bytes=peak + untraced,
        phase=phase if phase in ("forward", "backward", "optimizer") else "forward",
        breakdown=breakdown,
        persistent_bytes=persistent + breakdown.gradients + breakdown.optimizer_state,
    )


def _warm_up(
    run: Any,
    schedule: Any,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ids: torch.Tensor | None,
    targets: torch.Tensor | None,
    micro: int,
) -> None:
    """Untracked, what a first step leaves for the tracked one: the optimizer's state (made by its step over
    gradients of zeros) and the schedule's receive buffers (made as its first step makes them). The reference
    runs a whole step instead."""
    if tracing_everything():
        run()
        return
    for param in module.parameters():
        if param.requires_grad:
            param.grad = torch.zeros_like(param)
    with scalar_reads_as_one():
        optimizer.step()
        first = (ids[:micro],) if ids is not None else ()
        prepare_pipeline(schedule, first, targets[:micro] if targets is not None else None)
    optimizer.zero_grad(set_to_none=True)


def _on_backward(output: torch.Tensor, tracker: Any) -> None:
    """Mark the backward phase when the gradient reaches this micro-batch's output (a tensor hook: it keeps
    nothing alive)."""
    if output.requires_grad:
        output.register_hook(lambda _: tracker.set_phase("backward"))


def _sequence_length(case: StepCase) -> int:
    """Tokens per sequence: the selection's one-sample input size (for given data, its first tensor's)."""
    return int(case.selection.input_size[0])


def _token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position (the loss a training step on tokens computes)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
