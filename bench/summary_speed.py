"""Layerscope's summarize() against torchinfo.summary(), same architecture and input, one process.

First table: zoo architectures by name. torchinfo is handed an already-built real
model and runs a real forward pass. Layerscope reuses models it has built on meta
before ("warm", as in a running service); the "cold" column adds building the
model on meta each time.

Second table: the notebook case, a module you built yourself, passed to both tools:
the same model built on the CPU (real weights) and on meta, beside torchinfo.

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
from app.engine.tracing.selection import META_MODELS
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
    print()
    print(markdown_table(*your_modules(args.repeats)))


def your_modules(repeats: int) -> tuple[list[str], list[list[str]]]:
    """A module built by the caller, on the CPU and on meta, summarized by Layerscope and by torchinfo."""
    import torchinfo
    import transformers

    def resnet50() -> torch.nn.Module:
        return models.build_model("resnet", {"depth": 50}).eval()

    def bert_base() -> torch.nn.Module:
        return transformers.BertForMaskedLM(transformers.BertConfig()).eval()

    cases = [
        (
            "ResNet-50 (CNN)",
            resnet50,
            {"input_size": (3, 224, 224), "batch_size": 32},
            {"input_size": (32, 3, 224, 224)},
        ),
        (
            "BERT-base (Hugging Face, T = 128)",
            bert_base,
            {"input_data": {"input_ids": torch.zeros(32, 128, dtype=torch.long)}},
            {"input_data": {"input_ids": torch.zeros(32, 128, dtype=torch.long)}},
        ),
    ]
    rows = []
    for label, build, ours, theirs in cases:
        on_cpu = build()
        with torch.device("meta"):
            on_meta = build()
        cpu_time = median_seconds(lambda m=on_cpu, k=ours: summarize(m, **k), repeats)
        meta_time = median_seconds(lambda m=on_meta, k=ours: summarize(m, **k), repeats)
        info_time = median_seconds(
            lambda m=on_cpu, k=theirs: torchinfo.summary(m, verbose=0, **k), max(2, repeats // 2)
        )
        rows.append(
            [
                label,
                "32",
                f"{cpu_time * 1000:,.1f} ms",
                f"{meta_time * 1000:,.1f} ms",
                f"{cpu_time / meta_time:.2f}x",
                f"{info_time * 1000:,.1f} ms",
                f"{info_time / cpu_time:,.0f}x",
            ]
        )
        print(f"  {label}: done", file=sys.stderr)
    headers = [
        "Your module",
        "Batch",
        "Built on CPU",
        "Built on meta",
        "CPU / meta",
        "torchinfo (CPU-built)",
        "Speed-up",
    ]
    return headers, rows


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
