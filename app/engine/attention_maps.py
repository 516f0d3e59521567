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

from .errors import InputError
from .tokenizer import BytePairTokenizer

MAX_TOKENS = 64


class AttentionLayer(BaseModel):
    path: str = Field(description="Module path of the attention block.")
    kind: Literal["self", "causal", "cross"] = Field(description="causal: masked self-attention of a decoder.")
    heads: list[list[list[float]]] = Field(description="One T_q x T_k matrix per head; each row sums to 1.")


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
    attention: list[AttentionLayer]
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


def attention_maps(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], module_types: tuple[type[nn.Module], ...]
) -> list[AttentionLayer]:
    """Run the model once with every attention module recording its weights; always switched off again.

    The modules follow ``MultiHeadAttention``'s protocol: ``record_weights`` on, then
    ``last_weights`` (B, heads, T_q, T_k) and ``last_kind`` after the call.
    """
    blocks = [(path, m) for path, m in model.named_modules() if isinstance(m, module_types)]
    if not blocks:
        raise InputError("this model has no attention layers", "architecture")
    was_training = model.training
    try:
        for _, block in blocks:
            block.record_weights = True
            block.last_weights = None
        model.eval()
        with torch.inference_mode():
            model(*inputs)
        layers = []
        for path, block in blocks:
            weights = block.last_weights
            if weights is None:
                continue
            heads = weights[0].float().cpu()  # (H, T_q, T_k)
            layers.append(
                AttentionLayer(
                    path=path,
                    kind=block.last_kind,  # type: ignore[arg-type]
                    heads=[[[round(v, 4) for v in row] for row in head.tolist()] for head in heads],
                )
            )
        return layers
    finally:
        for _, block in blocks:
            block.record_weights = False
            block.last_weights = None
        model.train(was_training)


def positional_table(length: int, d_model: int) -> list[list[float]]:
    table = sinusoid_table(length, d_model)
    return [[round(v, 4) for v in row] for row in table.tolist()]
