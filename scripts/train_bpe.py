"""Train the bundled byte-pair tokenizer on models/tokenizer/corpus.txt (a short text written for Layerscope).

.venv/bin/python scripts/train_bpe.py [--vocab-size 512]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.live.tokenizer import CORPUS_FILE, TOKENIZER_FILE, BytePairTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()
    text = CORPUS_FILE.read_text(encoding="utf-8")
    tokenizer = BytePairTokenizer.train(text, args.vocab_size)
    tokenizer.save(TOKENIZER_FILE, corpus=CORPUS_FILE.name)
    sample = tokenizer.encode("The attention weights of a query are the softmax of its dot products.")
    print(f"{tokenizer.vocab_size} tokens ({len(tokenizer.merges)} merges) -> {TOKENIZER_FILE.name}")
    print(
        "first merges:",
        ", ".join(f"{tokenizer.token_text(a)!r}+{tokenizer.token_text(b)!r}" for a, b in tokenizer.merges[:10]),
    )
    print("sample:", sample.tokens)


if __name__ == "__main__":
    main()
