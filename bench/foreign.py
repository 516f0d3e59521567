"""Models Layerscope did not write, for the benchmarks: torch.nn blocks, Hugging Face models from config
objects (never from the network), and a ConvNeXt-style depthwise network.

Each builder returns ``(module, input_data)``: a real model on the CPU and the arguments of its forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

warnings.filterwarnings("ignore", message=".*token_id must be `None`.*")

Built = tuple[nn.Module, Any]


def _tokens(batch: int, length: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def gru(batch: int) -> Built:
    return nn.GRU(256, 512, num_layers=2, batch_first=True), torch.randn(batch, 128, 256)


def lstm(batch: int) -> Built:
    return nn.LSTM(256, 512, num_layers=2, batch_first=True), torch.randn(batch, 128, 256)


def transformer_encoder(batch: int) -> Built:
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    return nn.TransformerEncoder(layer, 6, enable_nested_tensor=False), torch.randn(batch, 128, 512)


def _hf(config_cls: str, model_cls: str, **values: Any) -> nn.Module:
    import transformers

    config = getattr(transformers, config_cls)(**values)
    return getattr(transformers, model_cls)(config)


def llama_gqa(batch: int) -> Built:
    """A Llama-style decoder with grouped-query attention (8 query heads share 2 key/value heads)."""
    model = _hf(
        "LlamaConfig",
        "LlamaForCausalLM",
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=8000,
        max_position_embeddings=1024,
    )
    return model, {"input_ids": _tokens(batch, 256, 8000)}


def gpt2(batch: int) -> Built:
    model = _hf("GPT2Config", "GPT2LMHeadModel", n_layer=6, n_embd=512, n_head=8, vocab_size=8000, n_positions=512)
    return model, {"input_ids": _tokens(batch, 256, 8000)}


def bert(batch: int) -> Built:
    model = _hf(
        "BertConfig",
        "BertForMaskedLM",
        num_hidden_layers=6,
        hidden_size=512,
        num_attention_heads=8,
        intermediate_size=2048,
        vocab_size=8000,
    )
    return model, {"input_ids": _tokens(batch, 256, 8000), "attention_mask": torch.ones(batch, 256, dtype=torch.long)}


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, LayerNorm over channels, pointwise MLP (4x), a learned scale, a residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):  # (B, C, H, W)
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtSmall(nn.Module):
    """A two-stage ConvNeXt: a 4x4 patchify stem, depthwise blocks, a downsampling layer, a head."""

    def __init__(self, dims: tuple[int, int] = (64, 128), depths: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), nn.GroupNorm(1, dims[0]))
        self.stage1 = nn.Sequential(*(ConvNeXtBlock(dims[0]) for _ in range(depths[0])))
        self.down = nn.Sequential(nn.GroupNorm(1, dims[0]), nn.Conv2d(dims[0], dims[1], 2, stride=2))
        self.stage2 = nn.Sequential(*(ConvNeXtBlock(dims[1]) for _ in range(depths[1])))
        self.head = nn.Linear(dims[1], 100)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(x.mean((2, 3)))


def convnext(batch: int) -> Built:
    return ConvNeXtSmall(), torch.randn(batch, 3, 128, 128)


FOREIGN: dict[str, Callable[[int], Built]] = {
    "GRU (torch.nn)": gru,
    "LSTM (torch.nn)": lstm,
    "TransformerEncoder (torch.nn)": transformer_encoder,
    "Llama GQA (Hugging Face)": llama_gqa,
    "GPT-2 (Hugging Face)": gpt2,
    "BERT (Hugging Face)": bert,
    "ConvNeXt-style (depthwise 7x7)": convnext,
}
