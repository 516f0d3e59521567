"""Multi-head attention, shared by the Transformer, GPT and ViT families.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V,   d_k = d_model / heads

Each head attends with its own slice of the projected queries, keys and values;
the heads' outputs are concatenated and mixed by an output projection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .kv_cache import KVCache

AttentionImpl = Literal["sdpa", "math"]
ATTENTION_IMPL_DESCRIPTION = (
    "sdpa: PyTorch's fused attention kernel; math: softmax(QK^T/sqrt(d_k))V written out, keeping the weights."
)


class MultiHeadAttention(nn.Module):
    """Self-attention (``context=None``) or cross-attention over ``heads`` heads.

    ``impl="sdpa"`` calls PyTorch's fused ``scaled_dot_product_attention`` (which
    never keeps the T x T weights for backward); ``impl="math"`` writes the
    formula out and keeps them. Setting ``record_weights`` makes either path
    store the softmax weights in ``last_weights`` (B, heads, T_q, T_k).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        impl: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.d_model = d_model
        self.heads = heads
        self.d_k = d_model // heads
        self.dropout = dropout
        self.impl = impl
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.record_weights = False
        self.last_weights: torch.Tensor | None = None
        self.last_kind = "self"  # self, causal or cross: how the last recorded call attended

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # (B, T, C)
        return x.view(batch, length, self.heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        batch, t_q, channels = x.shape  # (B, T_q, C)
        source = x if context is None else context  # (B, T_k, C)
        q = self._split_heads(self.q_proj(x))  # (B, H, T_q, d_k)
        if cache is not None and context is not None:  # generating: the encoder output's keys/values, once
            k, v = cache.cross(
                self, lambda: (self._split_heads(self.k_proj(source)), self._split_heads(self.v_proj(source)))
            )
        else:
            k = self._split_heads(self.k_proj(source))  # (B, H, T_k, d_k)
            v = self._split_heads(self.v_proj(source))  # (B, H, T_k, d_k)
            if cache is not None:  # generating: the past tokens' keys and values, then these
                k, v = cache.append(self, k, v)  # (B, H, T_past + T_q, d_k)
        dropout_p = self.dropout if self.training else 0.0
        t_k = k.shape[2]
        # Causal with past tokens: query i sits at position T_k - T_q + i and sees every key up to it.
        offset = t_k - t_q
        masked = causal and t_q > 1  # one new query sees all the past: no mask at all

        if self.impl == "math" or self.record_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_k)  # (B, H, T_q, T_k)
            if masked:
                future = torch.ones(t_q, t_k, dtype=torch.bool, device=x.device).triu(1 + offset)
                scores = scores.masked_fill(future, float("-inf"))
            weights = scores.softmax(dim=-1)  # each row sums to 1
            if self.record_weights:
                self.last_weights = weights.detach()
                self.last_kind = "cross" if context is not None else "causal" if causal else "self"
            weights = F.dropout(weights, p=dropout_p, training=self.training)
            y = weights @ v  # (B, H, T_q, d_k)
        elif masked and offset:
            allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=x.device).tril(offset)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=masked)

        y = y.transpose(1, 2).reshape(batch, t_q, channels)  # concat heads: (B, T_q, C)
        return self.out_proj(y)  # (B, T_q, C)
