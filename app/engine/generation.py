"""Generation and activation checkpointing: what the memory engine runs besides a training step or a forward.

``generation_loop`` finds how a model generates (its family's KV-cache loop; for a
Hugging Face model, ``generate`` on real data and the same steps on fake tensors).
``kv_cache`` reads the cache a generation leaves: its bytes are exactly
2 x layers x KV heads x head dim x tokens x batch x bytes per element, because they
are the cache's own tensors (sliding-window layers keep their window, grouped-query
attention its KV heads). ``enable_checkpointing`` recomputes each repeated block in
backward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import models

from .errors import InputError
from .selection import Selection
from .units import format_bytes


def is_hugging_face(module: nn.Module) -> bool:
    return hasattr(module, "generation_config") and hasattr(module, "can_generate")


def generation_loop(selection: Selection) -> Callable[..., Any]:
    """The loop that generates with this model: (model, inputs, new_tokens, on_step, real) -> its KV cache."""
    arch = models.get_architecture(selection.architecture) if selection.architecture else None
    if arch is not None and arch.generate is not None:
        return arch.generate
    if arch is None and is_hugging_face(selection.module) and selection.module.can_generate():
        from models.huggingface import generate

        return generate
    what = arch.name if arch is not None else type(selection.module).__name__
    raise InputError(
        f"{what} does not generate text: mode 'generate' is for language models (gpt, transformer, a Hugging Face "
        "model with a language-model head)",
        "mode",
    )


def cache_tensors(cache: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(self-attention, cross-attention) key and value tensors of a KV cache: ours, or transformers' caches."""
    if cache is None:
        return [], []
    if hasattr(cache, "self_tensors"):
        return cache.self_tensors(), cache.cross_tensors()
    own = getattr(cache, "self_attention_cache", cache)
    cross = getattr(cache, "cross_attention_cache", None)

    def layers(each: Any) -> list[torch.Tensor]:
        found = []
        for layer in getattr(each, "layers", []) if each is not None else []:
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if isinstance(tensor, torch.Tensor) and tensor.numel():
                    found.append(tensor)
        return found

    return layers(own), layers(cross)


@dataclass(frozen=True)
class KVCacheFigures:
    bytes: int
    tokens: int  # tokens per sequence held by the self-attention cache (the longest layer)
    formula: str


def kv_cache(cache: Any) -> KVCacheFigures | None:
    """The cache's bytes and how they are made: 2 x layers x KV heads x head dim x tokens x batch x element size."""
    own, cross = cache_tensors(cache)
    if not own:
        return None
    keys = own[0::2]
    tokens = max(t.shape[2] for t in keys)
    total = sum(t.numel() * t.element_size() for t in [*own, *cross])
    first = keys[0]
    batch, heads, _, head_dim = first.shape
    windows = sorted({t.shape[2] for t in keys} - {tokens})
    formula = (
        f"2 (K and V) x {len(keys)} layers x {heads} KV heads x {head_dim} x {tokens:,} tokens x batch {batch} x "
        f"{first.element_size()} bytes"
    )
    if windows:
        formula += f" (sliding-window layers keep {', '.join(f'{w:,}' for w in windows)} tokens)"
    if cross:
        cross_bytes = sum(t.numel() * t.element_size() for t in cross)
        formula += f", plus {format_bytes(cross_bytes)} of cross-attention keys and values over the source"
    return KVCacheFigures(total, tokens, f"{formula} = {format_bytes(total)}")


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of the model's repeated stacks: a ModuleList or Sequential of two or more blocks (modules made
    of layers) of one class, outermost first; a block inside one already found is not counted again."""
    blocks: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside or not isinstance(module, nn.ModuleList | nn.Sequential):
            continue
        children = list(module.children())
        if len(children) > 1 and len({type(m) for m in children}) == 1 and any(True for _ in children[0].children()):
            blocks.extend(children)
            inside.update(id(m) for child in children for m in child.modules())
    return blocks


def enable_checkpointing(model: nn.Module) -> int:
    """Recompute each repeated block in backward instead of keeping its activations; returns how many blocks.

    Hugging Face models use their own ``gradient_checkpointing_enable`` (non-reentrant);
    other models get ``torch.utils.checkpoint`` (non-reentrant) around each block's forward.
    """
    if is_hugging_face(model) and getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return sum(1 for m in model.modules() if getattr(m, "gradient_checkpointing", False)) and len(
            repeated_blocks(model)
        )
    blocks = repeated_blocks(model)
    if not blocks:
        raise InputError(
            "checkpointing recomputes repeated blocks (a ModuleList or Sequential of blocks of one kind), and this "
            "model has none",
            "checkpointing",
        )
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)  # type: ignore[method-assign]
    return len(blocks)


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
