"""Per-GPU memory under tensor parallelism: Megatron's column and row split, as PyTorch's DTensor applies it.

A Hugging Face config names its own plan (``base_model_tp_plan``: q, k, v, gate and up
projections split by columns, o and down by rows, so each block needs one all-reduce
after attention and one after the MLP). ``torch.distributed.tensor.parallel``'s
``parallelize_module`` applies it to the model over a fake process group of ``tp``
ranks; the step runs on fake tensors and ``MemTracker`` follows this rank's storages:
its weight shards, the full-size embeddings, norms and head every rank keeps, the
activations of its heads, and the collectives' buffers. Every rank holds shards of the
same sizes, so one rank's peak is every rank's: the report says so. A layout the model
cannot split evenly (heads, KV heads or the MLP's width by ``tp``) is refused, naming
the numbers. bench/sizing_accuracy.py checks it against real runs over 2 and 4
processes with the gloo backend.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import InputError
from ..tracing.selection import is_hugging_face
from ..tracing.torch_internals import PhaseMemTracker, fake_mode, fake_process_group, parallelize
from ..tracing.tracer import preserved_modes
from .checkpointing import enable_checkpointing
from .notes import step_notes
from .report import MemoryBreakdown, MemoryReport
from .runner import StepCase, StepRunner, meta_copy, storage_bytes

STYLES = ("colwise", "rowwise")  # the plan entries sized; others (experts, packed) are refused by name
CATEGORIES = {  # PhaseMemTracker's categories -> the report's
    "parameter": "weights",
    "buffer": "buffers",
    "gradient": "gradients",
    "activation": "activations",
    "temp": "transient",
    "optstate": "optimizer_state",
    "other": "inputs",
}


def tensor_parallel_plan(model: nn.Module, tp: int) -> dict[str, str]:
    """The model's own plan, checked: every style is one sized here, and every split dimension divides by tp."""
    config = getattr(model, "config", None)
    plan = dict(getattr(config, "base_model_tp_plan", None) or {}) if is_hugging_face(model) else {}
    if not plan:
        raise InputError(
            "tensor parallelism follows a Hugging Face config's own plan (base_model_tp_plan), and this model has none",
            "tp",
        )
    unknown = sorted({style for style in plan.values() if style not in STYLES})
    if unknown:
        raise InputError(
            f"this model's tensor-parallel plan uses {', '.join(unknown)} (experts or packed weights), which is not "
            "sized yet: use tp 1",
            "tp",
        )
    for name in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value % tp:
            raise InputError(f"tp={tp} does not divide {name}={value:,}: each rank must hold an equal share", "tp")
    return plan


def estimate_tensor_parallel(case: StepCase) -> MemoryReport:
    """One rank's peak with the model split over ``tp`` ranks (batch_size is each rank's, the same on all)."""
    step, tp = case.step, case.step.tp
    model = meta_copy(case.selection.module)
    plan = tensor_parallel_plan(model, tp)
    model.to(step.param_dtype)
    if step.checkpointing:
        enable_checkpointing(model)
    with fake_process_group(tp) as mesh:
        parallelize(model.base_model, mesh, plan)
        with preserved_modes(model), fake_mode():
            model.train(step.trains)
            model.to_empty(device=case.device)
            runner = StepRunner(model, case, real=False)
            runner.ensure_targets()
            if step.trains:
                runner.run()  # untracked: the gradients and the optimizer state the measured step starts with
            tracker = PhaseMemTracker()
            tracker.track_external(model, *runner.external_tensors(), *([runner.optimizer] if runner.optimizer else []))
            with tracker:
                runner.run(tracker.set_phase)
            peak, categories, phase = tracker.peak_bytes(), tracker.peak_by_category(), tracker.peak_phase
            local = storage_bytes([_local(p) for p in model.parameters()])
    parts = dict.fromkeys(MemoryBreakdown.model_fields, 0)
    for kind, value in categories.items():
        parts[CATEGORIES.get(kind, "transient")] += value
    return MemoryReport(
        **case.report_fields(),
        peak_bytes=peak,
        phase=phase if phase in ("forward", "backward", "optimizer", "prefill", "decode") else "forward",
        breakdown=MemoryBreakdown(**parts),
        persistent_bytes=local,
        saved_activation_bytes=0,
        step_flops=0,
        layers=[],
        formula=None,
        notes=[
            f"tensor parallel over {tp} GPUs, this model's own plan ({len(plan)} entries: "
            f"{', '.join(f'{k} {v}' for k, v in list(plan.items())[:3])}...) applied by PyTorch's parallelize_module, "
            "run on fake tensors over a fake process group; every rank holds equal shards, so this rank's peak is "
            "each rank's (one rank kind)",
            *step_notes(case)[1:],
        ],
    )


def _local(tensor: Any) -> Any:
    local = getattr(tensor, "to_local", None)
    return local() if callable(local) else tensor
