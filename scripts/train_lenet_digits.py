"""Train the bundled LeNet-5 on scikit-learn's handwritten digits (offline: the data ships with scikit-learn).

    .venv/bin/python scripts/train_lenet_digits.py [--epochs 60]

The 1,797 8 x 8 digits are split 80/20 (stratified, seed 0); images are upscaled
to 32 x 32 as the app does for drawn digits, and lightly shifted, rotated and
scaled during training so that hand-drawn digits look familiar. Writes
models/weights/lenet5_digits.safetensors with the config, the normalisation and
the held-out accuracy in its metadata.
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
from app.engine.live.images import digits_to_input  # noqa: E402
from app.engine.live.weights import DIGITS_CONFIG, DIGITS_WEIGHTS, load_digits_split  # noqa: E402


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift (+-3 px), rotation (+-12 degrees) and scale (0.85-1.1) of (N, 1, 32, 32)."""
    n = batch.shape[0]
    angle = (torch.rand(n, generator=generator) - 0.5) * 2 * math.radians(12)
    scale = 0.85 + torch.rand(n, generator=generator) * 0.25
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 2 * (3 / 16)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    background = batch.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(batch - background, grid, align_corners=False, padding_mode="zeros") + background


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = load_digits_split()
    raw = torch.as_tensor(x_train).reshape(-1, 8, 8) / 16.0
    big = F.interpolate(raw[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    mean, std = float(big.mean()), float(big.std())
    inputs = digits_to_input(x_train, mean, std)
    test_inputs = digits_to_input(x_test, mean, std)
    labels = torch.as_tensor(y_train)
    test_labels = torch.as_tensor(y_test)

    model = models.build_model("lenet5", DIGITS_CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for i in range(0, len(order), 64):
            index = order[i : i + 64]
            loss = F.cross_entropy(model(augment(inputs[index], generator)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        if (epoch + 1) % 10 == 0:
            model.eval()
            with torch.no_grad():
                accuracy = (model(test_inputs).argmax(1) == test_labels).float().mean().item()
            print(f"epoch {epoch + 1:3d}: loss {loss.item():.4f}, held-out accuracy {accuracy:.4f}")

    model.eval()
    with torch.no_grad():
        correct = int((model(test_inputs).argmax(1) == test_labels).sum())
    metadata = {
        "architecture": "lenet5",
        "config": json.dumps(DIGITS_CONFIG),
        "dataset": "scikit-learn load_digits, 8x8 upscaled to 32x32",
        "split": "train_test_split(test_size=0.2, stratify=y, random_state=0)",
        "normalize_mean": f"{mean:.6f}",
        "normalize_std": f"{std:.6f}",
        "test_correct": str(correct),
        "test_total": str(len(test_labels)),
        "test_accuracy": f"{correct / len(test_labels):.4f}",
        "description": f"LeNet-5 ({DIGITS_CONFIG['variant']}) trained by Layerscope on scikit-learn's digits: "
        f"{correct}/{len(test_labels)} held-out digits right ({correct / len(test_labels):.1%})",
        "epochs": str(args.epochs),
        "seed": str(args.seed),
    }
    DIGITS_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, DIGITS_WEIGHTS, metadata=metadata)
    print(
        f"held-out accuracy {correct}/{len(test_labels)} = {correct / len(test_labels):.2%} "
        f"in {time.time() - start:.0f} s -> {DIGITS_WEIGHTS.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
