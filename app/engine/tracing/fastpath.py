"""Shape rules for the common leaf layers, so a summary need not run their meta kernels.

Running a layer on meta tensors still costs Python work per op (BatchNorm's meta
kernel alone is a Python decomposition of a dozen ops). For the layers below the
output shape and FLOPs follow from PyTorch's documented formulas, so the tracer
swaps their ``forward`` for one that returns an empty meta tensor of the right
shape. Anything unusual (an unbatched input, a channel mismatch, string padding,
a non-zero padding mode...) returns ``None`` and the real forward runs instead,
raising PyTorch's own error when the input does not fit. A test checks every
zoo model gives the same rows both ways.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .geometry import as_tuple, conv_window, pool_window

Rule = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, int] | None]
_RULES: dict[type, Rule] = {}


def _rule(*types: type) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in types:
            _RULES[t] = fn
        return fn

    return register


def _empty(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device)


def _floating_match(module: nn.Module, x: torch.Tensor) -> bool:
    weight = getattr(module, "weight", None)
    return weight is None or (x.is_floating_point() and x.dtype == weight.dtype)


@_rule(nn.Linear)
def _linear(m: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if x.dim() < 1 or x.shape[-1] != m.in_features or not _floating_match(m, x):
        return None
    rows = math.prod(x.shape[:-1])
    return _empty((*x.shape[:-1], m.out_features), x), 2 * rows * m.in_features * m.out_features


@_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    window = conv_window(m)
    if (
        window is None
        or x.dim() != window.dims + 2
        or x.shape[1] != m.in_channels
        or m.padding_mode != "zeros"
        or not _floating_match(m, x)
    ):
        return None
    out = window.output(x.shape[2:])
    if any(length < 1 for length in out):
        return None
    batch = x.shape[0]
    flops = 2 * batch * m.out_channels * math.prod(out) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    return _empty((batch, m.out_channels, *out), x), flops


@_rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool(m: nn.MaxPool2d, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    window = pool_window(m)
    if x.dim() != window.dims + 2 or getattr(m, "return_indices", False):
        return None
    if any(p > k // 2 for p, k in zip(window.padding, window.kernel, strict=True)):
        return None  # "pad should be at most half of effective kernel size": let torch say it
    out = window.output(x.shape[2:])
    if any(length < 1 for length in out):
        return None
    return _empty((*x.shape[:2], *out), x), 0


def _pool_dims(m: nn.Module) -> int:
    return {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:]]


@_rule(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def _adaptive(m: nn.AdaptiveAvgPool2d, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    dims = _pool_dims(m)
    if x.dim() != dims + 2 or any(s == 0 for s in x.shape[2:]):
        return None
    wanted = as_tuple(m.output_size, dims)
    out = tuple(size if w is None else w for size, w in zip(x.shape[2:], wanted, strict=True))
    return _empty((*x.shape[:2], *out), x), 0


@_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm(m: nn.BatchNorm2d, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    allowed = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}[type(m)]
    if x.dim() not in allowed or x.shape[1] != m.num_features or not _floating_match(m, x):
        return None
    if m.training and math.prod(x.shape) // x.shape[1] < 2:
        return None  # "Expected more than 1 value per channel when training": let torch say it
    return _empty(tuple(x.shape), x), 0


@_rule(nn.LayerNorm)
def _layer_norm(m: nn.LayerNorm, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    shape = tuple(m.normalized_shape)
    if tuple(x.shape[-len(shape) :]) != shape or not _floating_match(m, x):
        return None
    return _empty(tuple(x.shape), x), 0


@_rule(nn.ReLU, nn.ReLU6, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Hardswish, nn.Mish)
def _elementwise(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if not x.is_floating_point():
        return None
    if getattr(m, "inplace", False):
        return x, 0  # in place: the output is the input tensor itself
    return _empty(tuple(x.shape), x), 0


@_rule(nn.Dropout, nn.Identity)
def _identity_shape(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if isinstance(m, nn.Dropout) and (getattr(m, "inplace", False) or not x.is_floating_point()):
        return None
    if isinstance(m, nn.Identity):
        return x, 0
    return _empty(tuple(x.shape), x), 0


@_rule(nn.LocalResponseNorm)
def _lrn(m: nn.LocalResponseNorm, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if x.dim() < 3 or x.shape[0] == 0 or not x.is_floating_point():
        return None
    return _empty(tuple(x.shape), x), 0


@_rule(nn.Flatten)
def _flatten(m: nn.Flatten, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if x.dim() == 0:
        return None
    start = m.start_dim % x.dim()
    end = m.end_dim % x.dim()
    if start > end:
        return None
    shape = (*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])
    return _empty(shape, x), 0


@_rule(nn.Embedding)
def _embedding(m: nn.Embedding, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    if x.dtype not in (torch.long, torch.int32):
        return None
    return _empty((*x.shape, m.embedding_dim), x, dtype=m.weight.dtype), 0


def rule_for(module: nn.Module) -> Rule | None:
    """The shape rule for exactly this module class (subclasses may override forward: no rule)."""
    return _RULES.get(type(module))


def fast_forward(module: nn.Module, rule: Rule, record_flops: Callable[[int], None]) -> Callable:
    """A stand-in ``forward`` for ``module`` that applies ``rule``, or runs the real forward when it declines."""
    real_forward = type(module).forward

    def forward(*args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta":
            result = rule(module, args[0])
            if result is not None:
                output, flops = result
                record_flops(flops)
                return output
        return real_forward(module, *args, **kwargs)

    return forward
