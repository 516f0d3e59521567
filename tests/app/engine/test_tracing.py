"""The one tracer: tensors found in any structure, hooks always removed, failures named at the innermost module."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn

from app.engine import ModelRunError, NeedsRealRunError, ShapeMismatchError
from app.engine.tracing.tracer import Tracer, failures_translated, tensor_leaves, translate_failure

Pair = namedtuple("Pair", "first second")


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: dict


def test_leaves_of_every_structure_in_order() -> None:
    a, b, c, d = (torch.zeros(i + 1) for i in range(4))
    value = (a, [None, 3, "x", Pair(b, {"k": c})], Out(d, {"none": None}), OrderedDict(e=a))
    assert [t.shape[0] for t in tensor_leaves(value)] == [1, 2, 3, 4, 1]


def test_leaves_never_take_a_truth_value() -> None:
    many = torch.zeros(3, 3)
    assert tensor_leaves(((many,), {"mask": many})) == [many, many]  # (args, kwargs) from a pre-hook


def test_leaves_keep_nothing_alive() -> None:
    """A self-recursive closure would be a reference cycle holding every tensor until the collector runs."""
    gc.disable()
    try:
        tensor = torch.zeros(4)
        ref = weakref.ref(tensor)
        tensor_leaves([{"x": (tensor,)}])
        del tensor
        assert ref() is None
    finally:
        gc.enable()


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))

    def forward(self, x):
        return self.block(x)


def test_a_shape_failure_names_the_innermost_module_and_its_input() -> None:
    model = Outer()
    tracer = Tracer(model, count_flops=False)
    with pytest.raises(ShapeMismatchError) as info, failures_translated(tracer, model), tracer.attached():
        model(torch.zeros(2, 4, device="meta"))
    assert info.value.layer == "block.1" and info.value.input_shapes == [[2, 4]]
    assert info.value.expected == "(*, 5)"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Picky(nn.Module):
    def forward(self, x):
        return torch.linalg.cholesky(x)


class Reads(nn.Module):
    def forward(self, x):
        return x[x > 0]  # a data-dependent shape


def test_other_failures_are_not_called_shape_mismatches() -> None:
    model = nn.Sequential(nn.Identity(), Picky())
    tracer = Tracer(model, count_flops=True)
    exc = None
    try:
        with tracer.attached():
            model(torch.zeros(3, 3, dtype=torch.int64))
    except Exception as raised:  # cholesky refuses integers
        exc = translate_failure(raised, tracer, model)
    assert isinstance(exc, ModelRunError) and exc.layer == "1" and exc.layer_type == "Picky"


def test_data_dependence_names_the_module_and_the_op() -> None:
    from app.engine.tracing.torch_internals import fake_mode

    model = nn.Sequential(nn.ReLU(), Reads())
    tracer = Tracer(model)
    with pytest.raises(NeedsRealRunError) as info, fake_mode():
        x = torch.empty(4, 4)
        with failures_translated(tracer, model), tracer.attached():
            model(x)
    assert info.value.layer == "1" and info.value.layer_type == "Reads"
    assert "nonzero" in (info.value.op or "") and "allow_real_run" in str(info.value)
