"""What a memory report says about how its figures were obtained: one place for every path (estimated,
sharded, measured)."""

from __future__ import annotations

import torch

from ..tracing.cpu_workspace import rules_apply
from .runner import StepCase


def step_notes(case: StepCase) -> list[str]:
    """How the peak was found, then what the step did, then what the device adds."""
    step, device = case.step, case.device
    notes = [
        "Peak of the allocator's live bytes during one steady-state step, tracked on fake tensors by "
        "torch.distributed._tools.mem_tracker.MemTracker; nothing was allocated.",
    ]
    if step.trains:
        notes.append(
            f"Step: zero_grad(set_to_none=True), forward, loss, backward, {step.optimizer}.step() with "
            f"PyTorch's default implementation on {device.type} (the optimizer state already exists). The loss "
            "is the model's own when it computes one, cross-entropy for classes and tokens, MSE for one output."
        )
    else:
        notes.append("Step: one forward pass under torch.inference_mode(): nothing is saved for backward.")
    if device.type == "cuda":
        notes.append("CUDA figures round each allocation up to 512 bytes, as the caching allocator does.")
    elif not rules_apply():
        notes.append(
            f"oneDNN's convolution buffers are modelled from torch 2.13's kernels; this is torch {torch.__version__}, "
            "so convolution peaks on the CPU may be off."
        )
    return notes
