"""Checks that need an NVIDIA GPU: feature maps on CUDA equal the CPU's, and memory estimates match on CUDA.

    python scripts/gpu_check.py [--out gpu_check.md]

Part 1 runs AlexNet, ResNet-18 and the trained LeNet-5 on the same image on the
CPU and on cuda:0 (TF32 off) and compares every captured layer. Part 2 compares
the allocation-free estimate with torch.cuda.max_memory_allocated for a few
training and inference steps. Part 3 sizes LoRA (PEFT) and QLoRA (bitsandbytes' nf4 kernels, which run
only on a GPU) fine-tuning steps against real ones. Without a GPU it says so and exits 0.
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
from app.engine.live.activations import run_and_capture  # noqa: E402
from app.engine.live.images import decode_image, digit_input, photo_input  # noqa: E402
from app.engine.live.weights import load_into  # noqa: E402
from app.engine.memory import estimate_memory  # noqa: E402
from models.bundled import bundled_for  # noqa: E402

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
        arch = models.get_architecture(name)
        if name == "lenet5":
            from safetensors.torch import load_file

            weights = bundled_for("lenet5")
            load_into(model, load_file(str(weights.path)), weights.filename)
            meta = weights.metadata()
            x = digit_input(image, float(meta["normalize_mean"]), float(meta["normalize_std"])).tensor
        else:
            x = photo_input(image, (3, 224, 224), arch.preprocessing).tensor
        paths = arch.feature_layers(model)
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


FINETUNE_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
}


def _qlora_peak(batch: int, tokens: int, r: int) -> int:
    """A real QLoRA step on cuda:0: bitsandbytes' Linear4bit (nf4, double quantization) for every linear layer
    but the head, PEFT's LoRA on them (adapters in bf16, as the estimate keeps them), AdamW; the second step's
    peak from torch.cuda.max_memory_allocated."""
    import bitsandbytes as bnb
    import transformers
    from peft import LoraConfig, inject_adapter_in_model

    config = transformers.AutoConfig.for_model(**FINETUNE_CONFIG)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child is not head:
                quantized = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.bfloat16,
                    quant_type="nf4",
                    compress_statistics=True,
                )
                quantized.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True
                )
                setattr(parent, child_name, quantized)
    model = model.cuda()
    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"), model)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
        if "lora_" in name:
            param.data = param.data.to(torch.bfloat16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, FINETUNE_CONFIG["vocab_size"], (batch, tokens), device="cuda")
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def finetune_check(lines: list[str]) -> bool:
    """LoRA (PEFT, measured by the engine's own real run) and QLoRA (bitsandbytes' kernels, run above)."""
    ok = True
    lines += [
        "",
        "## Fine-tuning: LoRA and QLoRA estimates against torch.cuda.max_memory_allocated",
        "",
        "| Model | Batch x tokens | Recipe | Estimate MiB | Measured MiB | Error |",
        "|---|---|---|---|---|---|",
    ]
    config = {"hf_config": FINETUNE_CONFIG}
    for batch, tokens, r in ((4, 512, 16), (8, 1024, 64)):
        for recipe in ("lora", "qlora"):
            options = dict(input_size=(tokens,), batch_size=batch, precision="bf16", optimizer="adamw")
            adapter = {"r": r, "alpha": 2 * r}
            if recipe == "lora":
                report = estimate_memory("huggingface", config, **options, adapter=adapter, measure=True, device="cuda")
                estimate, measured = report.peak_bytes, report.measured_peak_bytes or 0
            else:
                report = estimate_memory(
                    "huggingface", config, **options, adapter=adapter, quantization={"method": "nf4"}, device="cuda"
                )
                estimate, measured = report.peak_bytes, _qlora_peak(batch, tokens, r)
            error = (estimate - measured) / measured * 100
            ok &= abs(error) <= 5
            lines.append(
                f"| Llama 8 x 1024 | {batch} x {tokens} | {recipe} r={r} all-linear | {estimate / 2**20:,.1f} | "
                f"{measured / 2**20:,.1f} | {error:+.2f}% |"
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
    finetune_ok = finetune_check(lines)
    lines += [
        "",
        f"feature maps {'match' if maps_ok else 'DIFFER'}; memory {'within 5%' if memory_ok else 'OFF'}; "
        f"fine-tuning {'within 5%' if finetune_ok else 'OFF'}; {time.time() - start:.0f} s",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    sys.exit(0 if maps_ok and memory_ok and finetune_ok else 1)


if __name__ == "__main__":
    main()
