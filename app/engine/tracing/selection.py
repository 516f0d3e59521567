"""From what a caller asks for (a zoo name or any ``nn.Module``) to a model and the arguments of its forward.

Zoo models are built on the ``meta`` device: parameters have shapes and no
storage. Inputs are made to match the model's input kind (float images or
vectors, token ids in range of the model's first embedding, or the keyword
arguments a Hugging Face model takes), or come from the caller as
``input_data``: a tensor, a tuple/list of positional arguments, or a dict of
keyword arguments, whose tensors are never copied at full size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import models
from models import InputKind

from ..choices import DTYPES, INPUT_DTYPES
from ..errors import InputError
from ..lru import LRUCache
from .tracer import tensor_leaves
from .transformers_internals import pads_nothing

MAX_BATCH = 1 << 16
MAX_SAMPLE_ELEMENTS = 1 << 28  # one sample's input: 268 million values at most


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with ``fn`` applied to every tensor in it (tuples, lists and dicts rebuilt)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        mapped = [map_tensors(v, fn) for v in value]
        return type(value)(mapped) if not hasattr(value, "_fields") else type(value)(*mapped)
    return value


@dataclass
class ModelInputs:
    """The positional and keyword arguments of one forward call."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Any) -> ModelInputs:
        """A tensor (one argument), a tuple/list (positional arguments) or a dict (keyword arguments)."""
        if isinstance(data, ModelInputs):
            return data
        if isinstance(data, torch.Tensor):
            return cls((data,))
        if isinstance(data, Mapping):
            if not all(isinstance(k, str) for k in data):
                raise InputError("input_data as a dict must map argument names to values", "input_data")
            return cls((), dict(data))
        if isinstance(data, list | tuple):
            return cls(tuple(data))
        raise InputError(
            f"input_data must be a tensor, a tuple/list of positional arguments or a dict of keyword arguments, "
            f"got {type(data).__name__}",
            "input_data",
        )

    def tensors(self) -> list[torch.Tensor]:
        return tensor_leaves((self.args, self.kwargs))

    def shapes(self) -> list[list[int]]:
        return [list(t.shape) for t in self.tensors()]

    def map(self, fn: Callable[[torch.Tensor], Any]) -> ModelInputs:
        return ModelInputs(map_tensors(self.args, fn), map_tensors(self.kwargs, fn))

    def run(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def batch_size(self) -> int | None:
        tensors = self.tensors()
        return tensors[0].shape[0] if tensors and tensors[0].dim() else None


@dataclass(frozen=True)
class TensorSpec:
    """One input tensor by shape and dtype (batch first): positional, or the keyword ``name``."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str | None = None

    def meta(self) -> torch.Tensor:
        if self.dtype not in INPUT_DTYPES:
            raise InputError(f"input dtype {self.dtype!r} is not one of {', '.join(INPUT_DTYPES)}", "input_data")
        if any(s < 0 for s in self.shape) or math.prod(self.shape) > MAX_BATCH * MAX_SAMPLE_ELEMENTS:
            raise InputError(f"input shape {list(self.shape)} is out of range", "input_data")
        return torch.empty(self.shape, dtype=INPUT_DTYPES[self.dtype], device="meta")


def inputs_from_specs(specs: list[TensorSpec]) -> ModelInputs:
    """Meta tensors for the specs: unnamed ones are positional arguments, named ones keyword arguments."""
    names = [s.name for s in specs if s.name]
    if len(names) != len(set(names)):
        raise InputError(f"input names must differ: {names}", "input_data")
    positional = [s for s in specs if not s.name]
    if positional and any(s.name for s in specs[: len(positional)]):
        raise InputError("positional (unnamed) inputs come before named ones", "input_data")
    return ModelInputs(tuple(s.meta() for s in positional), {s.name: s.meta() for s in specs if s.name})


@dataclass
class Selection:
    """A model ready to inspect, and what it takes as input."""

    module: nn.Module
    architecture: str | None  # registry name, None for a user module
    config: dict[str, Any] | None  # validated config, every field filled in
    kind: InputKind
    input_size: tuple[int, ...]  # one sample, no batch dimension (for input_data: the first tensor's)
    owned: bool  # True when the engine built the module (so it may change its dtype or device)
    pool_key: str | None = None  # set when borrowed from the meta pool: give it back when done
    input_data: ModelInputs | None = None  # the caller's own forward arguments, used as given
    input_builder: Callable[..., ModelInputs] | None = None  # the architecture's own (keyword) inputs
    no_padding: bool = True  # the caller's attention masks pad nothing (read while the tensors are still real)


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}", field="dtype")
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}", field="dtype") from None


def check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise InputError(f"batch_size must be an integer from 1 to {MAX_BATCH:,}, got {batch_size!r}", "batch_size")
    return batch_size


_SIZE_HELP = {
    InputKind.TOKENS: "(T,): the sequence length",
    InputKind.SEQ2SEQ: "(S, T): source and target lengths",
    InputKind.VECTOR: "(D,): the vector size",
}


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
        raise InputError(f"input_size for a {kind.value} model is {_SIZE_HELP[kind]}; got {list(shape)}", "input_size")
    if kind is InputKind.SEQ2SEQ and len(shape) == 1:
        shape = (shape[0], shape[0])
    return shape


class MetaModelPool:
    """Zoo models already built on meta, kept for reuse: building costs more than inspecting.

    A taken model belongs to its taker until it is given back, so two threads
    never hook the same module. Meta models hold no storage: keeping a few is cheap.
    """

    def __init__(self, max_keys: int = 32, per_key: int = 2) -> None:
        self._cache: LRUCache[str, list[nn.Module]] = LRUCache(max_keys)
        self.per_key = per_key

    def resize(self, max_keys: int) -> None:
        self._cache.max_items = max_keys

    def take(self, key: str) -> nn.Module | None:
        stack = self._cache.pop(key)
        if not stack:
            return None
        module = stack.pop()
        if stack:
            self._cache.put(key, stack)
        return module

    def give_back(self, key: str, module: nn.Module) -> None:
        stack = self._cache.pop(key) or []
        if len(stack) < self.per_key:
            stack.append(module)
        self._cache.put(key, stack)

    def clear(self) -> None:
        self._cache.clear()


META_MODELS = MetaModelPool()


@contextmanager
def selected(
    model_or_name: str | nn.Module,
    config: dict[str, Any] | None = None,
    input_size: Any = None,
    input_kind: InputKind | str | None = None,
    dtype: torch.dtype = torch.float32,
    input_data: Any = None,
) -> Iterator[Selection]:
    """``select``, borrowing a zoo model from the meta pool and giving it back afterwards."""
    selection = select(model_or_name, config, input_size, input_kind, dtype=dtype, reuse=True, input_data=input_data)
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
    input_data: Any = None,
) -> Selection:
    """Resolve a zoo name (built on meta, in ``dtype``) or a user module, and what its forward takes.

    With ``reuse`` the model may come from the meta pool; the caller must give it back.
    """
    given = ModelInputs.of(input_data) if input_data is not None else None
    no_padding = pads_nothing(given.kwargs) if given is not None else True
    if given is not None and input_size is not None:
        raise InputError("give input_data or input_size, not both", "input_size")
    if isinstance(model_or_name, nn.Module):
        if config:
            raise InputError("config applies to zoo architectures, not to a module you pass", field="config")
        kind = InputKind(input_kind) if input_kind else _guess_kind(model_or_name)
        if given is not None:
            return Selection(
                model_or_name,
                None,
                None,
                kind,
                _sample_size(given),
                owned=False,
                input_data=given,
                no_padding=no_padding,
            )
        if input_size is None:
            raise InputError(
                "a module you pass needs input_size, e.g. (3, 224, 224), or input_data (a tensor, a tuple of "
                "arguments or a dict of keyword arguments)",
                "input_size",
            )
        return Selection(model_or_name, None, None, kind, _check_input_size(input_size, kind), owned=False)
    if not isinstance(model_or_name, str):
        raise InputError(f"expected an architecture name or an nn.Module, got {type(model_or_name).__name__}")
    arch = models.get_architecture(model_or_name)
    parsed = arch.parse_config(config)
    dumped = parsed.model_dump(mode="json")
    kind = arch.kind(parsed)
    if given is not None:
        size = _sample_size(given)
    else:
        size = _check_input_size(arch.default_input(parsed) if input_size is None else input_size, kind)
        arch.check_input(parsed, size)
    key = json.dumps([arch.name, dumped, str(dtype)], sort_keys=True) if reuse else None
    module = META_MODELS.take(key) if key else None
    if module is None:
        with torch.device("meta"):
            module = arch.build(parsed)
        module.to(dtype)
    builder = (
        (
            lambda batch, dtype, device, real: ModelInputs.of(
                arch.inputs(parsed, module, size, batch, dtype, device, real)
            )
        )
        if (arch.inputs is not None)
        else None
    )
    return Selection(
        module,
        arch.name,
        dumped,
        kind,
        size,
        owned=True,
        pool_key=key,
        input_data=given,
        input_builder=builder,
        no_padding=no_padding,
    )


def _sample_size(inputs: ModelInputs) -> tuple[int, ...]:
    tensors = inputs.tensors()
    if not tensors:
        raise InputError("input_data holds no tensor", "input_data")
    first = tensors[0]
    return tuple(first.shape[1:]) if first.dim() > 1 else tuple(first.shape)


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


def is_hugging_face(module: nn.Module) -> bool:
    """A transformers model (it has a generation config and says whether it generates)."""
    return hasattr(module, "generation_config") and hasattr(module, "can_generate")


def _guess_kind(module: nn.Module) -> InputKind:
    first = next((m for m in module.modules() if not list(m.children())), None)
    return InputKind.TOKENS if isinstance(first, nn.Embedding) else InputKind.IMAGE


def vocabulary(module: nn.Module) -> int:
    """Token ids must index the model's first embedding table."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return 2


def input_shapes(selection: Selection, batch_size: int) -> list[list[int]]:
    """Shapes of the tensors the forward receives, batch first."""
    if selection.input_data is not None:
        return selection.input_data.shapes()
    if selection.input_builder is not None:
        return selection.input_builder(batch_size, torch.float32, "meta", False).shapes()
    if selection.kind is InputKind.SEQ2SEQ:
        source, target = selection.input_size
        return [[batch_size, source], [batch_size, target]]
    return [[batch_size, *selection.input_size]]


def is_token_input(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() and not tensor.is_complex()


def make_inputs(
    selection: Selection, batch_size: int, dtype: torch.dtype, device: torch.device | str, real: bool = False
) -> ModelInputs:
    """The forward's arguments: random values when ``real``, else uninitialised (meta or fake) tensors.

    The caller's ``input_data`` is used as given: on meta it is replaced by empty
    stand-ins of the same shapes; floating tensors take ``dtype``.
    """
    if selection.input_data is not None:
        return _given_inputs(selection.input_data, dtype, device, real)
    if selection.input_builder is not None:
        return selection.input_builder(batch_size, dtype, device, real)
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
    return ModelInputs(tuple(tensors))


def _given_inputs(data: ModelInputs, dtype: torch.dtype, device: torch.device | str, real: bool) -> ModelInputs:
    target = torch.device(device)

    def convert(t: torch.Tensor) -> torch.Tensor:
        wanted = dtype if t.is_floating_point() else t.dtype
        if not real or t.device.type == "meta":
            if real:
                raise InputError("a real run needs real input_data tensors, not meta ones", "input_data")
            return torch.empty(t.shape, dtype=wanted, device=target)  # meta or fake: no data copied
        return t.to(device=target, dtype=wanted)

    return data.map(convert)


def target_shape(output_shape: tuple[int, ...], kind: InputKind) -> tuple[tuple[int, ...], int]:
    """Shape and class count of integer labels for cross-entropy on an output of ``output_shape``."""
    if kind in (InputKind.TOKENS, InputKind.SEQ2SEQ) and len(output_shape) == 3:
        return output_shape[:2], output_shape[2]  # next token at every position
    if len(output_shape) < 2:
        return output_shape, 1
    return (output_shape[0], *output_shape[2:]), output_shape[1]  # class dimension is dim 1


def is_regression(output_shape: tuple[int, ...], kind: InputKind) -> bool:
    """One output per sample (or none): a regression, trained with MSE, not a classification."""
    if kind in (InputKind.TOKENS, InputKind.SEQ2SEQ) and len(output_shape) == 3:
        return False
    return len(output_shape) < 2 or output_shape[1] == 1


def make_targets(
    output_shape: tuple[int, ...], kind: InputKind, device: torch.device | str, real: bool = False
) -> torch.Tensor:
    if is_regression(output_shape, kind):
        return torch.randn(output_shape, device=device) if real else torch.empty(output_shape, device=device)
    shape, classes = target_shape(output_shape, kind)
    if real:
        return torch.randint(0, max(classes, 1), shape, device=device)
    return torch.zeros(shape, dtype=torch.long, device=device)


def model_loss(output: Any) -> torch.Tensor | None:
    """A loss the model computed itself (Hugging Face models given labels), if any."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None


def first_output(output: Any) -> torch.Tensor:
    """The model's main output: the first tensor it returns (the logits of a Hugging Face model)."""
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    leaves = tensor_leaves(output)
    if not leaves:
        raise InputError("the model returned no tensor to compute a loss on", "mode")
    return leaves[0]


def loss_of(output: Any, targets: torch.Tensor | None, kind: InputKind) -> torch.Tensor:
    """The model's own loss when it computed one; else cross-entropy against labels, or MSE for one output."""
    own = model_loss(output)
    if own is not None:
        return own
    logits = first_output(output)
    if targets is None:
        raise InputError("no labels to compute a loss with", "mode")
    if is_regression(tuple(logits.shape), kind):
        return F.mse_loss(logits, targets.to(logits.dtype))
    if kind in (InputKind.TOKENS, InputKind.SEQ2SEQ) and logits.dim() == 3:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return F.cross_entropy(logits, targets)
