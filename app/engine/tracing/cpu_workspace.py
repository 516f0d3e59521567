"""Bytes the CPU kernels allocate inside an op, which no dispatch-level tracker can see.

On the CPU PyTorch runs most convolutions with oneDNN, which works on
channel-blocked layouts (channels padded to a multiple of 16 with AVX-512, 8 with
AVX2): it reorders the input, the weights and the gradients into them and computes
the output in a blocked buffer before converting it back; its 1x1 kernels also book
a scratchpad (bf16 accumulates in a float32 store buffer; a strided 1x1 first copies
its input to unit stride). The convolutions oneDNN does not take (float16 here, and
small float32 ones) run PyTorch's own slow path, which unfolds the input into
columns. Max pooling computes int64 indices even when only the values are kept.
Those buffers go through PyTorch's CPU allocator (the profiler sees them) but are
created and freed inside a single aten op, so ``MemTracker`` never does. This module
gives, for one op, how many bytes beyond its outputs are live at its busiest moment.

The rules were read off the allocation events of torch 2.13's kernels and oneDNN's
own sizing code; ``bench/cpu_kernels.py`` checks each one, op by op, against what
PyTorch allocates, and ``bench/memory_accuracy.py`` checks whole steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from .cpu_rnn import rnn_workspace

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


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@cache
def _l2_per_core_bytes() -> int:
    """The L2 cache per core, as oneDNN sizes its blocking with it (1 MiB when the system does not say)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1024, "M": 1024**2}.get(text[-1], 1)
                return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return 1024**2


def _best_divider(value: int, min_divider: int, max_divider: int, find_max: bool) -> int:
    """oneDNN's best_divider: the divider of ``value`` within bounds that wastes the least when rounding up."""
    max_divider = max(1, min(max_divider, value))
    min_divider = max(1, min(min_divider, max_divider))
    best, best_loss = max_divider, math.inf
    for divider in range(max_divider, min_divider - 1, -1):
        rounded = math.ceil(value / divider) * divider
        loss = (rounded - value) / rounded
        if (find_max and loss < best_loss) or (not find_max and loss <= best_loss):
            best, best_loss = divider, loss
    return best


