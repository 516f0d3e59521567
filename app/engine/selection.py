"""From what a caller asks for (a zoo name or any ``nn.Module``) to a model and example inputs.

Zoo models are built on the ``meta`` device: parameters have shapes and no
storage. Inputs are made to match the model's input kind: float images or
vectors, or token ids in range of the model's first embedding.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import models
from models import InputKind

from .errors import InputError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
MAX_BATCH = 1 << 16
MAX_SAMPLE_ELEMENTS = 1 << 28  # one sample's input: 268 million values at most


@dataclass
class Selection:
    """A model ready to inspect, and what it takes as input."""

    module: nn.Module
    architecture: str | None  # registry name, None for a user module
    config: dict[str, Any] | None  # validated config, every field filled in
    kind: InputKind
    input_size: tuple[int, ...]  # one sample, no batch dimension
    owned: bool  # True when the engine built the module (so it may change its dtype or device)
    pool_key: str | None = None  # set when borrowed from the meta pool: give it back when done


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}", field="dtype")
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}", field="dtype") from None


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise InputError(f"batch_size must be an integer from 1 to {MAX_BATCH:,}, got {batch_size!r}", "batch_size")
    return batch_size


def _check_input_size(size: Any, kind: InputKind) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"input_size must be a list of integers, got {size!r}", field="input_size") from None
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"input_size must be non-empty with every dimension >= 1, got {list(shape)}", "input_size")
    if math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        raise InputError(f"input_size {list(shape)} is too large: over {MAX_SAMPLE_ELEMENTS:,} values", "input_size")
    expected = {InputKind.TOKENS: (1,), InputKind.SEQ2SEQ: (1, 2), InputKind.VECTOR: (1,)}.get(kind)
    if expected and len(shape) not in expected:
        what = {
            InputKind.TOKENS: "(T,): the sequence length",
            InputKind.SEQ2SEQ: "(S, T): source and target lengths",
            InputKind.VECTOR: "(D,): the vector size",
        }[kind]
        raise InputError(f"input_size for a {kind.value} model is {what}; got {list(shape)}", "input_size")
    if kind is InputKind.SEQ2SEQ and len(shape) == 1:
        shape = (shape[0], shape[0])
    return shape


class MetaModelPool:
    """Zoo models already built on meta, kept for reuse: building costs more than inspecting.

    A taken model belongs to its taker until it is given back, so two threads
    never hook the same module. Meta models hold no storage: keeping a few is cheap.
    """

    def __init__(self, max_keys: int = 32, per_key: int = 2) -> None:
        self._items: OrderedDict[str, list[nn.Module]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self.per_key = per_key

    def take(self, key: str) -> nn.Module | None:
        with self._lock:
            stack = self._items.get(key)
            if not stack:
                return None
            self._items.move_to_end(key)
            return stack.pop()

    def give_back(self, key: str, module: nn.Module) -> None:
        with self._lock:
            stack = self._items.setdefault(key, [])
            self._items.move_to_end(key)
            if len(stack) < self.per_key:
                stack.append(module)
            while len(self._items) > self.max_keys:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


META_MODELS = MetaModelPool()


@contextmanager
def selected(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    input_kind: InputKind | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[Selection]:
    """``select``, borrowing a zoo model from the meta pool and giving it back afterwards."""
    selection = select(model_or_name, config, input_size, input_kind, dtype=dtype, reuse=True)
    try:
        yield selection
    finally:
        if selection.pool_key is not None:
            META_MODELS.give_back(selection.pool_key, selection.module)


def select(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    input_kind: InputKind | str | None = None,
    dtype: torch.dtype = torch.float32,
    reuse: bool = False,
) -> Selection:
    """Resolve a zoo name (built on meta, in ``dtype``) or a user module, and the one-sample input size.

    With ``reuse`` the model may come from the meta pool; the caller must give it back.
    """
    if isinstance(model_or_name, nn.Module):
        if config:
            raise InputError("config applies to zoo architectures, not to a module you pass", field="config")
        kind = InputKind(input_kind) if input_kind else _guess_kind(model_or_name)
        if input_size is None:
            raise InputError("input_size is required for a module you pass, e.g. (3, 224, 224)", "input_size")
        return Selection(model_or_name, None, None, kind, _check_input_size(input_size, kind), owned=False)
    if not isinstance(model_or_name, str):
        raise InputError(f"expected an architecture name or an nn.Module, got {type(model_or_name).__name__}")
    arch = models.get_architecture(model_or_name)
    parsed = arch.parse_config(config)
    dumped = parsed.model_dump(mode="json")
    kind = arch.kind(parsed)
    size = _check_input_size(arch.default_input(parsed) if input_size is None else input_size, kind)
    key = json.dumps([arch.name, dumped, str(dtype)], sort_keys=True) if reuse else None
    module = META_MODELS.take(key) if key else None
    if module is None:
        with torch.device("meta"):
            module = arch.build(parsed)
        module.to(dtype)
    return Selection(module, arch.name, dumped, kind, size, owned=True, pool_key=key)


def check_module_count(module: nn.Module, max_modules: int | None) -> None:
    """Refuse models too big to inspect within a request's time (a service limit, off by default)."""
    if max_modules is None:
        return
    count = sum(1 for _ in module.modules())
    if count > max_modules:
        raise InputError(
            f"the model has {count:,} modules, over this server's limit of {max_modules:,}; use fewer layers",
            field="config",
        )


