"""Worked formulas for the layers of today's language models, recognized by their structure.

RMSNorm, rotary position embeddings, gated (SwiGLU/GeGLU) MLPs, grouped-query
attention and mixtures of experts come in one class per model type in
``transformers`` (``LlamaRMSNorm``, ``Qwen2RMSNorm``...). They are recognized by
what they hold (a 1-D gain and an epsilon, an ``inv_freq`` table, gate/up/down
projections, q/k/v/o projections with a head size, a router with ``top_k``), so a
model type added tomorrow, or a user's own module built the same way, gets the
same formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .base import Shape, n, recognizes


def _linear(module: nn.Module, name: str) -> nn.Linear | None:
    child = getattr(module, name, None)
    return child if isinstance(child, nn.Linear) else None


def _setting(module: nn.Module, *names: str) -> int | float | None:
    """A hyperparameter from the module, or from the config transformers keeps on it."""
    config = getattr(module, "config", None)
    for name in names:
        for owner in (module, config):
            value = getattr(owner, name, None) if owner is not None else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
    return None


# RMSNorm ---------------------------------------------------------------------------------------------------------


def is_rms_norm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.RMSNorm) or (
        "rmsnorm" in type(module).__name__.lower()
        and weight is not None
        and weight.dim() == 1
        and getattr(module, "bias", None) is None
    )


@recognizes(is_rms_norm)
def _rms_norm(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    size = m.weight.numel()
    eps = _setting(m, "variance_epsilon", "eps")
    lines = [
        f"y = x / sqrt(mean(x^2) + {eps:g}) * g over the last {n(size)} values: LayerNorm without the mean and "
        "the bias (one pass fewer, same stability in practice)",
        f"params = {n(size)} (the gain g)",
    ]
    if inp:
        positions = math.prod(inp[1:-1]) if len(inp) > 2 else 1
        lines.append(f"about 4 FLOPs per value (square, mean, scale, gain): 4*{n(positions)}*{size} per sample")
    return lines


# Rotary position embeddings ------------------------------------------------------------------------------------


def is_rotary(module: nn.Module) -> bool:
    return "inv_freq" in dict(module.named_buffers(recurse=False)) and not any(True for _ in module.parameters())


@recognizes(is_rotary)
def _rotary(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    pairs = m.inv_freq.numel()
    base = _setting(m, "rope_theta")
    kind = getattr(m, "rope_type", "default")
    lines = [
        f"rotary positions: each of the {pairs} pairs of a query's and a key's {2 * pairs} values is rotated by "
        f"position x theta_i, theta_i = {f'{base:,.0f}' if base else 'base'}^(-2i/{2 * pairs})",
        "so Q K^T depends on how far apart two tokens are, not where they are; no parameters (cos and sin "
        "tables are computed from the positions)",
    ]
    if kind != "default":
        lines.append(f"frequencies rescaled ({kind}) to stretch the context past the one trained on")
    return lines


# Gated MLPs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatedMLP:
    width: int  # d
    hidden: int  # ff
    fused: bool  # gate and up in one matrix
    activation: str


def gated_mlp(module: nn.Module) -> GatedMLP | None:
    down = _linear(module, "down_proj")
    if down is None:
        return None
    act = getattr(module, "act_fn", None) or getattr(module, "activation_fn", None)
    activation = type(act).__name__.removesuffix("Activation") if act is not None else "act"
    gate, up, fused = _linear(module, "gate_proj"), _linear(module, "up_proj"), _linear(module, "gate_up_proj")
    if gate is not None and up is not None:
        return GatedMLP(gate.in_features, gate.out_features, False, activation)
    if fused is not None:
        return GatedMLP(fused.in_features, fused.out_features // 2, True, activation)
    return None


@recognizes(lambda m: gated_mlp(m) is not None)
def _gated_mlp(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    g = gated_mlp(m)
    assert g is not None
    name = {"SiLU": "SwiGLU", "GELUTanh": "GeGLU", "GELU": "GeGLU", "NewGELU": "GeGLU"}.get(g.activation, "gated")
    lines = [
        f"{name}: down({g.activation}(gate(x)) * up(x)), {g.width} -> {n(g.hidden)} -> {g.width}"
        + (" (gate and up in one fused matrix)" if g.fused else ""),
        f"weights = 3*{g.width}*{n(g.hidden)} = {n(3 * g.width * g.hidden)}: three matrices where a plain MLP "
        "has two, for a better loss at the same compute (models shrink ff to about 8/3 d to pay for it)",
    ]
    if inp:
        positions = math.prod(inp[1:-1]) if len(inp) > 2 else 1
        lines.append(f"MACs per sample = 3*{g.width}*{n(g.hidden)} per position * {n(positions)} positions")
    return lines


# Attention with q/k/v/o projections --------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionHeads:
    width: int
    head_dim: int
    query_heads: int
    kv_heads: int
    window: int | None


def attention_heads(module: nn.Module) -> AttentionHeads | None:
    out = _linear(module, "o_proj") or _linear(module, "out_proj") or _linear(module, "dense")
    head_dim = _setting(module, "head_dim")
    if out is None or not isinstance(head_dim, int) or head_dim <= 0:
        return None
    q, k = _linear(module, "q_proj"), _linear(module, "k_proj")
    if q is not None and k is not None:
        query_heads, kv_heads = q.out_features // head_dim, k.out_features // head_dim
    else:
        query_heads = int(_setting(module, "num_attention_heads", "num_heads") or 0)
        kv_heads = int(_setting(module, "num_key_value_heads") or query_heads)
    if not query_heads:
        return None
    window = getattr(module, "sliding_window", None)
    return AttentionHeads(
        out.out_features, head_dim, query_heads, kv_heads, window if isinstance(window, int) else None
    )


@recognizes(lambda m: attention_heads(m) is not None)
def _attention(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    a = attention_heads(m)
    assert a is not None
    if a.kv_heads == a.query_heads:
        sharing = f"multi-head attention: {a.query_heads} heads of {a.head_dim}"
    elif a.kv_heads == 1:
        sharing = f"multi-query attention: {a.query_heads} query heads share one key/value head of {a.head_dim}"
    else:
        sharing = (
            f"grouped-query attention: {a.query_heads} query heads of {a.head_dim} share {a.kv_heads} key/value "
            f"heads ({a.query_heads // a.kv_heads} each)"
        )
    kv = 2 * a.kv_heads * a.head_dim
    cache = f"softmax(Q K^T / sqrt({a.head_dim})) V per head; K and V cached per token: 2*{a.kv_heads}*{a.head_dim} = "
    cache += f"{n(kv)} values per layer"
    if a.kv_heads != a.query_heads:
        cache += f" ({a.query_heads // a.kv_heads}x fewer than with a key/value head per query head)"
    lines = [sharing, cache]
    if a.window:
        lines.append(f"sliding window: each token attends to at most the {n(a.window)} before it")
    if inp and len(inp) >= 2:
        t = inp[1]
        span = min(t, a.window) if a.window else t
        lines.append(
            f"scores per sample: {a.query_heads} heads x {n(t)} x {n(span if a.window else t)} = "
            f"{n(a.query_heads * t * span)}; MACs for Q K^T and weights x V = 2*{a.query_heads}*{n(t)}*{n(span)}*"
            f"{a.head_dim} = {n(2 * a.query_heads * t * span * a.head_dim)} (causal masking halves the useful part)"
        )
    return lines


# Mixture of experts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experts:
    module: nn.Module  # the experts (a fused module or a ModuleList)
    count: int
    top_k: int
    params: int  # all experts' parameters


def moe_experts(block: nn.Module) -> Experts | None:
    """A block that routes each token to ``top_k`` of its ``experts``."""
    experts = getattr(block, "experts", None)
    router = getattr(block, "gate", None) or getattr(block, "router", None)
    top_k = _setting(block, "top_k", "num_experts_per_tok")
    if top_k is None and router is not None:
        top_k = _setting(router, "top_k")
    if not isinstance(experts, nn.Module) or not isinstance(top_k, int):
        return None
    count = _setting(experts, "num_experts") or (len(experts) if isinstance(experts, nn.ModuleList) else None)
    if not isinstance(count, int) or count < top_k:
        return None
    return Experts(experts, count, top_k, sum(p.numel() for p in experts.parameters()))


@recognizes(lambda m: moe_experts(m) is not None)
def _moe(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    e = moe_experts(m)
    assert e is not None
    per = e.params // e.count
    return [
        f"mixture of experts: a router scores the {e.count} experts for each token and keeps the top {e.top_k}; "
        "their outputs are summed, weighted by the router's softmax",
        f"experts' params = {e.count} x {n(per)} = {n(e.params)}; per token only {e.top_k} run: "
        f"{e.top_k} x {n(per)} = {n(e.top_k * per)} active",
        f"FLOPs count each token through {e.top_k} experts, the configured top-k: which experts is decided at "
        "run time by the router, so each expert's load varies, not the total",
    ]


def is_router(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        isinstance(_setting(module, "top_k"), int)
        and weight is not None
        and weight.dim() == 2
        and not any(True for _ in module.children())
    )


@recognizes(is_router)
def _router(m: nn.Module, inp: Shape | None, out: Shape | None) -> list[str]:
    experts, width = m.weight.shape
    return [
        f"router: logits = W x over {experts} experts, softmax, keep the top {_setting(m, 'top_k')} per token",
        f"params = {experts}*{width} = {n(experts * width)}",
    ]


def inactive_expert_params(model: nn.Module) -> int:
    """Parameters a token does not use: each mixture's experts beyond its top-k (0 for a dense model)."""
    unused = 0
    for module in model.modules():
        experts = moe_experts(module)
        if experts is not None:
            unused += experts.params * (experts.count - experts.top_k) // experts.count
    return unused
