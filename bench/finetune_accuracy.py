"""LoRA fine-tuning estimates against real PEFT training steps on this machine's CPU.

Each row builds a small Hugging Face model for real, injects PEFT's LoRA (or DoRA) layers as
``estimate_memory(adapter=...)`` does, runs two training steps with the chosen optimizer and
reads the second step's peak from PyTorch's profiler (``measure=True``); the estimate is traced on
fake tensors. Quantized bases (QLoRA) need bitsandbytes' GPU kernels: their storage is checked
exactly by tests/app/engine/test_quantization.py, and scripts/gpu_check.py runs them where a GPU is lent.

    .venv/bin/python bench/finetune_accuracy.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from bench._common import machine, markdown_table  # noqa: E402

LLAMA = {
    "hf_config": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 2000,
        "max_position_embeddings": 1024,
    }
}
GPT2 = {
    "hf_config": {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_embd": 256,
        "n_layer": 4,
        "n_head": 8,
        "vocab_size": 2000,
        "n_positions": 1024,
    }
}
CASES = [
    ("tiny Llama", LLAMA, "fp32", {"r": 8, "target_modules": ["q_proj", "v_proj"]}),
    ("tiny Llama", LLAMA, "fp32", {"r": 16}),
    ("tiny Llama", LLAMA, "bf16", {"r": 16}),
    ("tiny Llama", LLAMA, "bf16", {"r": 64, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}),
    ("tiny Llama", LLAMA, "fp32", {"r": 16, "kind": "dora", "target_modules": ["q_proj", "v_proj"]}),
    ("tiny GPT-2", GPT2, "fp32", {"r": 8, "target_modules": ["c_attn"]}),
    ("tiny GPT-2", GPT2, "bf16", {"r": 32}),
]


def main() -> None:
    from app.engine import estimate_memory

    rows = []
    for name, config, precision, adapter in CASES:
        for optimizer in ("adamw", "sgd") if adapter.get("r") == 16 and precision == "bf16" else ("adamw",):
            report = estimate_memory(
                "huggingface",
                config,
                input_size=(256,),
                batch_size=4,
                precision=precision,
                optimizer=optimizer,
                adapter=adapter,
                measure=True,
            )
            targets = adapter.get("target_modules", "all-linear")
            rows.append(
                [
                    name,
                    precision,
                    f"{adapter.get('kind', 'lora')} r={adapter['r']}",
                    targets if isinstance(targets, str) else ",".join(targets),
                    optimizer,
                    f"{report.trainable_parameters:,}",
                    f"{report.peak_bytes / 2**20:,.2f}",
                    f"{report.measured_peak_bytes / 2**20:,.2f}",
                    f"{report.error_percent:+.2f}%",
                ]
            )
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"Machine: {machine()}; batch 4 x 256 tokens, the second training step's peak\n")
    headers = ["model", "precision", "adapter", "targets", "optimizer", "trainable", "estimate MiB", "measured MiB"]
    print(markdown_table([*headers, "error"], rows))


if __name__ == "__main__":
    main()
