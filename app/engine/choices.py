"""Every list of choices the engine offers, in one place: dtypes, precisions, optimizers, modes.

The report types, the API's schemas, the CLI's ``choices`` and the pages (through
``GET /api/choices``) all derive from these tables; nothing else spells them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .optim8bit import AdamW8bitLayout, PagedAdamW8bitLayout

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
# Dtypes an input tensor may have: the float ones above, token ids and masks.
INPUT_DTYPES: dict[str, torch.dtype] = {**DTYPES, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


@dataclass(frozen=True)
class PrecisionChoice:
    """How parameters are stored and how the forward computes."""

    name: str
    label: str
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None  # None: no autocast
    description: str

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "label": self.label,
            "dtype": dtype_name(self.param_dtype),
            "autocast": dtype_name(self.autocast_dtype) if self.autocast_dtype else None,
            "description": self.description,
        }


PRECISIONS: dict[str, PrecisionChoice] = {
    p.name: p
    for p in (
        PrecisionChoice("fp32", "fp32", torch.float32, None, "float32 parameters and activations"),
        PrecisionChoice("bf16", "bf16", torch.bfloat16, None, "bfloat16 parameters and activations"),
        PrecisionChoice("fp16", "fp16", torch.float16, None, "float16 parameters and activations"),
        PrecisionChoice("amp-bf16", "AMP bf16", torch.float32, torch.bfloat16, "float32 parameters, bfloat16 autocast"),
        PrecisionChoice("amp-fp16", "AMP fp16", torch.float32, torch.float16, "float32 parameters, float16 autocast"),
        PrecisionChoice("fp64", "fp64", torch.float64, None, "float64 parameters and activations"),
    )
}


@dataclass(frozen=True)
class OptimizerChoice:
    """An optimizer with the hyperparameters a step uses, and its state in parameter-sized copies."""

    name: str
    label: str
    short: str
    factory: type[torch.optim.Optimizer]
    kwargs: dict[str, Any] = field(default_factory=dict)
    state_copies: int = 0  # for the textbook formula: Adam keeps 2 (two moments), momentum 1, SGD 0
    not_on_shards: str | None = None  # why it cannot step FSDP2's sharded parameters (ZeRO-2, FSDP), if it cannot

    def build(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return self.factory(params, **self.kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "label": self.label,
            "short": self.short,
            "state_copies": self.state_copies,
            "on_shards": self.not_on_shards is None,
        }


OPTIMIZERS: dict[str, OptimizerChoice] = {
    o.name: o
    for o in (
        OptimizerChoice("sgd", "SGD", "SGD", torch.optim.SGD, {"lr": 1e-2}, 0),
        OptimizerChoice(
            "sgd-momentum", "SGD + momentum", "Momentum", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}, 1
        ),
        OptimizerChoice("adam", "Adam", "Adam", torch.optim.Adam, {"lr": 1e-3}, 2),
        OptimizerChoice("adamw", "AdamW", "AdamW", torch.optim.AdamW, {"lr": 1e-3}, 2),
        # Fine-tuning's memory savers: bitsandbytes' 8-bit AdamW (one byte per moment, block absmaxes; its paged
        # variant holds the same bytes in pageable memory), and Adafactor's factored second moment.
        OptimizerChoice("adamw-8bit", "AdamW 8-bit (bitsandbytes)", "AdamW 8-bit", AdamW8bitLayout, {"lr": 1e-3}, 2),
        OptimizerChoice(
            "paged-adamw-8bit", "Paged AdamW 8-bit (bitsandbytes)", "Paged 8-bit", PagedAdamW8bitLayout, {"lr": 1e-3}, 2
        ),
        OptimizerChoice(
            "adafactor",
            "Adafactor",
            "Adafactor",
            torch.optim.Adafactor,
            {"lr": 1e-2},
            0,
            not_on_shards="torch's Adafactor squares a norm in place (pow_), which DTensor cannot do on a shard's "
            "partial norm: it does not step FSDP2's sharded parameters (ZeRO-2, FSDP); DDP keeps whole parameters",
        ),
    )
}
DEFAULT_OPTIMIZER = "adam"

MODES: dict[str, str] = {
    "train": "one steady-state training step: forward, loss, backward, optimizer step",
    "inference": "one forward pass under torch.inference_mode()",
    "generate": "greedy generation of new_tokens tokens after the prompt with a KV cache: a prefill forward over "
    "the prompt, then one forward per new token",
}

SHARDINGS: dict[str, str] = {
    "ddp": "DistributedDataParallel: every device holds the whole model, its gradients and optimizer state, plus "
    "DDP's gradient buckets",
    "zero2": "FSDP2 without resharding after forward (ZeRO-2): gradients and optimizer state sharded, parameters "
    "gathered from forward to backward",
    "fsdp": "FSDP2 fully_shard on each repeated block and the root, resharding after forward (ZeRO-3): parameters, "
    "gradients and optimizer state sharded",
}
MAX_NEW_TOKENS = 65_536
MAX_GPUS = 1024

# Literal types for the typed reports and request schemas, built from the tables above.
DTypeName = Literal[tuple(DTYPES)]  # type: ignore[valid-type]
InputDTypeName = Literal[tuple(INPUT_DTYPES)]  # type: ignore[valid-type]
PrecisionName = Literal[tuple(PRECISIONS)]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(OPTIMIZERS)]  # type: ignore[valid-type]
Mode = Literal[tuple(MODES)]  # type: ignore[valid-type]
ShardingName = Literal[tuple(SHARDINGS)]  # type: ignore[valid-type]

# What a sharded training step keeps in host memory instead of the GPU's, and FSDPMemTracker's kinds for it.
OFFLOADS: dict[str, str] = {
    "none": "everything on the GPU",
    "optimizer": "ZeRO-Offload: the optimizer state, the gradient shards and the optimizer's step on the host",
    "all": "FSDP2's CPUOffloadPolicy: the parameter shards too, copied to the GPU as each block is gathered",
}
OFFLOADED_KINDS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "optimizer": frozenset({"OptState", "Sharded Grad"}),
    "all": frozenset({"OptState", "Sharded Grad", "Sharded Param"}),
}
OffloadName = Literal[tuple(OFFLOADS)]  # type: ignore[valid-type]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def precision_for(dtype: torch.dtype) -> PrecisionChoice:
    """The plain (no autocast) precision whose parameters have ``dtype``."""
    return next(p for p in PRECISIONS.values() if p.param_dtype == dtype and p.autocast_dtype is None)


def resolve_precision(precision: str | None, dtype: str | torch.dtype | None) -> PrecisionChoice:
    """One of precision and dtype decides the other; both given must agree (amp keeps float32 parameters)."""
    from .errors import InputError  # errors imports the models package; keep this module import-light

    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", field="precision")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}", field="dtype")
        dtype = DTYPES[dtype]
    if dtype is not None and dtype not in DTYPES.values():
        raise InputError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}", field="dtype")
    if precision is None:
        return precision_for(dtype or torch.float32)
    choice = PRECISIONS[precision]
    if dtype is not None and dtype != choice.param_dtype:
        raise InputError(
            f"dtype {dtype_name(dtype)} contradicts precision {choice.name} "
            f"({dtype_name(choice.param_dtype)} parameters); give one of them",
            field="dtype",
        )
    return choice


# How a generation's KV cache stores keys and values (serving's kv_cache_dtype, vLLM's spelling).
KV_CACHE_DTYPES: dict[str, str] = {
    "auto": "the compute dtype (the weights', or autocast's)",
    "fp8": "float8 e4m3: one byte per element, a static scale per layer",
    "int8": "int8: one byte per element, a static scale per layer",
}
KvCacheDtype = Literal[tuple(KV_CACHE_DTYPES)]  # type: ignore[valid-type]


def describe_choices() -> dict[str, Any]:
    """Every choice, JSON-ready, for the API and the pages."""
    return {
        "dtypes": list(DTYPES),
        "input_dtypes": list(INPUT_DTYPES),
        "precisions": [p.describe() for p in PRECISIONS.values()],
        "optimizers": [o.describe() for o in OPTIMIZERS.values()],
        "shardings": [{"id": name, "description": text} for name, text in SHARDINGS.items()],
        "default_optimizer": DEFAULT_OPTIMIZER,
        "modes": [{"id": name, "description": text} for name, text in MODES.items()],
        "kv_cache_dtypes": [{"id": name, "description": text} for name, text in KV_CACHE_DTYPES.items()],
        "offloads": [{"id": name, "description": text} for name, text in OFFLOADS.items()],
    }
