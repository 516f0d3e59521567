"""Layerscope's summarize() against torchinfo.summary(), same architecture and input, one process.

torchinfo is handed an already-built real model and runs a real forward pass.
Layerscope reuses models it has built on meta before ("warm", as in a running
service); the "cold" column adds building the model on meta each time.

    .venv/bin/python bench/summary_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from app.engine import summarize
from app.engine.selection import META_MODELS
from bench._common import machine, markdown_table, median_seconds

CASES = [
    ("alexnet", None, 2),
    ("alexnet", None, 64),
    ("resnet", {"depth": 50}, 32),
]


def time_layerscope(name: str, config: dict | None, batch: int, repeats: int) -> tuple[float, float]:
    warm = median_seconds(lambda: summarize(name, config, batch_size=batch), repeats)

    def cold() -> None:
        META_MODELS.clear()
        summarize(name, config, batch_size=batch)

    return warm, median_seconds(cold, repeats)


def time_torchinfo(name: str, config: dict | None, batch: int, repeats: int) -> float:
    import torchinfo

    arch = models.get_architecture(name)
    size = arch.default_input(arch.parse_config(config))
    real = models.build_model(name, config).eval()
    return median_seconds(lambda: torchinfo.summary(real, input_size=(batch, *size), verbose=0, device="cpu"), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows = []
    for name, config, batch in CASES:
        warm, cold = time_layerscope(name, config, batch, args.repeats)
        theirs = time_torchinfo(name, config, batch, args.repeats)
        label = f"{name}-{config['depth']}" if config else name
        rows.append(
            [
                label,
                str(batch),
                f"{warm * 1000:,.1f} ms",
                f"{cold * 1000:,.1f} ms",
                f"{theirs * 1000:,.1f} ms",
                f"{theirs / warm:,.0f}x",
                f"{theirs / cold:,.0f}x",
            ]
        )
        print(f"  {label} batch {batch}: done", file=sys.stderr)

    warm, cold = time_layerscope("gpt", {"preset": "gpt3-6.7b"}, 1, max(3, args.repeats // 2))
    rows.append(["gpt3-6.7b", "1", f"{warm * 1000:,.1f} ms", f"{cold * 1000:,.1f} ms", "(needs 25 GiB)", "-", "-"])

    print(f"Machine: {machine()}; median of {args.repeats} runs\n")
    headers = ["Architecture", "Batch", "Layerscope", "Layerscope cold", "torchinfo", "Speed-up", "Speed-up cold"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
