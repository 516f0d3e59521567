"""Bytes the CPU convolution kernels allocate inside an op, which no dispatch-level tracker can see.

On the CPU PyTorch runs convolutions with oneDNN, which works on channel-blocked
layouts (channels padded to a multiple of 16 with AVX-512, 8 with AVX2): it
reorders the input, the weights and the gradients into them and computes the
output in a blocked buffer before converting it back. Those buffers go through
PyTorch's CPU allocator (the profiler sees them) but are created and freed inside
a single aten op, so ``MemTracker`` never does. This module gives, for one
``aten.convolution`` or ``aten.convolution_backward`` call, how many bytes
beyond the op's own outputs are live at its busiest moment.

The rules were read off the allocation events of torch 2.13's oneDNN kernels
(see ``bench/memory_accuracy.py`` for the check against measured peaks); the
small scratchpads some kernels add on top are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_aten = torch.ops.aten
RULES_TORCH = "2.13"  # the torch release whose oneDNN kernels these rules were read from


def rules_apply() -> bool:
    """True on the torch release the rules were read from (pyproject pins it; other releases may differ)."""
    return torch.__version__.startswith(RULES_TORCH + ".")


def channel_block() -> int:
    """oneDNN's channel block on this CPU: 16 with AVX-512, 8 otherwise."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return 16 if "AVX512" in capability else 8


def _pad(channels: int, block: int) -> int:
    return math.ceil(channels / block) * block


def uses_onednn(
    x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], dilation: Sequence[int], groups: int, transposed: bool
) -> bool:
    """PyTorch's choice of oneDNN for a CPU convolution (ConvUtils' use_mkldnn)."""
    if x.device.type != "cpu" or transposed or x.dim() not in (3, 4, 5):
        return False
    if x.dtype == torch.bfloat16:
        return True
    if x.dtype != torch.float32:
        return False
    kernel = tuple(weight.shape[2:])
    one_by_one = all(k == 1 for k in kernel)
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    batch = x.shape[0]
    if not (strided or dilated or batch >= 16 or not one_by_one or torch.get_num_threads() > 1):
        return False
    big_kernel = all(k > 3 for k in kernel)
    return groups > 1 or big_kernel or batch > 1 or x.numel() > 20480


def _geometry(x: torch.Tensor, weight: torch.Tensor, out_spatial: Sequence[int]) -> tuple[int, int, int, int, int, int]:
    batch, c_in = x.shape[0], x.shape[1]
    c_out = weight.shape[0]
    kernel = math.prod(weight.shape[2:])
    return batch, c_in, c_out, kernel, math.prod(x.shape[2:]), math.prod(out_spatial)


def forward_workspace(x: torch.Tensor, weight: torch.Tensor, output: torch.Tensor, groups: int) -> int:
    """Extra bytes live inside a forward convolution, beyond its output."""
    block = channel_block()
    size = x.element_size()
    batch, c_in, c_out, kernel, hw_in, hw_out = _geometry(x, weight, output.shape[2:])
    reorder_input = c_in >= 16
    x_blocked = batch * _pad(c_in, block) * hw_in * size if reorder_input else 0
    w_blocked = _pad(c_out, block) * (_pad(c_in, block) if reorder_input else c_in) // groups * kernel * size
    y_blocked = batch * _pad(c_out, block) * hw_out * size
    dense = output.numel() * size
    # First the reordered input and weights with the blocked output; then the blocked output with the dense one.
    return max(x_blocked + w_blocked + y_blocked - dense, y_blocked)


def backward_workspace(
    grad_output: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, groups: int, mask: Sequence[bool]
) -> int:
    """Extra bytes live inside a convolution backward, beyond the gradients it returns."""
    block = channel_block()
    size = x.element_size()
    batch, c_in, c_out, kernel, hw_in, hw_out = _geometry(x, weight, grad_output.shape[2:])
    go_blocked = batch * _pad(c_out, block) * hw_out * size
    grad_input = x.numel() * size if mask[0] else 0
    grad_weight = weight.numel() * weight.element_size() if mask[1] else 0
    peak = 0
    if mask[0]:  # data gradient: blocked grad_output, weights and grad_input, then back to dense
        gi_blocked = batch * _pad(c_in, block) * hw_in * size
        w_blocked = _pad(c_out, block) * _pad(c_in, block) // groups * kernel * size
        peak = max(go_blocked + w_blocked + gi_blocked, gi_blocked + grad_input)
    if mask[1]:  # weight gradient: blocked grad_output and input, blocked weight gradient
        if c_in == 1:
            x_pad = 0
        elif c_in <= 8:
            x_pad = _pad(c_in, 8)
        else:
            x_pad = _pad(c_in, block)
        x_blocked = batch * x_pad * hw_in * size
        gw_blocked = _pad(c_out, block) * max(x_pad, c_in) // groups * kernel * size
        peak = max(peak, grad_input + go_blocked + x_blocked + gw_blocked)
    return max(0, peak - grad_input - grad_weight)


def _as_list(value: int | Sequence[int], dims: int) -> list[int]:
    return list(value) if isinstance(value, list | tuple) else [value] * dims


def op_workspace(func: object, args: tuple, kwargs: dict, output: object) -> int:
    """Hidden workspace of one aten op on the CPU; 0 for ops that allocate nothing hidden."""
    try:
        if func is _aten.convolution.default:
            x, weight, _bias, stride, _padding, dilation, transposed, _out_pad, groups = args[:9]
            if uses_onednn(x, weight, stride, dilation, groups, transposed):
                return forward_workspace(x, weight, output, groups)
        elif func in (_aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default):
            # Under inference_mode the dispatcher shows convN d itself, not the convolution it becomes.
            x, weight = args[0], args[1]
            dims = weight.dim() - 2
            stride = _as_list(args[3] if len(args) > 3 else kwargs.get("stride", 1), dims)
            dilation = _as_list(args[5] if len(args) > 5 else kwargs.get("dilation", 1), dims)
            groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
            if x.dim() == dims + 2 and uses_onednn(x, weight, stride, dilation, groups, False):
                return forward_workspace(x, weight, output, groups)
        elif func is _aten.convolution_backward.default:
            grad_output, x, weight = args[:3]
            stride, dilation, transposed, groups, mask = args[4], args[6], args[7], args[9], args[10]
            if uses_onednn(x, weight, stride, dilation, groups, transposed):
                return backward_workspace(grad_output, x, weight, groups, mask)
    except (IndexError, TypeError, ValueError, AttributeError):
        return 0
    return 0
