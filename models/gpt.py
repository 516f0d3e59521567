"""GPT: a decoder-only Transformer that predicts the next token (Radford et al., 2018/2019).

Token embedding + learned position embedding, then ``layers`` pre-norm blocks

    x = x + attn(ln_1(x))     causal: position t attends to positions <= t
    x = x + mlp(ln_2(x))      Linear(C, 4C) -> GELU -> Linear(4C, C)

a final LayerNorm, and an output projection that reuses the token embedding
matrix (tied weights). The default is GPT-2 small: 124,439,808 parameters.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from .attention import ATTENTION_IMPL_DESCRIPTION, AttentionImpl, MultiHeadAttention
from .kv_cache import GreedyDecoding, KVCache
from .registry import Architecture, ArchitectureConfig, InputKind, Preset, register


class GPTConfig(ArchitectureConfig):
    vocab_size: int = Field(50_257, ge=2, le=1_000_000, description="Tokens in the vocabulary (GPT-2's BPE: 50,257).")
    context: int = Field(1024, ge=1, le=131_072, description="Longest sequence: rows of the position embedding.")
    d_model: int = Field(768, ge=8, le=32_768, description="Width of every token vector.")
    layers: int = Field(12, ge=1, le=256, description="Transformer blocks.")
    heads: int = Field(12, ge=1, le=256, description="Attention heads; d_model must divide by it.")
    d_ff: int | None = Field(
        None, ge=1, le=262_144, description="Hidden width of each MLP; empty means 4 x d_model, as in GPT-2."
    )
    bias: bool = Field(True, description="Biases in the linear layers and LayerNorms, as GPT-2 has.")
    tie_embeddings: bool = Field(True, description="Reuse the token embedding as the output projection.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on embeddings, attention and residual branches.")
    attention: AttentionImpl = Field("sdpa", description=ATTENTION_IMPL_DESCRIPTION)

    @model_validator(mode="after")
    def _heads_divide(self) -> GPTConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self

    @property
    def hidden(self) -> int:
        return self.d_ff or 4 * self.d_model


class MLP(nn.Module):
    """Position-wise feed-forward: (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.hidden, bias=config.bias)  # (B, T, 4C)
        self.gelu = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(config.hidden, config.d_model, bias=config.bias)  # (B, T, C)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.proj(self.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = MultiHeadAttention(
            config.d_model, config.heads, config.dropout, bias=config.bias, impl=config.attention
        )
        self.drop = nn.Dropout(config.dropout)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None):  # (B, T, C)
        x = x + self.drop(self.attn(self.ln_1(x), causal=True, cache=cache))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.context = config.context
        self.wte = nn.Embedding(config.vocab_size, config.d_model)  # token embedding
        self.wpe = nn.Embedding(config.context, config.d_model)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def forward(self, tokens, cache: KVCache | None = None):  # (B, T)
        length = tokens.shape[1]
        start = cache.length if cache is not None else 0  # generating: the positions after the cached ones
        if start + length > self.context:
            raise ValueError(f"sequence length {start + length} exceeds the context of {self.context}")
        positions = torch.arange(start, start + length, device=tokens.device)  # (T,)
        x = self.drop(self.wte(tokens) + self.wpe(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache)
        if cache is not None:
            cache.advance(length)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)


class GreedyGPT(GreedyDecoding):
    """Greedy decoding with a KV cache: one forward over the prompt (prefill), then one per new token."""

    def prefill(self) -> None:
        (prompt,) = self.inputs.args  # (B, T) token ids
        self.cache = KVCache()
        self.tokens = prompt
        self.next_token = prompt
        self._step()

    def decode(self) -> None:
        self._step()

    def _step(self) -> None:
        logits = self.model(self.next_token, self.cache)  # (B, T, vocab) for the prompt, then (B, 1, vocab)
        self.next_token = logits[:, -1].float().argmax(dim=-1, keepdim=True)  # (B, 1)
        self.tokens = torch.cat([self.tokens, self.next_token], dim=1)
        del logits
        self.steps += 1

    def skip(self, steps: int) -> None:
        self.cache.extend(steps)
        self.tokens = torch.cat([self.tokens, self.tokens.new_empty(self.tokens.shape[0], steps)], dim=1)
        self.steps += steps

    def cached_tokens(self) -> int:
        return self.cache.length


def gpt_params(config: GPTConfig) -> int:
    """Closed-form parameter count, for the registry's declared figures."""
    d, h, b = config.d_model, config.hidden, int(config.bias)
    norm = d + b * d
    attention = 4 * (d * d + b * d)
    mlp = d * h + b * h + h * d + b * d
    embeddings = config.vocab_size * d + config.context * d
    head = 0 if config.tie_embeddings else config.vocab_size * d
    return embeddings + config.layers * (2 * norm + attention + mlp) + norm + head


PRESETS = {
    "gpt2": ("GPT-2 small (124M)", {}),
    "gpt2-medium": ("GPT-2 medium (355M)", {"d_model": 1024, "layers": 24, "heads": 16}),
    "gpt2-large": ("GPT-2 large (774M)", {"d_model": 1280, "layers": 36, "heads": 20}),
    "gpt2-xl": ("GPT-2 XL (1.5B)", {"d_model": 1600, "layers": 48, "heads": 25}),
    "gpt3-6.7b": (
        "GPT-3 6.7B: the 7B class (d_model 4096, 32 layers, 32 heads, context 2048)",
        {"d_model": 4096, "layers": 32, "heads": 32, "context": 2048},
    ),
    "nano": (
        "A tiny GPT: 4 layers, d_model 128, 512 tokens",
        {"vocab_size": 512, "context": 256, "d_model": 128, "layers": 4, "heads": 4},
    ),
}

ARCHITECTURE = register(
    Architecture(
        name="gpt",
        title="GPT (decoder-only Transformer)",
        description="Causal language model: learned positions, pre-norm blocks, tied embeddings; GPT-2 by default.",
        config_cls=GPTConfig,
        builder=GPT,
        input_kind=InputKind.TOKENS,
        default_input=lambda c: (c.context,),
        attention_modules=(MultiHeadAttention,),
        context=lambda c: c.context,
        generate=GreedyGPT,
        live_preset="nano",
        default_params=124_439_808,
        presets=tuple(
            Preset(name, title, overrides, gpt_params(GPTConfig(**overrides)))
            for name, (title, overrides) in PRESETS.items()
        ),
    )
)
