"""Models Layerscope did not write, built from config objects (never from the network): the any-model corpus.

Each entry builds a small real model and the arguments of its forward; tests loop over every entry.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

warnings.filterwarnings("ignore", message=".*token_id must be `None`.*")


@dataclass(frozen=True)
class Foreign:
    """A model to build, and its forward's arguments (a tensor, a tuple, or a dict of keyword arguments)."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Any]


class Pair(nn.Module):
    """Returns a pair (x, y): the case that used to be taken for a pre-hook's (args, kwargs)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        y = self.linear(x)
        return y, y.sum(-1)


class Dict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        a, b = self.pair(x)
        return {"logits": self.head(a), "total": b, "nothing": None}


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    cache: list | None = None


class DataclassOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Dict()

    def forward(self, x, scale: float = 1.0):
        return Output(self.inner(x)["logits"] * scale, cache=[None, ()])


class Attention(nn.Module):
    """nn.MultiheadAttention asked for its weights: returns (output, weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=True)


def _hf(config_cls: str, model_cls: str, **values: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_cls)(**values)
        return getattr(transformers, model_cls)(config).eval()

    return build


def _tokens(*shape: int, vocab: int = 100) -> Callable[[], torch.Tensor]:
    return lambda: torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(1))


SMALL_DECODER = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128, vocab_size=100)

CORPUS: list[Foreign] = [
    Foreign("gru", lambda: nn.GRU(16, 32, num_layers=2, batch_first=True), lambda: torch.randn(2, 10, 16)),
    Foreign("lstm", lambda: nn.LSTM(16, 32, num_layers=2, batch_first=True), lambda: torch.randn(2, 10, 16)),
    Foreign("multihead-attention", Attention, lambda: torch.randn(2, 10, 16)),
    Foreign(
        "transformer-encoder",
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2).eval(),
        lambda: torch.randn(2, 10, 32),
    ),
    Foreign("pair", Pair, lambda: torch.randn(3, 8)),
    Foreign("dict", Dict, lambda: torch.randn(3, 8)),
    Foreign("dataclass", DataclassOut, lambda: {"x": torch.randn(3, 8), "scale": 2.0}),
    Foreign(
        "gpt2",
        _hf(
            "GPT2Config", "GPT2LMHeadModel", n_layer=2, n_embd=64, n_head=4, vocab_size=100, attn_implementation="eager"
        ),
        _tokens(2, 16),
    ),
    Foreign(
        "bert",
        _hf(
            "BertConfig",
            "BertForMaskedLM",
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            intermediate_size=128,
            vocab_size=100,
            attn_implementation="eager",
        ),
        lambda: {"input_ids": _tokens(2, 16)(), "attention_mask": torch.ones(2, 16, dtype=torch.long)},
    ),
    Foreign(
        "llama-gqa", _hf("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2, **SMALL_DECODER), _tokens(2, 16)
    ),
    Foreign(
        "mixtral-moe",
        _hf(
            "MixtralConfig",
            "MixtralForCausalLM",
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            **SMALL_DECODER,
        ),
        _tokens(2, 16),
    ),
    Foreign(
        "t5",
        _hf(
            "T5Config",
            "T5ForConditionalGeneration",
            num_layers=2,
            d_model=64,
            d_ff=128,
            num_heads=4,
            d_kv=16,
            vocab_size=100,
        ),
        lambda: {"input_ids": _tokens(2, 12)(), "decoder_input_ids": _tokens(2, 5)()},
    ),
]
