"""One step, run the same way for the fake estimate and the real measurement.

``StepRunner`` holds a model, its inputs, its labels and its optimizer, and runs
one training step (zero_grad, forward, loss, backward, optimizer.step), one
inference forward, or a generation with the family's KV-cache loop, calling
``phase(name)`` as each part begins. ``meta_copy``, ``materialize`` and
``storage_bytes`` are the helpers every estimate (one device or sharded) shares.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..choices import OPTIMIZERS, dtype_name
from ..errors import InputError
from ..step import Step
from ..tracing.selection import (
    ModelInputs,
    Selection,
    first_output,
    input_shapes,
    loss_of,
    make_inputs,
    make_targets,
    model_loss,
)
from ..tracing.torch_internals import scalar_reads_as_one, storage_key
from ..tracing.transformers_internals import padding_as_given
from .generation import TracedSteps, decoding_for, run_generation

Phase = Callable[[str], None]


def _no_phase(_: str) -> None:
    """No one is listening."""


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on meta; ties are kept, nothing is copied."""
    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in memo:
            continue
        # Not empty_like: a fake tensor's like is fake, and a model estimated in place holds fake tensors.
        empty = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
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


@dataclass(frozen=True)
class StepCase:
    """What one estimate or measurement is of: a selection, the step, the batch per device, and the device."""

    selection: Selection
    step: Step
    batch_size: int
    device: torch.device

    def report_fields(self) -> dict[str, Any]:
        """The fields every memory report of this case starts with (estimated, sharded or measured)."""
        step = self.step
        return {
            "architecture": self.selection.architecture,
            "config": self.selection.config,
            "model_class": type(self.selection.module).__name__,
            "input_shapes": input_shapes(self.selection, self.batch_size),
            "batch_size": self.batch_size,
            "dtype": dtype_name(step.param_dtype),
            "mode": step.mode,
            "optimizer": step.used_optimizer,
            "precision": step.precision_choice.name,
            "device": str(self.device),
            "checkpointing": step.checkpointing,
            "gpus": step.gpus,
            "sharding": step.sharding if step.sharded else None,
            "tp": step.tp,
            "pp": step.pp,
            "microbatches": step.pipeline_microbatches if step.pp > 1 else None,
            "kv_cache_dtype": step.kv_cache_dtype if step.generates else None,
            "offload": step.offload if step.offload != "none" else None,
            "adapter": step.adapter.model_dump(mode="json") if step.adapter is not None else None,
            "quantization": step.quantization.model_dump(mode="json") if step.quantization is not None else None,
        }


def optimizer_state_tensors(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if optimizer is None:
        return []
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


class StepRunner:
    """One training step, inference forward or generation of ``model`` on ``device``, fake or real."""

    def __init__(self, model: nn.Module, case: StepCase, real: bool, with_optimizer: bool = True) -> None:
        self.model = model
        self.selection = case.selection
        self.step = step = case.step
        self.device = device = case.device
        self.real = real
        self.inputs: ModelInputs = make_inputs(case.selection, case.batch_size, step.param_dtype, device, real=real)
        self.targets: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        # A fake run answers transformers' "does the mask pad anything?" as the caller's mask would.
        self.no_padding = case.selection.no_padding
        self.cache: Any = None  # generate: the KV cache at the end
        self.decode_steps = 0  # generate: decode forwards begun (or skipped) so far
        self.traced: TracedSteps | None = None  # generate: set by an estimate to trace some steps, not all
        self.seen_tokens = 0  # generate: positions the self-attention cache has seen at the end
        if step.trains and with_optimizer:  # without: the forward and backward every optimizer shares
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = OPTIMIZERS[step.optimizer].build(trainable) if trainable else None

    def _as_real(self) -> Any:
        """What a fake run needs to decide as the real one would (a real run decides by itself)."""
        return padding_as_given(self.no_padding) if not self.real else contextlib.nullcontext()

    def ensure_targets(self) -> None:
        """Labels shaped for the model's output (found by one forward without a graph), unless it has its own loss."""
        if self.targets is not None or not self.step.trains:
            return
        with torch.no_grad(), self.step.autocast(self.device), self._as_real():
            output = self.inputs.run(self.model)
        if model_loss(output) is None:
            shape = tuple(first_output(output).shape)
            self.targets = make_targets(shape, self.selection.kind, self.device, real=self.real)
        del output

    def train_step(self, phase: Phase = _no_phase) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)
        phase("forward")
        with self.step.autocast(self.device):
            output = self.inputs.run(self.model)
            loss = loss_of(output, self.targets, self.selection.kind)
        del output
        phase("backward")
        loss.backward()
        del loss
        phase("optimizer")
        if self.optimizer is not None:
            with scalar_reads_as_one() if not self.real else contextlib.nullcontext():
                self.optimizer.step()

    def inference(self, phase: Phase = _no_phase) -> None:
        phase("forward")
        with torch.inference_mode(), self.step.autocast(self.device):
            output = self.inputs.run(self.model)
        del output

    def generate(self, phase: Phase = _no_phase) -> None:
        """Greedy generation with the family's KV-cache loop (Hugging Face: ``generate`` itself on real data)."""
        family = decoding_for(self.selection)
        stored = self.step.kv_cache_dtype
        if stored != "auto" and stored not in family.STORED_DTYPES:
            raise InputError(
                f"kv_cache_dtype {stored}: this model's generation keeps its cache in the compute dtype; an 8-bit "
                "cache is built for Hugging Face models",
                "kv_cache_dtype",
            )
        decoding = family(self.model, self.inputs, real=self.real, kv_cache_dtype=stored)
        self.decode_steps = 0

        def on_step(stage: str) -> None:
            self.decode_steps += stage == "decode"
            phase(stage)

        with torch.inference_mode(), self.step.autocast(self.device):
            traced = None if self.real else self.traced
            self.cache = run_generation(decoding, self.step.new_tokens, on_step, traced)
        self.seen_tokens = decoding.cached_tokens() if not self.real else 0

    def run(self, phase: Phase = _no_phase) -> None:
        with self._as_real():
            if self.step.trains:
                self.train_step(phase)
            elif self.step.generates:
                self.generate(phase)
            else:
                self.inference(phase)

    def external_tensors(self) -> list[torch.Tensor]:
        return [*self.inputs.tensors(), *([self.targets] if self.targets is not None else [])]
