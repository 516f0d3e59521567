"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

An encoder reads the source tokens; a decoder reads the target tokens shifted
right and attends to the encoder's output; a linear layer gives next-token
logits. Defaults are the paper's base model: d_model 512, 8 heads, 6 + 6 layers,
d_ff 2048, dropout 0.1, one 37,000-token BPE vocabulary shared by source and
target, its embedding matrix also used as the pre-softmax projection.

Positions are added as fixed sinusoids, for i in 0 .. d_model/2 - 1:

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Each sub-layer is wrapped as LayerNorm(x + Dropout(Sublayer(x))) (post-norm, as published).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from .attention import ATTENTION_IMPL_DESCRIPTION, AttentionImpl, MultiHeadAttention
from .kv_cache import GreedyDecoding, KVCache
from .registry import Architecture, ArchitectureConfig, InputKind, Preset, register


class TransformerConfig(ArchitectureConfig):
    d_model: int = Field(512, ge=8, le=16_384, description="Width of every token vector.")
    heads: int = Field(8, ge=1, le=256, description="Attention heads; d_model must divide by it.")
    encoder_layers: int = Field(6, ge=0, le=128, description="Encoder blocks (N in the paper).")
    decoder_layers: int = Field(6, ge=1, le=128, description="Decoder blocks.")
    d_ff: int = Field(2048, ge=1, le=131_072, description="Hidden width of each position-wise feed-forward network.")
    vocab_size: int = Field(37_000, ge=2, le=1_000_000, description="Shared source/target BPE vocabulary size.")
    share_embeddings: bool = Field(
        True, description="One matrix for source embedding, target embedding and the pre-softmax projection."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on embeddings and every sub-layer output.")
    max_len: int = Field(512, ge=1, le=65_536, description="Longest sequence the positional table covers.")
    attention: AttentionImpl = Field("sdpa", description=ATTENTION_IMPL_DESCRIPTION)


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> vectors (B, T, C), scaled by sqrt(d_model) as in the paper."""

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens):  # (B, T)
        return self.embedding(tokens) * self.scale  # (B, T, C)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sin/cos table to (B, T, C) and applies dropout; no parameters."""

    def __init__(self, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", sinusoid_table(max_len, d_model), persistent=False)  # (max_len, C)

    def forward(self, x, start: int = 0):  # (B, T, C); start: the first position (past tokens when generating)
        length = x.shape[1]
        if start + length > self.table.shape[0]:
            raise ValueError(f"sequence length {start + length} exceeds max_len {self.table.shape[0]}")
        return self.dropout(x + self.table[start : start + length])


def sinusoid_table(length: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...), i = 0 .. d/2 - 1."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # 2i = 0, 2, 4, ...
    angle = position / torch.pow(10000.0, two_i / d_model)  # (T, ceil(d/2))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied to each position alone."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)  # (B, T, d_ff)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)  # (B, T, C)

    def forward(self, x):
        return self.linear2(self.dropout(self.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each as LayerNorm(x + Dropout(f(x)))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.heads, config.dropout, impl=config.attention)
        self.dropout1 = nn.Dropout(config.dropout)
        self.norm1 = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout2 = nn.Dropout(config.dropout)
        self.norm2 = nn.LayerNorm(config.d_model)

    def forward(self, x):  # (B, S, C)
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.heads, config.dropout, impl=config.attention)
        self.dropout1 = nn.Dropout(config.dropout)
        self.norm1 = nn.LayerNorm(config.d_model)
        self.cross_attn = MultiHeadAttention(config.d_model, config.heads, config.dropout, impl=config.attention)
        self.dropout2 = nn.Dropout(config.dropout)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout3 = nn.Dropout(config.dropout)
        self.norm3 = nn.LayerNorm(config.d_model)

    def forward(self, x, memory, cache: KVCache | None = None):  # x: (B, T, C), memory: (B, S, C)
        x = self.norm1(x + self.dropout1(self.self_attn(x, causal=True, cache=cache)))  # sees positions <= t only
        # queries from x, keys/values from memory
        x = self.norm2(x + self.dropout2(self.cross_attn(x, context=memory, cache=cache)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class Transformer(nn.Module):
    """(source (B, S), target (B, T)) token ids -> (B, T, vocab_size) next-token logits."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.src_embed = TokenEmbedding(config.vocab_size, config.d_model)
        self.tgt_embed = TokenEmbedding(config.vocab_size, config.d_model)
        self.positional = SinusoidalPositionalEncoding(config.d_model, config.max_len, config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.generator = nn.Linear(config.d_model, config.vocab_size, bias=False)  # pre-softmax projection
        if config.share_embeddings:
            self.tgt_embed.embedding.weight = self.src_embed.embedding.weight
            self.generator.weight = self.src_embed.embedding.weight

    def encode(self, source):  # (B, S)
        x = self.positional(self.src_embed(source))  # (B, S, C)
        for layer in self.encoder:
            x = layer(x)
        return x  # memory: (B, S, C)

    def decode(self, target, memory, cache: KVCache | None = None):  # (B, T), (B, S, C)
        start = cache.length if cache is not None else 0
        x = self.positional(self.tgt_embed(target), start)  # (B, T, C)
        for layer in self.decoder:
            x = layer(x, memory, cache)
        if cache is not None:
            cache.advance(target.shape[1])
        return x  # (B, T, C)

    def forward(self, source, target):
        return self.generator(self.decode(target, self.encode(source)))  # (B, T, vocab_size)


class GreedyTranslation(GreedyDecoding):
    """Greedy translation with a KV cache: encode the source once, then decode from the target's first token.

    The decoder's self-attention caches grow a token per step; its cross-attention
    keys and values (of the encoder's output) are computed once and kept.
    """

    def prefill(self) -> None:
        source, target = self.inputs.args  # (B, S), (B, T): the target's first token starts the output
        self.cache = KVCache()
        self.memory = self.model.encode(source)  # (B, S, C)
        self.tokens = self.next_token = target[:, :1]
        self._step()

    def decode(self) -> None:
        self._step()

    def _step(self) -> None:
        logits = self.model.generator(self.model.decode(self.next_token, self.memory, self.cache))  # (B, 1, vocab)
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


def _params(config: TransformerConfig) -> int:
    """Closed-form parameter count, for the registry's declared figures."""
    d, f, v = config.d_model, config.d_ff, config.vocab_size
    attention = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    encoder = config.encoder_layers * (attention + ffn + 2 * 2 * d)
    decoder = config.decoder_layers * (2 * attention + ffn + 3 * 2 * d)
    embeddings = v * d if config.share_embeddings else 3 * v * d
    return embeddings + encoder + decoder


BASE = TransformerConfig()
BIG = TransformerConfig(d_model=1024, heads=16, d_ff=4096, dropout=0.3)

ARCHITECTURE = register(
    Architecture(
        name="transformer",
        title="Transformer (encoder-decoder)",
        description="Attention Is All You Need (2017): self-attention encoder, masked decoder with cross-attention.",
        config_cls=TransformerConfig,
        builder=Transformer,
        input_kind=InputKind.SEQ2SEQ,
        default_input=lambda c: (min(128, c.max_len), min(128, c.max_len)),
        attention_modules=(MultiHeadAttention,),
        context=lambda c: c.max_len,
        generate=GreedyTranslation,
        layer_notes=lambda config: (
            {
                "": "the paper reports 65M parameters for base without its exact vocabulary; this model shares one "
                "37,000-token vocabulary (the paper's English-German byte pairs) between both embeddings and the "
                "output layer: 44,138,496 parameters outside that matrix, 18,944,000 in it, 63,082,496 in all. 65M "
                "would mean a vocabulary of about 40,700 tokens",
            }
            if config == BASE
            else {}
        ),
        live_preset="tiny",
        default_params=_params(BASE),
        presets=(
            Preset("base", "Transformer base (65M in the paper; 63.1M here: see the model's note)", {}, _params(BASE)),
            Preset(
                "big",
                "Transformer big (213M in the paper)",
                {"d_model": 1024, "heads": 16, "d_ff": 4096, "dropout": 0.3},
                _params(BIG),
            ),
            Preset(
                "tiny",
                "A tiny model for experiments",
                {
                    "d_model": 128,
                    "heads": 4,
                    "encoder_layers": 2,
                    "decoder_layers": 2,
                    "d_ff": 512,
                    "vocab_size": 1000,
                    "max_len": 256,
                },
            ),
        ),
    )
)
