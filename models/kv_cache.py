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
