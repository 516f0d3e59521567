"""Byte-pair encoding, as the course describes it.

Start from single bytes; count every pair of neighbouring tokens in the corpus;
merge the most frequent pair into a new token; repeat until the vocabulary has
the wanted size. Text is first split into words (a leading space stays with
its word, as in GPT-2), and merges never cross a word boundary. Encoding
applies the learned merges in the order they were learned.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TOKENIZER_FILE = ROOT / "models" / "tokenizer" / "bpe.json"
CORPUS_FILE = ROOT / "models" / "tokenizer" / "corpus.txt"
WORD = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+")


def split_words(text: str) -> list[str]:
    """Words with their leading space, numbers, punctuation runs, and whitespace."""
    return WORD.findall(text)


@dataclass
class Merge:
    """One merge as applied to a text: which pair, into what, at which rank."""

    left: str
    right: str
    merged: str
    rank: int
    count: int = 0  # times it fired on this text


@dataclass
class Encoding:
    ids: list[int]
    tokens: list[str]
    merges: list[Merge] = field(default_factory=list)  # in the order they were learned


class BytePairTokenizer:
    """A byte-level BPE with its merges, trained by ``train`` on a corpus."""

    def __init__(self, merges: list[tuple[int, int]]) -> None:
        self.merges = merges
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        for left, right in merges:
            self.vocab.append(self.vocab[left] + self.vocab[right])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BytePairTokenizer:
        words = Counter(tuple(word.encode("utf-8")) for word in split_words(text))
        merges: list[tuple[int, int]] = []
        sequences = {word: list(word) for word in words}
        next_id = 256
        while next_id < vocab_size:
            pairs: Counter[tuple[int, int]] = Counter()
            for word, count in words.items():
                tokens = sequences[word]
                for pair in pairwise(tokens):
                    pairs[pair] += count
            if not pairs:
                break
            best = max(pairs.items(), key=lambda item: (item[1], -item[0][0], -item[0][1]))[0]
            merges.append(best)
            for word in words:
                sequences[word] = _merge(sequences[word], best, next_id)
            next_id += 1
        return cls(merges)

    def token_text(self, token_id: int) -> str:
        return self.vocab[token_id].decode("utf-8", errors="replace")

    def encode(self, text: str) -> Encoding:
        """Token ids, their text, and each merge that fired, in the order the merges were learned."""
        ids: list[int] = []
        fired: Counter[int] = Counter()
        for word in split_words(text):
            tokens = list(word.encode("utf-8"))
            while len(tokens) > 1:
                ranked = [(self.ranks.get(pair, len(self.merges)), pair) for pair in pairwise(tokens)]
                rank, pair = min(ranked)
                if rank == len(self.merges):
                    break
                fired[rank] += sum(1 for p in pairwise(tokens) if p == pair)
                tokens = _merge(tokens, pair, 256 + rank)
            ids.extend(tokens)
        merges = [
            Merge(
                left=self.token_text(self.merges[rank][0]),
                right=self.token_text(self.merges[rank][1]),
                merged=self.token_text(256 + rank),
                rank=rank,
                count=count,
            )
            for rank, count in sorted(fired.items())
        ]
        return Encoding(ids=ids, tokens=[self.token_text(i) for i in ids], merges=merges)

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def save(self, path: Path, corpus: str) -> None:
        data = {
            "kind": "byte-level BPE",
            "vocab_size": self.vocab_size,
            "corpus": corpus,
            "merges": [[a, b] for a, b in self.merges],
        }
        path.write_text(json.dumps(data, indent=0) + "\n")


def _merge(tokens: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i] == pair[0] and tokens[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


@lru_cache
def bundled_tokenizer() -> BytePairTokenizer:
    """The tokenizer trained by scripts/train_bpe.py on models/tokenizer/corpus.txt."""
    data = json.loads(TOKENIZER_FILE.read_text())
    return BytePairTokenizer([(a, b) for a, b in data["merges"]])
