"""``summarize``: per-layer shapes, parameters and FLOPs, without allocating the model or its activations.

Zoo models are built on the ``meta`` device and fed meta inputs. A module the
caller built on a real device runs through ``torch.func.functional_call`` with
meta stand-ins for its parameters and buffers (nothing is copied and the module
is not changed); where meta cannot run it, it runs under ``FakeTensorMode``.
The hooks of ``tracing.Tracer`` record each module's input and output shapes,
and a FLOP clock read at every hook attributes each op's FLOPs to the module
running it. A model whose forward reads its data can be summarized on a real
forward at a small size when the caller passes real ``input_data`` and allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import models

from ..choices import dtype_name
from ..errors import InputError, NeedsRealRunError
from ..explain import explain, explain_block, explain_structure, inactive_expert_params
from ..tracing.selection import (
    ModelInputs,
    Selection,
    check_batch,
    check_module_count,
    make_inputs,
    parse_dtype,
    selected,
)
from ..tracing.torch_internals import fake_mode
from ..tracing.tracer import Tracer, failures_translated, nbytes_of, preserved_modes, tensor_leaves
from .graph import GraphRecorder, GraphReport
from .report import LayerRow, SummaryReport, Totals

FAST_PATHS = True  # shape rules for common layers (see fastpath.py); tests compare both ways

NOTES = [
    "FLOPs count multiply-accumulates of matrix products, convolutions and attention, 2 per MAC, as "
    "torch.utils.flop_counter does; element-wise work (activations, norms, additions) is not counted.",
    "params per row are the parameters a layer holds itself; a tied or shared weight counts once, at its "
    "first owner. The *_inclusive columns add up each subtree.",
]
RUN_NOTES = {
    "meta": "Traced on the meta device: nothing was allocated.",
    "fake": "Traced under FakeTensorMode (the module's own weights were read, never copied): nothing was allocated.",
    "real": "Measured on a real forward pass with your input_data (allow_real_run=True): the model reads its "
    "data, so shapes, FLOPs and output bytes come from running it for real at this input size.",
}
Progress = Callable[[str, int, int], None]


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
                explain=explain(module, record.input_shapes, out) or [],
            )
        )
        if shared:
            # The formula's count belongs to the owner: here it would read as this row's own parameters.
            rows[-1].explain = [line for line in rows[-1].explain if not line.startswith("params =")]
            rows[-1].explain.append(
                f"{'; '.join(shared)} (tied): the same tensor as that layer's, so its parameters are counted "
                "there, not here (0 in this row)"
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
        if not row.is_leaf and explain(module, row.input_shapes, row.output_shape) is None:
            parts = [(child.name, child.params_inclusive) for child in children.get(path, [])]
            structure = explain_structure(module, row.input_shape, row.output_shape)
            row.explain = structure + explain_block(module, parts, row.input_shape, row.output_shape) + row.explain
    _mark_output_layer(rows)
    return rows


MOE_NOTE = (
    "Mixture of experts: FLOPs send every token through the configured top-k experts, as if tokens were spread "
    "evenly; the router picks which experts at run time, so each expert's share varies but the total does not "
    "(unless an implementation drops tokens over a capacity). active_params counts the parameters one token uses."
)


def _mark_output_layer(rows: list[LayerRow]) -> None:
    """The last dense layer gives logits (or one value): say that no activation follows (a common slip in notes)."""
    root = rows[0]
    for row in reversed(rows):
        if row.is_leaf and row.calls and row.output_shape == root.output_shape:
            if row.type == "Linear" and row.output_shape:
                if row.output_shape[-1] == 1:
                    row.explain.append(
                        "output layer: one value per sample, a regression: no activation follows, and a training "
                        "step uses the mean squared error (a softmax over one value is always 1)"
                    )
                else:
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


def meta_stand_ins(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer name -> an empty meta tensor of its shape; tied names share one."""
    made: dict[int, torch.Tensor] = {}
    stand_ins: dict[str, torch.Tensor] = {}
    for name, tensor in [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]:
        if id(tensor) not in made:
            made[id(tensor)] = torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
        stand_ins[name] = made[id(tensor)]
    return stand_ins


