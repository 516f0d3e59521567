"""``summarize``: per-layer shapes, parameters and FLOPs, without allocating the model or its activations.

Zoo models are built on the ``meta`` device and fed meta inputs; a module the
caller passes runs under ``FakeTensorMode``, its real weights read but never
copied. Forward hooks record each module's input and output shapes, and a
``FlopCounterMode`` clock read at every hook attributes each op's FLOPs to the
module running it. Hooks are removed and every module's train/eval mode
restored in ``finally``, whatever happens.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .errors import EngineError, InputError, NeedsRealRunError, ShapeMismatchError
from .explain import explain, explain_block
from .fastpath import fast_forward, rule_for
from .report import LayerRow, SummaryReport, Totals
from .selection import (
    Selection,
    check_batch,
    check_module_count,
    dtype_name,
    input_shapes,
    make_inputs,
    parse_dtype,
    selected,
)
from .torch_internals import fake_mode, flop_counter, is_data_dependent_error

FAST_PATHS = True  # shape rules for common layers (see fastpath.py); tests compare both ways

NOTES = [
    "FLOPs count multiply-accumulates of matrix products, convolutions and attention, 2 per MAC, as "
    "torch.utils.flop_counter does; element-wise work (activations, norms, additions) is not counted.",
    "params per row are the parameters a layer holds itself; a tied or shared weight counts once, at its "
    "first owner. The *_inclusive columns add up each subtree.",
]


@dataclass
class _Record:
    """What the hooks learn about one module."""

    path: str
    module: nn.Module
    calls: int = 0
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    output_bytes: int = 0
    own_flops: int = 0


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple) and len(value) == 2 and not value[1] and isinstance(value[0], tuple):
        args = value[0]  # (args, {}) from a pre-hook: the usual case
        if all(isinstance(a, torch.Tensor) for a in args):
            return list(args)
    leaves, _ = tree_flatten(value)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


class Tracer:
    """Forward hooks on every module: shapes, output bytes, and FLOPs by a running clock."""

    def __init__(self, model: nn.Module, count_flops: bool = True, fast_paths: bool = True) -> None:
        self.model = model
        self.fast_paths = fast_paths
        self.records: dict[int, _Record] = {}
        for path, module in model.named_modules():
            self.records[id(module)] = _Record(path, module)
        self.stack: list[tuple[_Record, list[list[int]]]] = []
        self.counter = flop_counter() if count_flops else None
        self._last = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _tick(self) -> None:
        if self.counter is None:
            return
        now = self.counter.total
        if self.stack:
            self.stack[-1][0].own_flops += now - self._last
        self._last = now

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._tick()
        record = self.records.get(id(module))
        if record is None:
            return
        record.calls += 1
        shapes = [list(t.shape) for t in _tensors((args, kwargs))]
        if record.calls == 1:
            record.input_shapes = shapes
        self.stack.append((record, shapes))

    def _post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self._tick()
        record = self.records.get(id(module))
        if record is None:
            return
        if self.stack and self.stack[-1][0] is record:
            self.stack.pop()
        outputs = _tensors(output)
        if record.calls == 1:
            record.output_shapes = [list(t.shape) for t in outputs]
        record.output_bytes += sum(t.numel() * t.element_size() for t in outputs)

    def _add_flops(self, flops: int) -> None:
        if self.counter is not None:
            self.counter.total += flops

    @contextlib.contextmanager
    def attached(self) -> Iterator[Tracer]:
        """Hooks on (and shape rules, and FLOP counting, when asked); always off again afterwards."""
        swapped: list[nn.Module] = []
        try:
            for record in self.records.values():
                module = record.module
                self._handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._post, with_kwargs=True))
                rule = rule_for(module) if self.fast_paths else None
                if rule is not None and "forward" not in module.__dict__:
                    module.__dict__["forward"] = fast_forward(module, rule, self._add_flops)
                    swapped.append(module)
            with self.counter if self.counter is not None else contextlib.nullcontext():
                yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            for module in swapped:
                module.__dict__.pop("forward", None)

    def failing_layer(self) -> tuple[_Record, list[list[int]]]:
        """The innermost module running when the forward raised."""
        if self.stack:
            return self.stack[-1]
        root = self.records[id(self.model)]
        return root, root.input_shapes


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
        pads = module.padding if isinstance(module.padding, tuple) else (0,) * dims
        reach = [d * (k - 1) + 1 for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        limits = ", ".join(f"{a} + 2*{p} >= {r}" for a, p, r in zip(axes, pads, reach, strict=True))
        return f"(N, {module.in_channels}, {', '.join(axes)}) with {limits}"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return f"(N, C, H, W) with H and W at least the {module.kernel_size} window"
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


def _data_reason(exc: BaseException) -> str:
    text = str(exc)
    for op, hint in _OP_HINTS.items():
        if op in text:
            return hint
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def run_forward(model: nn.Module, tracer: Tracer, inputs: tuple[torch.Tensor, ...]) -> Any:
    """Run the traced forward; turn a failure into an error that names the layer and both shapes."""
    try:
        with tracer.attached(), torch.no_grad():
            return model(*inputs)
    except EngineError:
        raise
    except Exception as exc:  # any failure inside a user's forward becomes a clear error
        record, shapes = tracer.failing_layer()
        layer = record.path or type(model).__name__
        if is_data_dependent_error(exc):
            raise NeedsRealRunError(layer, _data_reason(exc)) from None
        raise ShapeMismatchError(
            layer, type(record.module).__name__, shapes, expected_input(record.module), _reason(exc)
        ) from None


def _rows(tracer: Tracer) -> list[LayerRow]:
    model = tracer.model
    owner: dict[int, str] = {}
    rows: list[LayerRow] = []
    for path, module in model.named_modules():
        record = tracer.records[id(module)]
        own = trainable = buffers = 0
        shared = []
        for name, param in module.named_parameters(recurse=False):
            if id(param) in owner:
                shared.append(f"{name} = {owner[id(param)]}")
                continue
            owner[id(param)] = f"{path}.{name}" if path else name
            own += param.numel()
            trainable += param.numel() if param.requires_grad else 0
        for name, buffer in module.named_buffers(recurse=False):
            if id(buffer) not in owner:
                owner[id(buffer)] = f"{path}.{name}" if path else name
                buffers += buffer.numel()
        children = list(module.children())
        inp = record.input_shapes[0] if record.input_shapes else None
        out = record.output_shapes[0] if record.output_shapes else None
        rows.append(
            LayerRow(
                path=path,
                name=path.rsplit(".", 1)[-1] if path else type(module).__name__,
                type=type(module).__name__,
                depth=path.count(".") + 1 if path else 0,
                parent=(path.rsplit(".", 1)[0] if "." in path else "") if path else None,
                is_leaf=not children,
                calls=record.calls,
                input_shape=inp,
                input_shapes=record.input_shapes,
                output_shape=out,
                output_shapes=record.output_shapes,
                params=own,
                trainable_params=trainable,
                non_trainable_params=own - trainable,
                params_inclusive=own,
                buffers=buffers,
                macs=record.own_flops // 2,
                flops=record.own_flops,
                macs_inclusive=record.own_flops // 2,
                flops_inclusive=record.own_flops,
                output_bytes=record.output_bytes,
                shared_params=shared,
                explain=explain(module, inp, out) or [],
            )
        )
        if shared:
            rows[-1].explain.append(
                f"{'; '.join(shared)} (tied): the same tensor, its parameters counted at the first owner"
            )
    by_path = {row.path: row for row in rows}
    children: dict[str, list[LayerRow]] = {}
    for row in reversed(rows):  # children come after parents: fold subtotals upwards
        if row.parent is not None and row.parent in by_path:
            parent = by_path[row.parent]
            parent.params_inclusive += row.params_inclusive
            parent.flops_inclusive += row.flops_inclusive
            parent.macs_inclusive += row.macs_inclusive
            children.setdefault(row.parent, []).insert(0, row)
    for (path, module), row in zip(model.named_modules(), rows, strict=True):
        if not row.is_leaf and explain(module, row.input_shape, row.output_shape) is None:
            parts = [(child.name, child.params_inclusive) for child in children.get(path, [])]
            row.explain = explain_block(module, parts, row.input_shape, row.output_shape) + row.explain
    _mark_output_layer(rows)
    return rows


def _mark_output_layer(rows: list[LayerRow]) -> None:
    """The last dense layer gives logits: say that no activation follows (a common slip in notes)."""
    root = rows[0]
    for row in reversed(rows):
        if row.is_leaf and row.calls and row.output_shape == root.output_shape:
            if row.type == "Linear":
                row.explain.append("output layer: its logits go to softmax / cross-entropy, so no ReLU follows")
            return


def _module_dtype(module: nn.Module) -> torch.dtype | None:
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def summarize(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    dtype: str | torch.dtype | None = None,
    *,
    input_kind: str | None = None,
    max_modules: int | None = None,
) -> SummaryReport:
    """Inspect a zoo architecture by name, or any ``nn.Module``, at a given input.

    ``input_size`` is one sample's shape: ``(3, 224, 224)`` for images, ``(T,)`` for
    token models, ``(S, T)`` for the encoder-decoder; zoo models default to their
    usual input. Nothing is allocated: a 7B-parameter model summarises in seconds.
    """
    batch_size = check_batch(batch_size)
    torch_dtype = parse_dtype(dtype or "float32")
    with selected(model_or_name, config, input_size, input_kind, dtype=torch_dtype) as selection:
        model = selection.module
        check_module_count(model, max_modules)
        if not selection.owned:
            current = _module_dtype(model)
            if dtype is not None and current is not None and current != torch_dtype:
                raise InputError(f"the module's parameters are {current}; convert it or leave dtype out", "dtype")
            torch_dtype = current or torch_dtype
        tracer = Tracer(model, fast_paths=FAST_PATHS)
        with preserved_modes(model):
            model.eval()
            output = _traced_output(selection, tracer, batch_size, torch_dtype)
        return build_report(selection, tracer, batch_size, torch_dtype, output)


def _traced_output(selection: Selection, tracer: Tracer, batch_size: int, dtype: torch.dtype) -> Any:
    device = _device_of(selection.module)
    if device.type == "meta":
        inputs = make_inputs(selection, batch_size, dtype, "meta")
        return run_forward(selection.module, tracer, inputs)
    with fake_mode():
        inputs = make_inputs(selection, batch_size, dtype, device)
        return run_forward(selection.module, tracer, inputs)


def build_report(
    selection: Selection, tracer: Tracer, batch_size: int, dtype: torch.dtype, output: Any
) -> SummaryReport:
    rows = _rows(tracer)
    model = selection.module
    params = list(model.parameters())  # distinct tensors: tied weights appear once
    buffers = list(model.buffers())
    outputs = _tensors(output)
    shapes = [list(s) for s in input_shapes(selection, batch_size)]
    tokens = selection.kind.value in ("tokens", "seq2seq")
    input_bytes = sum(math.prod(s) * (8 if tokens else dtype.itemsize) for s in shapes)
    flops = sum(row.flops for row in rows)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total_params = sum(p.numel() for p in params)
    totals = Totals(
        params=total_params,
        trainable_params=trainable,
        non_trainable_params=total_params - trainable,
        buffers=sum(b.numel() for b in buffers),
        macs=flops // 2,
        flops=flops,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        input_bytes=input_bytes,
        output_bytes=sum(t.numel() * t.element_size() for t in outputs),
        activation_bytes=sum(row.output_bytes for row in rows if row.is_leaf),
        output_shape=list(outputs[0].shape) if outputs else None,
    )
    return SummaryReport(
        architecture=selection.architecture,
        config=selection.config,
        model_class=type(model).__name__,
        input_kind=selection.kind.value,
        input_size=list(selection.input_size),
        input_shapes=shapes,
        batch_size=batch_size,
        dtype=dtype_name(dtype),
        totals=totals,
        layers=rows,
        notes=list(NOTES),
    )
