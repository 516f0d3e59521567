"""Checks that need an NVIDIA GPU: feature maps on CUDA equal the CPU's, and memory estimates match on CUDA.

    python scripts/gpu_check.py [--out gpu_check.md]

Part 1 runs AlexNet, ResNet-18 and the trained LeNet-5 on the same image on the
CPU and on cuda:0 (TF32 off) and compares every captured layer. Part 2 compares
the allocation-free estimate with torch.cuda.max_memory_allocated for a few
training and inference steps. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from app.engine.live.activations import default_layers, run_and_capture  # noqa: E402
from app.engine.live.images import decode_image, digit_input, imagenet_input  # noqa: E402
from app.engine.live.weights import BUNDLED, load_into  # noqa: E402
from app.engine.memory import estimate_memory  # noqa: E402

MEMORY_CASES = [
    ("resnet", {"depth": 18}, None, 32, "train", "adam", "fp32"),
    ("resnet", {"depth": 50}, None, 16, "train", "sgd-momentum", "amp-bf16"),
    ("alexnet", None, None, 64, "train", "adamw", "fp32"),
    ("vgg", {"depth": 16}, None, 8, "inference", "adam", "fp32"),
    ("gpt", {"preset": "gpt2"}, (512,), 4, "train", "adamw", "bf16"),
    ("vit", None, None, 16, "train", "adam", "amp-bf16"),
    ("transformer", None, (128, 128), 16, "train", "adam", "fp32"),
]


def feature_map_check(lines: list[str]) -> bool:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    image = decode_image((ROOT / "static" / "samples" / "cat.jpg").read_bytes(), 50_000_000)
    ok = True
    lines += [
        "## Feature maps: cuda:0 against the CPU",
        "",
        "| Model | Layer | Shape | Max abs diff | Max |value| |",
        "|---|---|---|---|---|",
    ]
    for name, config in (("alexnet", None), ("resnet", {"depth": 18}), ("lenet5", {"variant": "modern"})):
        torch.manual_seed(0)
        model = models.build_model(name, config).eval()
        if name == "lenet5":
            load_into(model, BUNDLED["lenet5"].state_dict(), "lenet5_digits.safetensors")
            meta = BUNDLED["lenet5"].metadata()
            x = digit_input(image, float(meta["normalize_mean"]), float(meta["normalize_std"])).tensor
        else:
            x = imagenet_input(image, (224, 224)).tensor
        paths = default_layers(model)
        cpu = run_and_capture(model, (x,), paths).outputs
        gpu = run_and_capture(model.to("cuda"), (x.to("cuda"),), paths).outputs
        for path in paths:
            a, b = cpu[path].float(), gpu[path].float().cpu()
            diff = (a - b).abs().max().item()
            scale = a.abs().max().item()
            good = torch.allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, scale))
            ok &= good
            lines.append(f"| {name} | {path} | {tuple(a.shape)} | {diff:.2e}{'' if good else ' FAIL'} | {scale:.3g} |")
    return ok


def memory_check(lines: list[str]) -> bool:
    ok = True
    lines += [
        "",
        "## Memory: estimate against torch.cuda.max_memory_allocated",
        "",
        "| Model | Batch | Mode | Optimizer | Precision | Estimate MiB | Measured MiB | Error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, config, size, batch, mode, optimizer, precision in MEMORY_CASES:
        report = estimate_memory(
            name,
            config,
            size,
            batch_size=batch,
            mode=mode,
            optimizer=optimizer,
            precision=precision,
            measure=True,
            device="cuda",
        )
        error = report.error_percent or 0.0
        ok &= abs(error) <= 5
        lines.append(
            f"| {name} {config or ''} | {batch} | {mode} | {optimizer if mode == 'train' else '-'} | {precision} | "
            f"{report.peak_bytes / 2**20:,.1f} | {report.measured_peak_bytes / 2**20:,.1f} | {error:+.2f}% |"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="gpu_check.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return
    start = time.time()
    lines = [f"# GPU check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", ""]
    maps_ok = feature_map_check(lines)
    memory_ok = memory_check(lines)
    lines += [
        "",
        f"feature maps {'match' if maps_ok else 'DIFFER'}; memory {'within 5%' if memory_ok else 'OFF'}; "
        f"{time.time() - start:.0f} s",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    sys.exit(0 if maps_ok and memory_ok else 1)


if __name__ == "__main__":
    main()
