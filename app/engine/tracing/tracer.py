"""Tracing a forward pass, the one way ``summarize`` and ``estimate_memory`` both use.

``Tracer`` puts a pre- and a post-hook on every module: each call's input and
output shapes (every tensor leaf of any structure: tuples, dicts, dataclasses,
Hugging Face ``ModelOutput``s...), the bytes it outputs, and the FLOPs its own
code ran, read from a running clock. Hooks are removed, swapped forwards put
back and train/eval modes restored in ``finally``. ``translate_failure`` turns
whatever a model raises into one clear error that names the innermost module
running, its input shapes and the op at fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import EngineError, InputError, ModelRunError, NeedsRealRunError, ShapeMismatchError
from .fastpath import fast_forward, rule_for
from .geometry import conv_window, pool_window
from .torch_internals import (
    CpuKernelShapes,
    current_op,
    flop_counter,
    is_data_dependent_error,
    reset_current_op,
)

MAX_DEPTH = 8  # nesting followed when looking for tensors in inputs and outputs
REASON_CHARS = 300  # a failure's reason is cut to this length, everywhere


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value``, in order: through tuples, lists, dicts, dataclasses and ModelOutputs.

    Never takes a tensor's truth value; other objects (a cache, a config) count as opaque.
    (A plain recursive function, not a closure: a closure calling itself is a reference
    cycle that would keep every tensor it saw alive until the garbage collector runs.)
    """
    found: list[torch.Tensor] = []
    _visit(value, 0, found, set())
    return found


def _visit(item: Any, depth: int, found: list[torch.Tensor], seen: set[int]) -> None:
    if isinstance(item, torch.Tensor):
        found.append(item)
        return
    if item is None or depth > MAX_DEPTH or isinstance(item, str | bytes | int | float | bool):
        return
    if id(item) in seen:
        return
    seen.add(id(item))
    if isinstance(item, Mapping):
        for inner in list(item.values()):
            _visit(inner, depth + 1, found, seen)
    elif isinstance(item, list | tuple):
        for inner in item:
            _visit(inner, depth + 1, found, seen)
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        for f in dataclasses.fields(item):
            _visit(getattr(item, f.name, None), depth + 1, found, seen)


def shapes_of(value: Any) -> list[list[int]]:
    return [list(t.shape) for t in tensor_leaves(value)]