def summarize(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    dtype: str | torch.dtype | None = None,
    *,
    input_data: Any = None,
    input_kind: str | None = None,
    max_modules: int | None = None,
    allow_real_run: bool = False,
    progress: Progress | None = None,
) -> SummaryReport:
    """Inspect a zoo architecture by name, or any ``nn.Module``, at a given input.

    ``input_size`` is one sample's shape: ``(3, 224, 224)`` for images, ``(T,)`` for
    token models, ``(S, T)`` for the encoder-decoder; zoo models default to their
    usual input. ``input_data`` instead gives the forward's own arguments: a tensor,
    a tuple/list of positional arguments, or a dict of keyword arguments (real or
    meta tensors, never copied at full size). Nothing is allocated, unless the model
    reads its data and ``allow_real_run`` lets it run for real on real ``input_data``.
    """
    report, _ = _summarize(
        model_or_name,
        config,
        input_size,
        batch_size,
        dtype,
        input_data=input_data,
        input_kind=input_kind,
        max_modules=max_modules,
        allow_real_run=allow_real_run,
        progress=progress,
    )
    return report


def trace_graph(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    batch_size: int = 1,
    dtype: str | torch.dtype | None = None,
    **options: Any,
) -> GraphReport:
    """The model's graph (module calls, the ops that join or split data, the tensors between them), recorded
    during the same allocation-free trace as ``summarize``; takes ``summarize``'s arguments (``input_data``,
    ``input_kind``, ``max_modules``, ``allow_real_run``, ``progress``)."""
    _, tracer = _summarize(model_or_name, config, input_size, batch_size, dtype, graph=True, **options)
    return tracer.recorder.report(model_or_name if isinstance(model_or_name, str) else None, batch_size)


def _summarize(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None,
    input_size: Any,
    batch_size: int,
    dtype: str | torch.dtype | None,
    *,
    input_data: Any = None,
    input_kind: str | None = None,
    max_modules: int | None = None,
    allow_real_run: bool = False,
    progress: Progress | None = None,
    graph: bool = False,
) -> tuple[SummaryReport, Tracer]:
    batch_size = check_batch(batch_size)
    torch_dtype = parse_dtype(dtype or "float32")
    with selected(model_or_name, config, input_size, input_kind, torch_dtype, input_data) as selection:
        model = selection.module
        check_module_count(model, max_modules)
        if not selection.owned:
            current = _module_dtype(model)
            if dtype is not None and current is not None and current != torch_dtype:
                raise InputError(f"the module's parameters are {current}; convert it or leave dtype out", "dtype")
            torch_dtype = current or torch_dtype
        if selection.input_data is not None:
            given = selection.input_data.batch_size()
            if batch_size != 1 and given != batch_size:
                raise InputError(f"batch_size {batch_size} disagrees with input_data's batch of {given}", "batch_size")
            batch_size = given or 1
        with preserved_modes(model):
            model.eval()
            tracer, inputs, output, run = _trace(selection, batch_size, torch_dtype, allow_real_run, progress, graph)
        return build_report(selection, tracer, inputs, batch_size, torch_dtype, output, run), tracer


def _progress_hook(tracer: Tracer, progress: Progress | None) -> None:
    if progress is None:
        return
    total = len(tracer.records)
    seen = 0

    def on_call(_record: Any) -> None:
        nonlocal seen
        seen += 1
        if seen % 25 == 0:
            progress("tracing modules", min(seen, total), total)

    tracer.on_call = on_call


