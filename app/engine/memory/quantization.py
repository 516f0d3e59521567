"""Quantized weights, counted from how each format stores its tensors.

Every format is a layout: for a linear layer of ``out`` x ``in`` weights, the tensors a
checkpoint or a quantizing library keeps on the device, with their shapes and dtypes.

- bitsandbytes 4-bit (``nf4``, ``fp4``): the weights packed two per byte, one absmax per
  block of 64, a 16-value code; with double quantization the absmaxes are themselves
  quantized to bytes with one float32 absmax per 256 of them, a 256-value code and an
  offset (``bitsandbytes.functional.quantize_4bit``'s ``QuantState``).
- bitsandbytes 8-bit (``int8``, LLM.int8()): int8 weights and one float32 scale per row.
- ``fp8``: e4m3 weights and a float32 scale per 128 x 128 block (transformers' fine-grained
  FP8, the layout DeepSeek-V3 and Qwen3-FP8 checkpoints ship).
- GPTQ and AWQ (``bits`` 2/3/4/8, ``group_size``): int32-packed weights, zeros packed the
  same way, fp16 scales per group (and GPTQ's int32 ``g_idx``).
- compressed-tensors: int4 ``pack-quantized`` groups, or 8-bit int/float per channel or
  per tensor (w8a8, fp8-dynamic).

``quantize_linears`` replaces a model's linear layers (all but the output head, as
transformers' integrations leave it) by ``QuantizedLinear``, which holds its layout's
tensors as frozen parameters and computes as bitsandbytes' training path does
(``MatMul4Bit``): the weight dequantized into the compute dtype for the product and
dropped after it, again in backward for the input's gradient, and nothing else saved.
Fused inference kernels (a one-token ``gemv_4bit``, Marlin, fp8 GEMMs) skip that
temporary, so there the figure is the dequantizing path's, an upper bound by one
layer's weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..step import Quantization


@dataclass(frozen=True)
class Stored:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def layout(quant: Quantization, out_features: int, in_features: int) -> list[Stored]:
    """The tensors one linear layer of ``out_features`` x ``in_features`` keeps, as its format stores them."""
    numel = out_features * in_features
    method = quant.method
    if method in ("nf4", "fp4"):
        blocks = math.ceil(numel / quant.block_size)
        stored = [Stored("weight", (math.ceil(numel / 2), 1), torch.uint8), Stored("code", (16,), torch.float32)]
        if not quant.double_quant:
            return [*stored, Stored("absmax", (blocks,), torch.float32)]
        return [
            *stored,
            Stored("absmax", (blocks,), torch.uint8),
            Stored("offset", (), torch.float32),
            Stored("nested_absmax", (math.ceil(blocks / 256),), torch.float32),
            Stored("nested_code", (256,), torch.float32),
        ]
    if method == "int8":
        return [
            Stored("weight", (out_features, in_features), torch.int8),
            Stored("SCB", (out_features,), torch.float32),
        ]
    if method == "fp8":
        return [
            Stored("weight", (out_features, in_features), torch.float8_e4m3fn),
            Stored("weight_scale_inv", (math.ceil(out_features / 128), math.ceil(in_features / 128)), torch.float32),
        ]
    groups = 1 if quant.group_size == -1 else math.ceil(in_features / quant.group_size)
    if method == "gptq":  # bits x in packed into int32 rows (3-bit rows cross int32 boundaries)
        return [
            Stored("qweight", (math.ceil(in_features * quant.bits / 32), out_features), torch.int32),
            Stored("qzeros", (groups, math.ceil(out_features * quant.bits / 32)), torch.int32),
            Stored("scales", (groups, out_features), torch.float16),
            Stored("g_idx", (in_features,), torch.int32),
        ]
    if method == "awq":
        return [
            Stored("qweight", (in_features, math.ceil(out_features * quant.bits / 32)), torch.int32),
            Stored("qzeros", (groups, math.ceil(out_features * quant.bits / 32)), torch.int32),
            Stored("scales", (groups, out_features), torch.float16),
        ]
    # compressed-tensors
    if quant.bits == 8:
        dtype = torch.float8_e4m3fn if quant.float_weights else torch.int8
        return [
            Stored("weight", (out_features, in_features), dtype),
            Stored("weight_scale", (out_features, 1), torch.bfloat16),
        ]
    return [
        Stored("weight_packed", (out_features, math.ceil(in_features * quant.bits / 32)), torch.int32),
        Stored("weight_scale", (out_features, groups), torch.bfloat16),
        Stored("weight_shape", (2,), torch.int64),
    ]


def layout_bytes(quant: Quantization, out_features: int, in_features: int) -> int:
    return sum(math.prod(s.shape) * s.dtype.itemsize for s in layout(quant, out_features, in_features))


def from_quantization_config(spec: dict[str, Any]) -> Quantization:
    """The layout a Hugging Face config's ``quantization_config`` describes."""
    method = str(spec.get("quant_method", "")).lower()
    if method == "bitsandbytes":
        if spec.get("load_in_4bit"):
            return Quantization(
                method=spec.get("bnb_4bit_quant_type", "fp4"),
                double_quant=bool(spec.get("bnb_4bit_use_double_quant", False)),
            )
        if spec.get("load_in_8bit"):
            return Quantization(method="int8")
        raise InputError("quantization_config: bitsandbytes without load_in_4bit or load_in_8bit", "config")
    elif method in ("gptq", "awq"):
        return Quantization(method=method, bits=int(spec.get("bits", 4)), group_size=int(spec.get("group_size", 128)))
    elif method == "fp8":
        block = spec.get("weight_block_size") or [128, 128]
        if list(block) != [128, 128]:
            raise InputError("quantization_config: fp8 blocks other than 128 x 128 are not counted", "config")
        return Quantization(method="fp8")
    elif method == "compressed-tensors":
        groups = list((spec.get("config_groups") or {}).values())
        weights = (groups[0] or {}).get("weights") or {} if groups else {}
        bits = int(weights.get("num_bits", 8))
        return Quantization(
            method="compressed-tensors",
            bits=bits,
            group_size=int(weights.get("group_size") or -1),
            float_weights=weights.get("type") == "float",
        )
    raise InputError(
        f"quantization_config: unknown quant_method {spec.get('quant_method')!r}; known: bitsandbytes, gptq, awq, "
        "fp8, compressed-tensors",
        "config.quantization_config",
    )


