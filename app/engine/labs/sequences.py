"""Labs on text models: byte-pair encoding, attention, the positional encoding."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool, StrictInt, field_validator

from ..errors import InputError
from .base import F64, Erratum, LabInput, LabStep, Matrix, _list, _matrix

# ---------------------------------------------------------------- byte-pair encoding


class BpeInput(LabInput):
    words: dict[str, StrictInt] = Field(
        default_factory=lambda: {"low": 5, "lower": 2, "newest": 6, "widest": 3},
        description="Word -> count in the corpus.",
    )
    merges: StrictInt = Field(10, ge=0, le=200)
    tokenize: str = Field("lowest", max_length=64, description="A new word to split with the learned merges.")

    @field_validator("words")
    @classmethod
    def _bounded(cls, words: dict[str, int]) -> dict[str, int]:
        if not words or len(words) > 200 or any(not w or len(w) > 64 or c < 1 for w, c in words.items()):
            raise ValueError("1 to 200 words of 1 to 64 characters, each with a count of 1 or more")
        return words


def bpe_lab(body: BpeInput) -> dict[str, Any]:
    corpus = {(*word, "</w>"): count for word, count in body.words.items()}
    vocabulary = sorted({symbol for word in corpus for symbol in word})
    history, learned = [], []
    for step in range(body.merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in corpus.items():
            for a, b in itertools.pairwise(word):
                pairs[(a, b)] += count
        if not pairs:
            break
        best, count = max(pairs.items(), key=lambda item: item[1])  # ties: the pair seen first in the corpus
        learned.append(best)
        corpus = {_merge(word, best): c for word, c in corpus.items()}
        vocabulary.append(best[0] + best[1])
        history.append(
            {
                "step": step + 1,
                "top_pairs": [{"pair": list(p), "count": c} for p, c in pairs.most_common(5)],
                "merge": list(best),
                "count": count,
                "corpus": {" ".join(w): c for w, c in corpus.items()},
                "vocabulary_size": len(vocabulary),
            }
        )
    word = (*body.tokenize, "</w>")
    for pair in learned:
        word = _merge(word, pair)
    return {
        "merges": [list(p) for p in learned],
        "history": history,
        "vocabulary": vocabulary,
        "tokens": list(word),
        "steps": [
            LabStep(
                label="start",
                formula="every character is a token; </w> marks a word's end",
                value=sorted({c for w in body.words for c in w}),
            ),
            LabStep(
                label="each step",
                formula="count adjacent pairs (weighted by word counts), merge the most frequent",
                value=len(history),
            ),
            LabStep(label=f"tokenize {body.tokenize!r}", formula="apply the learned merges in order", value=list(word)),
        ],
        "notes": [
            "Ties go to the pair seen first, reading the words in the order given (as in Sennrich et al.'s "
            "reference code), so every run gives the same merges."
        ],
    }


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


# ---------------------------------------------------------------- attention


class AttentionInput(LabInput):
    q: Matrix = Field(
        default_factory=lambda: [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], description="Queries, by rows."
    )
    k: Matrix = Field(
        default_factory=lambda: [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], description="Keys, by rows."
    )
    v: Matrix = Field(
        default_factory=lambda: [[1, 2, 0, 0], [0, 1, 0, 3], [2, 0, 1, 0], [0, 0, 2, 1]], description="Values, by rows."
    )
    causal: StrictBool = Field(False, description="Each query sees only the keys up to its own position.")
    alignment: Literal["end", "start"] = Field(
        "end",
        description="With more keys than queries, where the queries sit among the keys: end (the last query sees "
        "every key, as when a model generates with a KV cache) or start (query i sees keys 0..i, as "
        "F.scaled_dot_product_attention(is_causal=True) aligns them). The same when there are as many of each.",
    )
    heads: StrictInt = Field(1, ge=1, le=8, description="Split the width into this many heads.")


def attention_lab(body: AttentionInput) -> dict[str, Any]:
    q, k, v = _matrix(body.q, "q"), _matrix(body.k, "k"), _matrix(body.v, "v")
    if q.shape[1] != k.shape[1] or k.shape[0] != v.shape[0]:
        raise InputError(
            f"q {list(q.shape)} and k {list(k.shape)} need one width; k and v {list(v.shape)} one length", "k"
        )
    d, h = q.shape[1], body.heads
    for name, width in (("q and k", d), ("v", v.shape[1])):
        if width % h:
            raise InputError(f"the width of {name}, {width}, does not divide into {h} heads", "heads")
    t_q, t_k = q.shape[0], k.shape[0]
    end = body.alignment == "end"
    if body.causal and end and t_q > t_k:
        blind = t_q - t_k
        raise InputError(
            f"with {t_q} queries and {t_k} keys aligned at the end, the first {blind} "
            f"quer{'y sees' if blind == 1 else 'ies see'} no key (a softmax over nothing): give at least as many keys "
            "as queries, or align them at the start",
            "causal",
        )
    split = lambda m: m.view(m.shape[0], h, -1).transpose(0, 1)  # noqa: E731  (T, d) -> (heads, T, d/h)
    qh, kh, vh = split(q), split(k), split(v)
    d_k = d // h
    scores = qh @ kh.transpose(-2, -1)
    scaled = scores / math.sqrt(d_k)
    allowed = (
        torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q if end else 0)
        if body.causal
        else torch.ones(t_q, t_k, dtype=torch.bool)
    )
    masked = scaled.masked_fill(~allowed, -math.inf)
    weights = masked.softmax(-1)
    output = weights @ vh
    reference = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed)
    check = (
        f"output equals torch.nn.functional.scaled_dot_product_attention with this mask (largest difference "
        f"{float((reference - output).abs().max()):.1e})"
    )
    notes = [
        f"{t_q} queries, {t_k} keys: "
        + ("cross-attention, keys and values from another sequence." if t_q != t_k else "self-attention.")
    ]
    if body.causal:
        builtin = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
        same = torch.allclose(builtin, output)
        check += (
            f"; F.scaled_dot_product_attention(is_causal=True), which aligns the queries at the start, gives "
            f"{'the same output' if same else 'another output'}"
        )
        if t_q != t_k:
            notes.append(
                f"With {t_q} queries and {t_k} keys the causal mask depends on where the queries sit: aligned at the "
                f"end (query i sees keys up to {t_k - t_q} + i, as with a KV cache) or at the start (keys up to i, "
                f"PyTorch's is_causal=True). This lab uses the {body.alignment}."
            )
    return {
        "scores": _list(scores),
        "scaled": _list(scaled),
        "weights": _list(weights),
        "output": _list(output.transpose(0, 1).reshape(t_q, -1)),
        "kind": "self" if t_q == t_k else "cross",
        "steps": [
            LabStep(
                label="scores", formula=f"Q K^T: ({t_q} x {d_k}) (x) ({d_k} x {t_k}) per head", value=_list(scores)
            ),
            LabStep(label="scaled", formula=f"Q K^T / sqrt(d_k), d_k = {d}/{h} = {d_k}", value=_list(scaled)),
            LabStep(
                label="mask",
                formula=(
                    "causal: -inf above the diagonal, aligned at the end (the last query sees every key)"
                    if end
                    else "causal: -inf above the diagonal, aligned at the start (query i sees keys 0..i)"
                )
                if body.causal
                else "none",
                value=_list(allowed.to(F64)),
            ),
            LabStep(label="weights", formula="softmax over each row (each row sums to 1)", value=_list(weights)),
            LabStep(
                label="output",
                formula="weights V, heads concatenated",
                value=_list(output.transpose(0, 1).reshape(t_q, -1)),
            ),
        ],
        "checks": [check],
        "notes": notes,
    }


# ---------------------------------------------------------------- positional encoding


class PositionalInput(LabInput):
    positions: StrictInt = Field(10, ge=1, le=64, description="Positions 0 .. positions-1.")
    d_model: StrictInt = Field(16, ge=2, le=64)
    shift: StrictInt = Field(3, ge=0, le=64, description="k in PE(pos + k) = M_k PE(pos).")

    @field_validator("d_model")
    @classmethod
    def _even(cls, d: int) -> int:
        if d % 2:
            raise ValueError("d_model is even: sin and cos come in pairs")
        return d


def positional_encoding_lab(body: PositionalInput) -> dict[str, Any]:
    from models.transformer import sinusoid_table

    d = body.d_model
    frequencies = 1 / torch.pow(torch.tensor(10000.0, dtype=F64), torch.arange(0, d, 2, dtype=F64) / d)
    angles = torch.arange(body.positions + body.shift, dtype=F64)[:, None] * frequencies  # (T, d/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # PE(pos, 2i), PE(pos, 2i+1)
    zoo = float((sinusoid_table(body.positions + body.shift, d).to(F64) - table).abs().max())
    m = torch.zeros(d, d, dtype=F64)  # block-diagonal rotation by k * omega_i
    for i, w in enumerate(frequencies):
        c, s = math.cos(body.shift * w), math.sin(body.shift * w)
        m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=F64)
    shifted = table[: body.positions] @ m.T
    error = float((shifted - table[body.shift : body.shift + body.positions]).abs().max())
    return {
        "table": _list(table[: body.positions], 5),
        "frequencies": _list(frequencies, 8),
        "m_k": _list(m, 6),
        "max_error": error,
        "steps": [
            LabStep(label="PE(pos, 2i)", formula="sin(pos / 10000^(2i/d)), i = 0 .. d/2 - 1", value=None),
            LabStep(label="PE(pos, 2i+1)", formula="cos(pos / 10000^(2i/d))", value=None),
            LabStep(label="frequencies", formula="omega_i = 1 / 10000^(2i/d)", value=_list(frequencies, 8)),
            LabStep(
                label=f"M_{body.shift}",
                formula="block-diagonal: [[cos k omega_i, sin k omega_i], [-sin k omega_i, cos k omega_i]] on each "
                "(sin, cos) pair",
                value=None,
            ),
            LabStep(
                label=f"PE(pos + {body.shift}) - M_{body.shift} PE(pos)",
                formula="largest absolute difference over the table",
                value=error,
            ),
        ],
        "checks": [
            f"the zoo's transformer table (models.transformer.sinusoid_table, float32) differs by at most {zoo:.1e}"
        ],
        "errata": [
            Erratum(
                section="8.3 positional encoding",
                notes_say="i in {1, ..., d/2}",
                correct="i in {0, ..., d/2 - 1}",
                convention=False,
            )
        ],
    }