def _bf16_1x1_register_block(mb: int, oc: int, rows: int, positions: int, nthr: int) -> int:
    """oneDNN's unroll over output positions (``ur``) for its bf16 1x1 forward kernel."""
    has_bf16 = "avx512_bf16" in _cpu_flags()
    if (8 * mb) // nthr >= 1:  # explicit broadcast (channels are padded to 16, so no odd tail)
        max_regs, min_regs = 9, 6
        if 128 < oc < 256 and 10 < rows < 28:
            max_regs, min_regs = 6, (5 if has_bf16 else 4)
    else:
        max_regs, min_regs = 30, 9
    if not has_bf16:
        max_regs = max(min_regs, max_regs // 3)
    for ur in range(max_regs, min_regs - 1, -1):
        if (rows >= 14 and rows % ur == 0) or (rows < 14 and positions % ur == 0):
            return ur
    ur, tail = min(max_regs, positions), positions % max_regs
    for i in range(max_regs, min_regs - 1, -1):
        i_tail = positions % i
        if i_tail > tail or i_tail == 0:
            ur, tail = i, i_tail
            if i_tail == 0:
                break
    return ur


def _bf16_1x1_load_groups(mb: int, ic: int, oc: int, ur: int, positions: int, nthr: int) -> int:
    """How oneDNN's bf16 1x1 forward splits output channels among threads (``load_grp_count``)."""
    nb_bcast, nb_load = math.ceil(positions / ur), math.ceil(oc / 16)
    load_size, bcast_size = oc * ic, mb * positions * ic
    if nthr <= 28 and mb < nthr and nb_load * nb_bcast > nthr:
        ratio = load_size / bcast_size
        best, best_cost = (nthr if ratio > 1 else 1), math.inf

        def cost(lb: int, tg: int, mem_k: float) -> float:
            bb = mb * math.ceil(nb_bcast / tg)
            return 0.01 * (bb * ur) * (lb * 16) * ic + mem_k * (bb * ur + lb * 16) * ic

        for step in range(nthr):
            lgc = nthr - step if ratio > 1 else step + 1
            min_lb, max_lb = nb_load // lgc, math.ceil(nb_load / lgc)
            min_tg, max_tg = nthr // lgc, math.ceil(nthr / lgc)
            mem_k = 1.0 if max_tg == 1 else 1.3
            if nthr % lgc < nb_load % lgc:
                job = cost(max_lb, min_tg, mem_k)
            else:
                job = max(cost(max_lb, max_tg, mem_k), cost(min_lb, min_tg, mem_k))
            if job < best_cost:
                best, best_cost = lgc, job
        groups = best
    else:
        groups = math.ceil(nthr / (mb * nb_bcast))
        groups = _best_divider(nthr, groups, 2 * groups, False)
    if (8 * mb) // nthr >= 1 and positions <= 64 and load_size >= _l2_per_core_bytes() // 2:
        groups = max(groups, 4)
    elif positions <= 49 and mb <= nthr and oc > 512 and oc // ic >= 4:
        groups = max(groups, 2)
    return groups


def onednn_1x1_scratchpad(x: torch.Tensor, weight: torch.Tensor, output: torch.Tensor, stride: Sequence[int]) -> int:
    """oneDNN's scratchpad for a 1x1 forward convolution: bf16's float32 store buffer, a strided one's copy.

    Sizes as oneDNN books them (128 bytes of alignment per buffer): the store buffer
    holds ``nthr x positions (rounded to the unroll) x output channels per thread
    group`` float32 values; a strided 1x1 first copies, per thread, its input to
    unit stride (``positions x input channels``).
    """
    nthr = torch.get_num_threads()
    mb = x.shape[0]
    ic, oc = _pad(x.shape[1], 16), _pad(weight.shape[0], 16)
    positions = math.prod(output.shape[2:])
    rows = math.prod(output.shape[2:-1]) if output.dim() > 3 else 1
    size = 0
    if x.dtype == torch.bfloat16:
        ur = _bf16_1x1_register_block(mb, oc, rows, positions, nthr)
        groups = _bf16_1x1_load_groups(mb, ic, oc, ur, positions, nthr)
        nb_bcast, nb_load = math.ceil(positions / ur), math.ceil(oc / 16)
        if x.element_size() * mb * positions * ic < 8192 and nb_bcast * nb_load < nthr:
            nthr = min(nthr, max(nb_bcast, nb_load))  # oneDNN uses fewer threads for tiny problems
        groups = math.ceil(nthr / math.ceil(nthr / groups))
        per_thread = _pad(math.ceil(oc / groups), 16)
        size += nthr * _pad(positions, ur) * per_thread * 4 + 128
    if any(s != 1 for s in stride):
        size += nthr * positions * ic * x.element_size() + 128
    return size


def slow_conv_workspace(
    x: torch.Tensor,
    weight: torch.Tensor,
    output: torch.Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    groups: int,
) -> int:
    """PyTorch's own convolution (no oneDNN): the input unfolded into columns for the whole batch.

    A grouped one runs group by group and concatenates the groups' outputs: those
    outputs are what is hidden at its peak.
    """
    if groups > 1:
        return output.numel() * output.element_size()
    kernel = tuple(weight.shape[2:])
    if all(k == 1 for k in kernel) and all(s == 1 for s in stride) and all(p == 0 for p in padding):
        return 0  # a 1x1 needs no unfolding: the input is already the columns
    columns = x.shape[0] * x.shape[1] * math.prod(kernel) * math.prod(output.shape[2:])
    return columns * x.element_size()


def max_pool_indices(output: torch.Tensor) -> int:
    """CPU max_pool2d returns only values, but computes them with max_pool2d_with_indices: int64 indices."""
    return output.numel() * 8


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


def forward_workspace(
    x: torch.Tensor, weight: torch.Tensor, output: torch.Tensor, groups: int, stride: Sequence[int] = (1,)
) -> int:
    """Extra bytes live inside a forward oneDNN convolution, beyond its output."""
    scratch = 0
    if groups == 1 and all(k == 1 for k in weight.shape[2:]):
        scratch = onednn_1x1_scratchpad(x, weight, output, stride)
    return _blocked_forward(x, weight, output, groups, scratch)


def _blocked_forward(x: torch.Tensor, weight: torch.Tensor, output: torch.Tensor, groups: int, scratch: int) -> int:
    block = channel_block()
    size = x.element_size()
    batch, c_in, c_out, kernel, hw_in, hw_out = _geometry(x, weight, output.shape[2:])
    reorder_input = c_in >= 16
    x_blocked = batch * _pad(c_in, block) * hw_in * size if reorder_input else 0
    w_blocked = _pad(c_out, block) * (_pad(c_in, block) if reorder_input else c_in) // groups * kernel * size
    y_blocked = batch * _pad(c_out, block) * hw_out * size
    dense = output.numel() * size
    # First the scratchpad, the reordered input and weights with the blocked output (the kernel runs); then,
    # with those freed, the blocked output with the dense one.
    return max(scratch + x_blocked + w_blocked + y_blocked - dense, y_blocked)


def backward_workspace(
    grad_output: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, groups: int, mask: Sequence[bool]
) -> int:
    """Extra bytes live inside a oneDNN convolution backward, beyond the gradients it returns.

    Three phases, in order: the data gradient (blocked grad_output, weights and
    grad_input, then grad_input converted back); the weight gradient (blocked
    grad_output and input, the blocked weight gradient and, in bf16, a float32
    reduction scratchpad); then the blocked weight and bias gradients converted while
    the dense ones already exist. Depthwise kernels read the input and grad_output as
    they are. The bf16 scratchpad (one float32 copy of the weights for the reduction,
    and transposition buffers) is approximated by that copy plus one image of input
    and grad_output per thread: its exact size follows oneDNN's thread split.
    """
    block = channel_block()
    size = x.element_size()
    batch, c_in, c_out, kernel, hw_in, hw_out = _geometry(x, weight, grad_output.shape[2:])
    grad_input = x.numel() * size if mask[0] else 0
    grad_weight = weight.numel() * weight.element_size() if mask[1] else 0
    grad_bias = c_out * size if len(mask) > 2 and mask[2] else 0
    go_blocked = batch * _pad(c_out, block) * hw_out * size
    depthwise = groups > 1 and weight.shape[1] == 1
    phases = [0]
    if mask[0]:  # data gradient, then back to dense
        gi_blocked = batch * _pad(c_in, block) * hw_in * size
        w_blocked = _pad(c_out, block) * _pad(c_in, block) // groups * kernel * size
        phases += [go_blocked + w_blocked + gi_blocked, gi_blocked + grad_input]
    if mask[1]:
        if c_in == 1 or depthwise:
            x_pad = 0
        elif c_in <= 8:
            x_pad = _pad(c_in, 8)
        else:
            x_pad = _pad(c_in, block)
        x_blocked = batch * x_pad * hw_in * size
        gw_blocked = _pad(c_out, block) * max(x_pad, c_in) // groups * kernel * size
        bias_blocked = c_out * size if grad_bias else 0
        scratch = 0
        if x.dtype == torch.bfloat16 and not depthwise:
            per_image = (x_pad * hw_in + _pad(c_out, block) * hw_out) * size
            scratch = weight.numel() * 4 + torch.get_num_threads() * per_image
        reorders = 0 if depthwise else go_blocked + x_blocked
        phases.append(grad_input + reorders + gw_blocked + scratch + bias_blocked)
        phases.append(grad_input + gw_blocked + bias_blocked + grad_bias + grad_weight)  # blocked beside dense
    return max(0, max(phases) - grad_input - grad_weight - grad_bias)


def _as_list(value: int | Sequence[int], dims: int) -> list[int]:
    return list(value) if isinstance(value, list | tuple) else [value] * dims


def _forward(x, weight, output, stride, padding, dilation, groups, transposed) -> int:  # type: ignore[no-untyped-def]
    if x.device.type != "cpu" or transposed or not isinstance(padding, list | tuple):
        return 0
    if uses_onednn(x, weight, stride, dilation, groups, transposed):
        return forward_workspace(x, weight, output, groups, stride)
    if x.dim() in (3, 4) and all(d == 1 for d in dilation):
        return slow_conv_workspace(x, weight, output, stride, padding, groups)
    return 0


def op_workspace(func: object, args: tuple, kwargs: dict, output: object) -> int:
    """Hidden workspace of one aten op on the CPU; 0 for ops that allocate nothing hidden."""
    try:
        recurrent = rnn_workspace(func, args, output)
        if recurrent is not None:
            return recurrent
        if func is _aten.convolution.default:
            x, weight, _bias, stride, padding, dilation, transposed, _out_pad, groups = args[:9]
            return _forward(x, weight, output, stride, padding, dilation, groups, transposed)
        if func in (_aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default):
            # Under inference_mode the dispatcher shows convN d itself, not the convolution it becomes.
            x, weight = args[0], args[1]
            dims = weight.dim() - 2
            stride = _as_list(args[3] if len(args) > 3 else kwargs.get("stride", 1), dims)
            padding = args[4] if len(args) > 4 else kwargs.get("padding", 0)
            padding = _as_list(padding, dims) if not isinstance(padding, str) else padding
            dilation = _as_list(args[5] if len(args) > 5 else kwargs.get("dilation", 1), dims)
            groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
            if x.dim() != dims + 2:
                return 0
            return _forward(x, weight, output, stride, padding, dilation, groups, False)
        if func is _aten.max_pool2d.default and isinstance(output, torch.Tensor) and output.device.type == "cpu":
            return max_pool_indices(output)
        if func is _aten.convolution_backward.default:
            grad_output, x, weight = args[:3]
            stride, padding, dilation, transposed, groups, mask = args[4], args[5], args[6], args[7], args[9], args[10]
            if x.device.type != "cpu" or transposed:
                return 0
            if uses_onednn(x, weight, stride, dilation, groups, transposed):
                return backward_workspace(grad_output, x, weight, groups, mask)
            if x.dim() in (3, 4) and all(d == 1 for d in dilation) and groups == 1:
                return slow_conv_workspace(x, weight, grad_output, stride, padding, groups)  # the columns again
    except (IndexError, TypeError, ValueError, AttributeError):
        return 0
    return 0
