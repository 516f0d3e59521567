"""Keys and values of past tokens, kept while a model generates: what serving memory grows with.

Each attention module appends its new keys and values at every step (concatenated,
as transformers' ``DynamicCache`` does), so the cache holds, per layer, (B, heads,
tokens, d_k) keys and values. Cross-attention keys and values (of the encoder's
output) are computed once and kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class KVCache:
    """Per attention module: its keys and values so far (self-attention) or of the encoder's output (cross)."""

    def __init__(self) -> None:
        self._self: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0  # tokens already in the self-attention cache (the next token's position)

    def append(self, module: nn.Module, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (B, H, T_new, d_k) keys and values; return the whole (B, H, T_past + T_new, d_k)."""
        past = self._self.get(id(module))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        self._self[id(module)] = (k, v)
        return k, v

    def cross(
        self, module: nn.Module, compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder output's keys and values for this module, computed on the first step only."""
        if id(module) not in self._cross:
            self._cross[id(module)] = compute()
        return self._cross[id(module)]

    def advance(self, tokens: int) -> None:
        """Called by the model once a step's tokens are in every layer's cache."""
        self.length += tokens

    def self_tensors(self) -> list[torch.Tensor]:
        """Keys and values of the self-attention layers, in order: k0, v0, k1, v1..."""
        return [t for pair in self._self.values() for t in pair]

    def cross_tensors(self) -> list[torch.Tensor]:
        return [t for pair in self._cross.values() for t in pair]

    def extend(self, tokens: int) -> None:
        """Grow every self-attention layer's keys and values by ``tokens`` positions, as that many decode steps
        would (their values are left unset: for tensors without data, where only shapes and bytes matter)."""
        for key, (k, v) in list(self._self.items()):
            b, h, _, d = k.shape
            self._self[key] = (
                torch.cat([k, k.new_empty(b, h, tokens, d)], dim=2),
                torch.cat([v, v.new_empty(b, h, tokens, d)], dim=2),
            )
        self.length += tokens


class GreedyDecoding:
    """Greedy generation one forward at a time: ``prefill()`` over the prompt, then ``decode()`` per new token.

    A family's generation loop, written as steps so an estimate can trace the steps that decide the peak and
    ``skip(n)`` the others: ``skip`` leaves the cache, the generated ids and the next input exactly as ``n``
    decode steps would (same shapes, same storages' sizes), without running a forward. ``windows`` are the
    sliding windows of the model's attention layers: where a step's cost stops growing with the cache.
    """

    # Element dtypes the family's cache can store keys and values in, besides the compute dtype ("auto").
    STORED_DTYPES: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, inputs: object, real: bool = False, kv_cache_dtype: str = "auto") -> None:
        if kv_cache_dtype != "auto" and kv_cache_dtype not in self.STORED_DTYPES:
            raise ValueError(f"this family's KV cache holds keys and values in the compute dtype, not {kv_cache_dtype}")
        self.model = model
        self.inputs = inputs
        self.real = real  # real tensors (a measured run): a family may generate with its own library call
        self.kv_cache_dtype = kv_cache_dtype
        self.cache: object = None
        self.steps = 0  # forwards run or skipped: 1 after the prefill

    def prefill(self) -> None:
        raise NotImplementedError

    def decode(self) -> None:
        raise NotImplementedError

    def skip(self, steps: int) -> None:
        raise NotImplementedError

    def cached_tokens(self) -> int:
        """Tokens the self-attention cache has seen (the next token's position)."""
        raise NotImplementedError

    def windows(self) -> tuple[int, ...]:
        """The distinct sliding windows of the cache's layers (none: every layer keeps every token)."""
        return ()

    def run(self, new_tokens: int, on_step: Callable[[str], None]) -> object:
        """The whole generation, step by step (the reference): returns the cache."""
        on_step("prefill")
        self.prefill()
        for _ in range(new_tokens - 1):
            on_step("decode")
            self.decode()
        return self.cache
