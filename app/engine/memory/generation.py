"""Generation: how a model generates, and what its KV cache holds.

``generation_loop`` finds how a model generates (its family's KV-cache loop; for a
Hugging Face model, ``generate`` on real data and the same steps on fake tensors).
``kv_cache`` reads the cache a generation leaves: its bytes are exactly
2 x layers x KV heads x head dim x tokens x batch x bytes per element, because they
are the cache's own tensors (sliding-window layers keep their window, grouped-query
attention its KV heads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import models

from ..errors import InputError
from ..tracing.selection import Selection, is_hugging_face
from ..units import format_bytes


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