def _trace(
    selection: Selection,
    batch_size: int,
    dtype: torch.dtype,
    allow_real_run: bool,
    progress: Progress | None,
    graph: bool = False,
) -> tuple[Tracer, ModelInputs, Any, str]:
    """Trace on meta, else under FakeTensorMode, else (when allowed) on a real forward."""
    model = selection.module
    device = _device_of(model)
    try:
        if device.type == "meta":
            return _run("meta", selection, batch_size, dtype, progress, graph)
        try:
            return _run("stand-ins", selection, batch_size, dtype, progress, graph)
        except Exception:  # meta cannot run it (a real tensor held outside its parameters, an op without a meta kernel)
            return _run("fake", selection, batch_size, dtype, progress, graph)
    except NeedsRealRunError:
        given = selection.input_data
        if not allow_real_run or given is None or any(t.device.type == "meta" for t in given.tensors()):
            raise
        return _run("real", selection, batch_size, dtype, progress, graph)


def _run(
    how: str, selection: Selection, batch_size: int, dtype: torch.dtype, progress: Progress | None, graph: bool = False
) -> tuple[Tracer, ModelInputs, Any, str]:
    model = selection.module
    tracer = Tracer(model, fast_paths=FAST_PATHS, real=how == "real")
    if graph:
        tracer.recorder = GraphRecorder(model, flops=tracer.counter)
    _progress_hook(tracer, progress)
    if how == "meta":
        inputs = make_inputs(selection, batch_size, dtype, "meta")
        with failures_translated(tracer, model), tracer.attached(), torch.no_grad():
            return tracer, inputs, inputs.run(model), "meta"
    if how == "stand-ins":
        inputs = make_inputs(selection, batch_size, dtype, "meta")
        stand_ins = meta_stand_ins(model)
        with failures_translated(tracer, model), tracer.attached(), torch.no_grad():
            output = torch.func.functional_call(model, stand_ins, inputs.args, inputs.kwargs, strict=False)
        return tracer, inputs, output, "meta"
    if how == "fake":
        with fake_mode():
            inputs = make_inputs(selection, batch_size, dtype, _device_of(model))
            with failures_translated(tracer, model), tracer.attached(), torch.no_grad():
                return tracer, inputs, inputs.run(model), "fake"
    inputs = make_inputs(selection, batch_size, dtype, _device_of(model), real=True)
    with torch.random.fork_rng(devices=[]), failures_translated(tracer, model), tracer.attached(), torch.no_grad():
        return tracer, inputs, inputs.run(model), "real"


def build_report(
    selection: Selection,
    tracer: Tracer,
    inputs: ModelInputs,
    batch_size: int,
    dtype: torch.dtype,
    output: Any,
    run: str = "meta",
) -> SummaryReport:
    rows = _rows(tracer)
    family = models.get_architecture(selection.architecture) if selection.architecture else None
    notes = family.notes_for(selection.config) if family else {}
    for row in rows:  # the family's notes on its layers: the course notes' slips, departures from the paper
        if row.path in notes:
            row.explain.append(f"Note: {notes[row.path]}")
    model = selection.module
    params = list(model.parameters())  # distinct tensors: tied weights appear once
    buffers = list(model.buffers())
    outputs = tensor_leaves(output)
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
        input_bytes=nbytes_of(inputs.tensors()),
        output_bytes=nbytes_of(outputs),
        activation_bytes=sum(row.output_bytes for row in rows if row.is_leaf),
        output_shape=list(outputs[0].shape) if outputs else None,
        active_params=total_params - inactive_expert_params(model),
    )
    moe = [MOE_NOTE] if totals.active_params != total_params else []
    return SummaryReport(
        architecture=selection.architecture,
        config=selection.config,
        model_class=type(model).__name__,
        input_kind=selection.kind.value,
        input_size=list(selection.input_size),
        input_shapes=inputs.shapes(),
        batch_size=batch_size,
        dtype=dtype_name(dtype),
        run=run,  # type: ignore[arg-type]
        totals=totals,
        layers=rows,
        notes=[*NOTES, RUN_NOTES[run], *moe],
    )
