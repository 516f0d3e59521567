"""Layerscope's memory estimate against the peak PyTorch really allocates, and torchinfo's guess.

For each configuration: the allocation-free estimate, the peak measured on a real
step on this machine's device (CPU: the profiler's allocation events; GPU:
torch.cuda.max_memory_allocated), the error, the saved-for-backward bytes both
ways, and torchinfo's "Estimated Total Size" with its error.

    .venv/bin/python bench/memory_accuracy.py [--only NAME] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from app.engine.memory import estimate_memory
from bench._common import machine, markdown_table
from bench.foreign import FOREIGN

ROOT = Path(__file__).resolve().parents[1]

# (label, architecture, config, input size or None, batch, mode, optimizer, precision). Zoo rows first, then models
# Layerscope did not write (bench/foreign.py), each in fp32 and bf16.
CONFIGS: list[tuple[str, str, dict | None, tuple | None, int, str, str, str]] = [
    ("MLP (quiz)", "mlp", None, None, 64, "train", "sgd", "fp32"),
    ("MLP (mnist)", "mlp", {"preset": "mnist"}, None, 1, "inference", "sgd", "fp32"),
    ("LeNet-5 classic", "lenet5", None, None, 64, "train", "sgd-momentum", "fp32"),
    ("LeNet-5 modern", "lenet5", {"variant": "modern"}, None, 32, "inference", "sgd", "fp32"),
    ("LeNet-5 modern", "lenet5", {"variant": "modern"}, None, 1, "inference", "sgd", "fp32"),
    ("AlexNet (original)", "alexnet", None, None, 8, "train", "adam", "fp32"),
    ("AlexNet (torchvision)", "alexnet", {"variant": "torchvision"}, None, 16, "inference", "sgd", "bf16"),
    ("VGG-11", "vgg", {"depth": 11}, None, 2, "train", "sgd-momentum", "fp32"),
    ("ResNet-18", "resnet", None, None, 16, "train", "adamw", "fp32"),
    ("ResNet-18", "resnet", None, None, 32, "inference", "sgd", "bf16"),
    ("ResNet-18", "resnet", None, None, 8, "inference", "sgd", "fp16"),
    ("ResNet-18", "resnet", None, None, 8, "train", "sgd", "bf16"),
    ("ResNet-50", "resnet", {"depth": 50}, None, 4, "train", "adam", "bf16"),
    ("ResNet-50", "resnet", {"depth": 50}, None, 1, "inference", "sgd", "bf16"),
    ("ResNet-50", "resnet", {"depth": 50}, None, 64, "inference", "sgd", "fp32"),
    ("Transformer (base)", "transformer", None, (64, 64), 8, "train", "adam", "fp32"),
    ("GPT-2 small", "gpt", None, (256,), 4, "train", "adamw", "bf16"),
    ("GPT (nano)", "gpt", {"preset": "nano"}, (256,), 64, "train", "adam", "fp32"),
    ("ViT-B/16", "vit", None, None, 2, "train", "sgd", "fp32"),
    ("ViT-B/16", "vit", None, None, 16, "inference", "sgd", "bf16"),
    *[
        (label, label, None, None, batch, mode, "adamw", precision)
        for label in FOREIGN
        for batch, mode in ((4, "train"), (8, "inference"))
        for precision in ("fp32", "bf16")
    ],
]


def torchinfo_estimate(name: str, config: dict | None, input_size: tuple | None, batch: int, precision: str) -> int:
    """torchinfo's "Estimated Total Size": input + parameters + 2 x the outputs of layers with parameters."""
    import torchinfo

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    if name in FOREIGN:
        model, data = FOREIGN[name](batch)
        model = model.to(dtype)
        data = data.to(dtype) if isinstance(data, torch.Tensor) else data
        stats = torchinfo.summary(model, input_data=data, verbose=0, device="cpu")
        return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)
    arch = models.get_architecture(name)
    parsed = arch.parse_config(config)
    size = input_size or arch.default_input(parsed)
    model = models.build_model(name, config)
    model = model.to(dtype)
    kind = arch.kind(parsed)
    if kind.value == "seq2seq":
        data = [torch.zeros(batch, size[0], dtype=torch.long), torch.zeros(batch, size[1], dtype=torch.long)]
    elif kind.value == "tokens":
        data = [torch.zeros(batch, *size, dtype=torch.long)]
    else:
        data = [torch.zeros(batch, *size, dtype=dtype)]
    stats = torchinfo.summary(model, input_data=data, verbose=0, device="cpu")
    return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)


def measure_row(index: int) -> dict:
    """One row, estimated and measured (run in its own process: no row inherits another's allocator state)."""
    _label, name, config, size, batch, mode, optimizer, precision = CONFIGS[index]
    if name in FOREIGN:
        torch.manual_seed(0)
        module, data = FOREIGN[name](batch)
        report = estimate_memory(
            module, input_data=data, mode=mode, optimizer=optimizer, precision=precision, measure=True
        )
    else:
        report = estimate_memory(
            name, config, size, batch_size=batch, mode=mode, optimizer=optimizer, precision=precision, measure=True
        )
    return {
        "estimate": report.peak_bytes,
        "measured": report.measured_peak_bytes or 0,
        "error": report.error_percent or 0.0,
        "saved_match": report.saved_activation_bytes == report.measured_saved_activation_bytes,
        "torchinfo": torchinfo_estimate(name, config, size, batch, precision),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run the rows whose label contains this text")
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)  # internal: measure one row, print JSON
    args = parser.parse_args()
    if args.row is not None:
        print(json.dumps(measure_row(args.row)))
        return
    rows = []
    worst = {"train": 0.0, "inference": 0.0}
    for index, (label, _name, _config, _size, batch, mode, optimizer, precision) in enumerate(CONFIGS):
        if args.only and args.only.lower() not in label.lower():
            continue
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, __file__, "--row", str(index)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        measured, guess = data["measured"], data["torchinfo"]
        worst[mode] = max(worst[mode], abs(data["error"]))
        rows.append(
            [
                label,
                str(batch),
                mode,
                optimizer if mode == "train" else "-",
                precision,
                f"{data['estimate'] / 2**20:,.1f}",
                f"{measured / 2**20:,.1f}",
                f"{data['error']:+.2f}%",
                ("exact" if data["saved_match"] else "DIFF") if mode == "train" else "-",
                f"{guess / 2**20:,.1f}",
                f"{(guess - measured) / measured * 100:+.0f}%",
            ]
        )
        print(f"  {label} ({mode}, batch {batch}): {time.perf_counter() - start:.1f} s", file=sys.stderr)
    headers = [
        "Model",
        "Batch",
        "Mode",
        "Optimizer",
        "Precision",
        "Estimate MiB",
        "Measured MiB",
        "Error",
        "Saved acts",
        "torchinfo MiB",
        "torchinfo error",
    ]
    print(f"Machine: {machine()}; each row in a fresh process\n")
    print(markdown_table(headers, rows))
    print(f"\nWorst |error|: training {worst['train']:.2f}%, inference {worst['inference']:.2f}%")


if __name__ == "__main__":
    main()