def nbytes_of(tensors: list[torch.Tensor]) -> int:
    """Bytes of the tensors, each distinct tensor once."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


@dataclass
class Record:
    """What the hooks learn about one module."""

    path: str
    module: nn.Module
    calls: int = 0
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    output_bytes: int = 0
    own_flops: int = 0


@dataclass
class Frame:
    """A module call in progress."""

    record: Record
    input_shapes: list[list[int]]


class Tracer:
    """Forward hooks on every module: shapes, output bytes, and FLOPs by a running clock."""

    def __init__(self, model: nn.Module, count_flops: bool = True, fast_paths: bool = True, real: bool = False) -> None:
        self.model = model
        self.fast_paths = fast_paths
        # A real run takes no dispatch mode: one changes how composite ops (an RNN, say) run, and so what they
        # allocate. The FLOP counter and the grouped-matmul shapes are for meta and fake tensors.
        self.real = real
        self.records: dict[int, Record] = {}
        for path, module in model.named_modules(remove_duplicate=True):
            self.records[id(module)] = Record(path, module)
        self.stack: list[Frame] = []
        self.counter = flop_counter() if count_flops else None
        self._last = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.on_call: Callable[[Record], None] | None = None  # e.g. progress, or a deadline check
        self.recorder: Any = None  # a graph.GraphRecorder: module calls and the ops between them

    def _tick(self) -> None:
        if self.counter is None:
            return
        now = self.counter.total
        if self.stack:
            self.stack[-1].record.own_flops += now - self._last
        self._last = now

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._tick()
        record = self.records.get(id(module))
        if record is None:
            return
        if self.on_call is not None:
            self.on_call(record)
        record.calls += 1
        shapes = shapes_of((args, kwargs))
        if record.calls == 1:
            record.input_shapes = shapes
        self.stack.append(Frame(record, shapes))
        if self.recorder is not None:
            self.recorder.enter(module, record, args, kwargs)

    def _post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self._tick()
        record = self.records.get(id(module))
        if record is None:
            return
        # Pop down to this module's frame: a child that raised and was caught inside the model left its frame.
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].record is record:
                del self.stack[index:]
                break
        outputs = tensor_leaves(output)
        if self.recorder is not None:
            self.recorder.exit(module, output)
        if record.calls == 1:
            record.output_shapes = [list(t.shape) for t in outputs]
        record.output_bytes += nbytes_of(outputs)

    def _add_flops(self, flops: int) -> None:
        if self.counter is not None:
            self.counter.total += flops

    @contextlib.contextmanager
    def attached(self) -> Iterator[Tracer]:
        """Hooks on (and shape rules, and FLOP counting, when asked); always off again afterwards."""
        swapped: list[nn.Module] = []
        reset_current_op()
        try:
            for record in self.records.values():
                module = record.module
                self._handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._post, with_kwargs=True))
                rule = rule_for(module) if self.fast_paths else None
                if rule is not None and "forward" not in module.__dict__:
                    module.__dict__["forward"] = fast_forward(module, rule, self._add_flops)
                    swapped.append(module)
            # Below the FLOP counter (and any memory tracker entered later), so those still see the op.
            shapes = contextlib.nullcontext() if self.real else CpuKernelShapes()
            graph = self.recorder.mode() if self.recorder is not None else contextlib.nullcontext()
            with shapes, self.counter if self.counter is not None else contextlib.nullcontext(), graph:
                yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            for module in swapped:
                module.__dict__.pop("forward", None)

    def failing_frame(self) -> Frame | None:
        """The innermost module running when the forward raised; None outside every module."""
        return self.stack[-1] if self.stack else None


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag on exit, even after an error."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def expected_input(module: nn.Module) -> str | None:
    """What a layer accepts, in shape terms, for error messages."""
    if isinstance(module, nn.Linear):
        return f"(*, {module.in_features})"
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        dims = len(module.kernel_size)
        axes = ["L"] if dims == 1 else ["H", "W"] if dims == 2 else ["D", "H", "W"]
        window = conv_window(module)
        pads = window.padding if window else (0,) * dims
        reach = [d * (k - 1) + 1 for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        limits = ", ".join(f"{a} + 2*{p} >= {r}" for a, p, r in zip(axes, pads, reach, strict=True))
        return f"(N, {module.in_channels}, {', '.join(axes)}) with {limits}"
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d | nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d):
        window = pool_window(module)
        axes = {1: "L", 2: "H and W", 3: "D, H and W"}[window.dims]
        return f"(N, C, {axes}) with each at least the {'x'.join(map(str, window.kernel))} window"
    if isinstance(module, nn.BatchNorm1d):
        return f"(N, {module.num_features}) or (N, {module.num_features}, L)"
    if isinstance(module, nn.BatchNorm2d):
        return f"(N, {module.num_features}, H, W)"
    if isinstance(module, nn.LayerNorm):
        return f"(*, {', '.join(map(str, module.normalized_shape))})"
    if isinstance(module, nn.Embedding):
        return f"integer ids in [0, {module.num_embeddings})"
    d_model = getattr(module, "d_model", None)
    if isinstance(d_model, int):
        return f"(B, T, {d_model})"
    return None


_OP_HINTS = {
    "_local_scalar_dense": "it reads a tensor's value (.item(), int(), bool() or an if on a tensor)",
    "nonzero": "its output shape depends on the values (nonzero, masked_select, unique...)",
}
_SHAPE_WORDS = re.compile(
    r"size|shape|dimension|reduction dim|must match|cannot be multiplied|expected (input|\d|.*channels)|exceeds|"
    r"too small|out of range|does not match|not divisible|index .* is out of bounds|kernel",
    re.IGNORECASE,
)


def reason_of(exc: BaseException) -> str:
    """The first line of an exception's message, cut to one length everywhere."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def _op_name(op: Any) -> str | None:
    if op is None:
        return None
    name = str(getattr(op, "__name__", op))
    return name.removeprefix("aten::").removeprefix("aten.")


def is_shape_error(exc: BaseException, module: nn.Module | None = None) -> bool:
    """A failure about shapes: its message says so, or a layer that declares its input shape failed in its own op."""
    if not isinstance(exc, RuntimeError | ValueError | IndexError | AssertionError):
        return False
    return bool(_SHAPE_WORDS.search(str(exc))) or (module is not None and expected_input(module) is not None)


def translate_failure(exc: BaseException, tracer: Tracer, model: nn.Module, where: str = "forward") -> EngineError:
    """One error for anything the model raised: data-dependent, shape mismatch, or another failure of a module."""
    if isinstance(exc, EngineError):
        return exc
    frame = tracer.failing_frame()
    op = _op_name(getattr(exc, "func", None) or current_op())
    if frame is None:
        record, shapes = tracer.records[id(model)], tracer.records[id(model)].input_shapes
    else:
        record, shapes = frame.record, frame.input_shapes
    layer = record.path or type(model).__name__
    layer_type = type(record.module).__name__
    if is_data_dependent_error(exc):
        text = str(exc)
        reason = next((hint for name, hint in _OP_HINTS.items() if name in text or name == op), reason_of(exc))
        return NeedsRealRunError(layer, reason, op=op, layer_type=layer_type)
    if frame is None and where != "forward":
        return InputError(f"the {where} failed outside the model's layers: {reason_of(exc)}")
    if is_shape_error(exc, record.module):
        return ShapeMismatchError(layer, layer_type, shapes, expected_input(record.module), reason_of(exc))
    return ModelRunError(layer, layer_type, shapes, op, reason_of(exc))


@contextlib.contextmanager
def failures_translated(tracer: Tracer, model: nn.Module, where: str = "forward") -> Iterator[None]:
    """Raise ``translate_failure`` of anything raised inside (an engine error passes through)."""
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:  # any failure inside a model becomes one clear error
        raise translate_failure(exc, tracer, model, where) from None


def element_count(shapes: list[list[int]]) -> int:
    return sum(math.prod(s) for s in shapes)