def _guess_kind(module: nn.Module) -> InputKind:
    first = next((m for m in module.modules() if not list(m.children())), None)
    return InputKind.TOKENS if isinstance(first, nn.Embedding) else InputKind.IMAGE


def vocabulary(module: nn.Module) -> int:
    """Token ids must index the model's first embedding table."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return 2


def input_shapes(selection: Selection, batch_size: int) -> list[tuple[int, ...]]:
    if selection.kind is InputKind.SEQ2SEQ:
        source, target = selection.input_size
        return [(batch_size, source), (batch_size, target)]
    return [(batch_size, *selection.input_size)]


def make_inputs(
    selection: Selection, batch_size: int, dtype: torch.dtype, device: torch.device | str, real: bool = False
) -> tuple[torch.Tensor, ...]:
    """Example inputs: random values when ``real``, else uninitialised (meta or fake) tensors."""
    tokens = selection.kind in (InputKind.TOKENS, InputKind.SEQ2SEQ)
    vocab = vocabulary(selection.module) if tokens else 0
    tensors = []
    for shape in input_shapes(selection, batch_size):
        if tokens:
            t = (
                torch.randint(0, vocab, shape, device=device)
                if real
                else torch.empty(shape, dtype=torch.long, device=device)
            )
        else:
            t = (
                torch.randn(shape, dtype=dtype, device=device)
                if real
                else torch.empty(shape, dtype=dtype, device=device)
            )
        tensors.append(t)
    return tuple(tensors)


def target_shape(output_shape: tuple[int, ...], kind: InputKind) -> tuple[tuple[int, ...], int]:
    """Shape and class count of integer labels for cross-entropy on an output of ``output_shape``."""
    if kind in (InputKind.TOKENS, InputKind.SEQ2SEQ) and len(output_shape) == 3:
        return output_shape[:2], output_shape[2]  # next token at every position
    if len(output_shape) < 2:
        return output_shape, 1
    return (output_shape[0], *output_shape[2:]), output_shape[1]  # class dimension is dim 1


def make_targets(
    output_shape: tuple[int, ...], kind: InputKind, device: torch.device | str, real: bool = False
) -> torch.Tensor:
    shape, classes = target_shape(output_shape, kind)
    if real:
        return torch.randint(0, max(classes, 1), shape, device=device)
    return torch.zeros(shape, dtype=torch.long, device=device)


def loss_of(output: Any, targets: torch.Tensor, kind: InputKind) -> torch.Tensor:
    """Cross-entropy of the model's (first) output against integer labels or next tokens."""
    logits = output[0] if isinstance(output, tuple | list) else output
    if kind in (InputKind.TOKENS, InputKind.SEQ2SEQ) and logits.dim() == 3:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    if logits.dim() < 2:
        return F.mse_loss(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)