class _DequantizedProduct(torch.autograd.Function):
    """``x @ dequantize(W).T``, saving nothing of its own: backward dequantizes again (bitsandbytes' MatMul4Bit)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: QuantizedLinear) -> torch.Tensor:
        ctx.layer = layer
        weight = layer.dequantized(x.dtype)
        out = x @ weight.t()
        del weight
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight = ctx.layer.dequantized(grad.dtype)
        return grad @ weight, None


class QuantizedLinear(nn.Linear):
    """A linear layer whose weight is stored in a quantized layout (frozen), computed by dequantizing it."""

    def __init__(self, source: nn.Linear, quant: Quantization) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.quantization = source.in_features, source.out_features, quant
        device = source.weight.device
        self.stored = [s.name for s in layout(quant, self.out_features, self.in_features)]
        for s in layout(quant, self.out_features, self.in_features):
            self.register_parameter(
                s.name, nn.Parameter(torch.empty(s.shape, dtype=s.dtype, device=device), requires_grad=False)
            )
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach(), requires_grad=False)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in ``dtype`` (the temporary a dequantizing kernel writes); nested absmaxes first."""
        device = getattr(self, self.stored[0]).device
        if self.quantization.method in ("nf4", "fp4") and self.quantization.double_quant:
            absmax = torch.empty(self.absmax.shape, dtype=torch.float32, device=device)
            del absmax
        return torch.empty((self.out_features, self.in_features), dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _DequantizedProduct.apply(x, self)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.quantization.method}"


def quantize_linears(model: nn.Module, quant: Quantization) -> int:
    """Replace every linear layer but the output head by its quantized layout; returns how many."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child is not head:
                setattr(parent, name, QuantizedLinear(child, quant))
                replaced += 1
    if not replaced:
        raise InputError("quantization: this model has no linear layer to quantize", "quantization")
    return replaced
