"""Live attention maps: tokenize a text, run a model that reads text, and return every head's weights.

The weights are softmax(Q K^T / sqrt(d_k)) for each layer and head, T x T
(causally masked in decoders), from a real forward pass with the model's
current weights. Callers keep it behind the memory budget and the device gate.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from models.transformer import sinusoid_table

from ..errors import InputError
from .tokenizer import BytePairTokenizer

MAX_TOKENS = 64


class AttentionLayer(BaseModel):
    index: int = Field(0, description="Position among the model's attention layers (see layers).")
    path: str = Field(description="Module path of the attention block.")
    kind: Literal["self", "causal", "cross"] = Field(description="causal: masked self-attention of a decoder.")
    head_indices: list[int] = Field(default_factory=list, description="Which heads `heads` holds, in order.")
    heads: list[list[list[float]]] = Field(description="One T_q x T_k matrix per head shown; each row sums to 1.")


class AttentionLayerInfo(BaseModel):
    """One attention layer of the model, whether or not its weights were asked for."""

    index: int
    path: str
    heads: int


class MergeStep(BaseModel):
    left: str
    right: str
    merged: str
    rank: int = Field(description="When the merge was learned: 0 is the first, most frequent pair.")
    count: int = Field(description="Times it fired on this text.")


class AttentionReport(BaseModel):
    kind: Literal["attention"] = "attention"
    architecture: str
    config: dict[str, Any]
    tokens: list[str] = Field(description="The text as the tokenizer split it.")
    token_ids: list[int]
    truncated: bool = Field(description="True when the text was cut to the first tokens.")
    merges: list[MergeStep] = Field(description="The BPE merges that fired on this text, in learned order.")
    vocab_size: int
    layers: list[AttentionLayerInfo] = Field(
        default_factory=list, description="Every attention layer of the model; ask for others with `layers`."
    )
    attention: list[AttentionLayer] = Field(description="The weights of the layers and heads asked for.")
    positional_encoding: list[list[float]] = Field(
        description="The sinusoidal table PE(pos, i) for these positions and the model's width (T x d_model)."
    )
    weights: str = Field(description="Where the model's weights came from.")
    device: str


def encode(tokenizer: BytePairTokenizer, text: str, limit: int = MAX_TOKENS) -> tuple[list[int], Any, bool]:
    if not text.strip():
        raise InputError("the text is empty: type a sentence to see how its tokens attend to each other", "text")
    encoding = tokenizer.encode(text)
    truncated = len(encoding.ids) > limit
    return encoding.ids[:limit], encoding, truncated


BYTES_PER_WEIGHT = 8  # "0.1234," in JSON


def attention_blocks(model: nn.Module, module_types: tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    blocks = [(path, m) for path, m in model.named_modules() if isinstance(m, module_types)]
    if not blocks:
        raise InputError("this model has no attention layers", "architecture")
    return blocks


def chosen_heads(
    blocks: list[tuple[str, nn.Module]], layers: list[int] | None, heads: list[int] | None, tokens: int
) -> tuple[dict[int, list[int]], int]:
    """Each chosen layer's index -> its head indices asked for, and the bytes their weights will take."""
    chosen = list(dict.fromkeys(layers)) if layers is not None else list(range(len(blocks)))
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise InputError(f"the model has {len(blocks)} attention layers (0 to {len(blocks) - 1}); not {bad}", "layers")
    per_layer: dict[int, list[int]] = {}
    for index in chosen:
        count = int(getattr(blocks[index][1], "heads", 1))
        wanted = list(dict.fromkeys(heads)) if heads is not None else list(range(count))
        missing = [h for h in wanted if not 0 <= h < count]
        if missing:
            raise InputError(f"layer {index} has {count} heads (0 to {count - 1}); not {missing}", "heads")
        per_layer[index] = wanted
    size = sum(len(h) for h in per_layer.values()) * tokens * tokens * BYTES_PER_WEIGHT
    return per_layer, size


def attention_maps(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    module_types: tuple[type[nn.Module], ...],
    per_layer: dict[int, list[int]] | None = None,
) -> list[AttentionLayer]:
    """Run the model once with the attention modules asked for recording their weights; always switched off again.

    The modules follow ``MultiHeadAttention``'s protocol: ``record_weights`` on, then
    ``last_weights`` (B, heads, T_q, T_k) and ``last_kind`` after the call. ``per_layer``
    maps layer indices to the heads kept (default: every layer, every head).
    """
    blocks = attention_blocks(model, module_types)
    if per_layer is None:
        per_layer = {i: list(range(int(getattr(m, "heads", 1)))) for i, (_, m) in enumerate(blocks)}
    recording = [(i, blocks[i][0], blocks[i][1]) for i in per_layer]
    was_training = model.training
    try:
        for _, _, block in recording:
            block.record_weights = True
            block.last_weights = None
        model.eval()
        with torch.inference_mode():
            model(*inputs)
        layers = []
        for index, path, block in recording:
            weights = block.last_weights
            if weights is None:
                continue
            chosen = per_layer[index]
            heads = weights[0].float().cpu()[chosen]  # (heads kept, T_q, T_k)
            layers.append(
                AttentionLayer(
                    index=index,
                    path=path,
                    kind=block.last_kind,  # type: ignore[arg-type]
                    head_indices=chosen,
                    heads=[[[round(v, 4) for v in row] for row in head.tolist()] for head in heads],
                )
            )
        return layers
    finally:
        for _, _, block in recording:
            block.record_weights = False
            block.last_weights = None
        model.train(was_training)


def positional_table(length: int, d_model: int) -> list[list[float]]:
    table = sinusoid_table(length, d_model)
    return [[round(v, 4) for v in row] for row in table.tolist()]
