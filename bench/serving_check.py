"""Serving capacity against a published vLLM log: Llama-3.1-70B-Instruct quantized w8a8 (compressed-tensors, int8
weights per channel) on one H100 80GB, max-model-len 2,048, gpu-memory-utilization 0.98.

The log (vLLM 0.5.x, neuralmagic's Meta-Llama-3.1-70B-Instruct-quantized.w8a8 model card and issue threads)
states: "Loading model weights took 67.72 GB" and "# GPU blocks: 1381". It does not state the GPU's exact
capacity as the process saw it, nor the non-torch memory (CUDA context, cuBLAS workspace) nor CUDA graphs'
share; those are the inputs assumed below (the catalog's H100 capacity, nothing outside torch), and the
difference is reported, not hidden. vLLM prints GiB as "GB".

    .venv/bin/python bench/serving_check.py
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from bench._common import machine, markdown_table  # noqa: E402

GiB = 2**30
LOG_WEIGHTS_GIB = 67.72
LOG_BLOCKS = 1381


def llama_70b_w8a8() -> dict:
    base = json.loads((Path(__file__).resolve().parents[1] / "models/hf_configs/llama-3.1-8b.json").read_text())
    return {
        "hf_config": {
            **base,
            "hidden_size": 8192,
            "intermediate_size": 28672,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "quantization_config": {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "group_0": {"weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}}
                },
            },
        }
    }


def main() -> None:
    from app.engine.sizing import serving_capacity

    started = time.perf_counter()
    report = serving_capacity(
        "huggingface",
        llama_70b_w8a8(),
        gpu="h100-80gb",
        gpu_memory_utilization=0.98,
        max_num_batched_tokens=2048,
        prompt_tokens=1024,
        output_tokens=1024,
        precision="bf16",
    )
    seconds = time.perf_counter() - started
    weights_gib = report.weight_bytes / GiB
    rows = [
        [
            "weights (GiB)",
            f"{LOG_WEIGHTS_GIB:.2f}",
            f"{weights_gib:.2f}",
            f"{(weights_gib / LOG_WEIGHTS_GIB - 1):+.2%}",
        ],
        ["KV blocks of 16", f"{LOG_BLOCKS:,}", f"{report.kv_blocks:,}", f"{(report.kv_blocks / LOG_BLOCKS - 1):+.2%}"],
        ["KV tokens", f"{LOG_BLOCKS * 16:,}", f"{report.kv_tokens:,}", ""],
    ]
    print(f"Machine: {machine()}; the estimate took {seconds:.1f} s\n")
    print(markdown_table(["figure", "vLLM log", "Layerscope", "difference"], rows))
    print(
        f"\nactivation peak of a 2,048-token prefill: {report.activation_peak_bytes / GiB:.2f} GiB; "
        f"KV bytes per token {report.kv_bytes_per_token:,}; budget {report.budget_bytes / GiB:.2f} GiB"
    )


if __name__ == "__main__":
    main()
