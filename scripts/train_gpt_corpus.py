"""Train the bundled nano GPT on the tokenizer's corpus, so the attention page has learned patterns to show.

    .venv/bin/python scripts/train_gpt_corpus.py [--steps 1500]

The corpus (models/tokenizer/corpus.txt, about 6 KB written for Layerscope) is
encoded with the bundled BPE; the model (the gpt family's "nano" preset) learns
to predict the next token of random 128-token windows. It memorises much of the
text: the point is attention maps with structure, not a language model. Weights
are saved in float16 with the config and the final loss in the metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from app.engine.live.tokenizer import CORPUS_FILE, bundled_tokenizer  # noqa: E402
from app.engine.live.weights import GPT_CONFIG, GPT_WEIGHTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    tokens = torch.tensor(bundled_tokenizer().encode(CORPUS_FILE.read_text(encoding="utf-8")).ids)
    model = models.build_model("gpt", GPT_CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.steps)
    start = time.time()
    for step in range(args.steps):
        offsets = torch.randint(0, len(tokens) - args.window - 1, (16,))
        batch = torch.stack([tokens[o : o + args.window + 1] for o in offsets])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 250 == 0:
            print(f"step {step + 1:5d}: loss {loss.item():.3f} (perplexity {math.exp(loss.item()):.1f})")
    model.eval()
    with torch.no_grad():
        windows = tokens[: (len(tokens) - 1) // args.window * args.window + 1]
        inputs = windows[:-1].view(-1, args.window)
        targets = windows[1:].view(-1, args.window)
        final = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    state = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    metadata = {
        "architecture": "gpt",
        "config": json.dumps(GPT_CONFIG),
        "description": f"nano GPT trained by Layerscope on its {len(tokens):,}-token corpus "
        f"(loss {final:.2f} on it: it has memorised much of the text)",
        "corpus_tokens": str(len(tokens)),
        "loss": f"{final:.4f}",
        "steps": str(args.steps),
        "seed": str(args.seed),
        "tied": "lm_head.weight = wte.weight",
    }
    save_file(state, GPT_WEIGHTS, metadata=metadata)
    size = GPT_WEIGHTS.stat().st_size
    print(f"loss {final:.3f} on the corpus, {time.time() - start:.0f} s, {size / 2**20:.1f} MiB -> {GPT_WEIGHTS.name}")


if __name__ == "__main__":
    main()
