"""A paper check, not a pass/fail test: Layerscope's estimates beside the peaks PEFT publishes for T0_3B (full
fine-tuning and LoRA) and torchtune for LoRA and QLoRA on Llama-2-7B, with the settings reproduced and what the
publications leave unstated.

PEFT's README gives the peak of its seq2seq LoRA example on one A100 (max_memory_allocated, an allocated peak as
Layerscope's); the tweets' padded length is not stated, so the estimate is given at two lengths.

torchtune's README ("Finetuning resource requirements") gives the peak per GPU of its single-device recipes as
``torch.cuda.max_memory_reserved()`` (GiB), measured on A100s with their memory capped. Its configs
(recipes/configs/llama2/7B_lora_single_device.yaml and 7B_qlora_single_device.yaml) set: bf16 weights and
compute, batch 2, activation checkpointing, AdamW on the adapter, LoRA rank 8, alpha 16; LoRA on q_proj and
v_proj; QLoRA on q, k, v and the output projection and the MLP, the base in NF4. The sequence length is the
longest alpaca-cleaned batch (the configs set no maximum and pad each batch to its longest sample): not stated,
so the estimate is given at several lengths.

Why the figures cannot be equal: a reserved peak adds the caching allocator's rounding and fragmentation to the
allocated peak Layerscope estimates (typically several percent); torchtune runs its own Llama modules (and for
QLoRA torchao's NF4 tensors, 64-weight blocks, scales quantized in blocks of 256) where Layerscope traces the
Hugging Face model with bitsandbytes' NF4 layout; the LoRA recipe's loss is a plain cross-entropy over the whole
vocabulary, the QLoRA recipe's a chunked one that never holds all the float32 logits at once.

    .venv/bin/python bench/finetune_papers.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from bench._common import machine, markdown_table  # noqa: E402

# meta-llama/Llama-2-7b-hf's config.json (6,738,415,616 parameters).
LLAMA2_7B = {
    "hf_config": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    }
}
# bigscience/T0_3B's config.json (T5 v1.1 XL, LM-adapted).
T0_3B = {
    "hf_config": {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "d_model": 2048,
        "d_ff": 5120,
        "d_kv": 64,
        "num_heads": 32,
        "num_layers": 24,
        "num_decoder_layers": 24,
        "vocab_size": 32128,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "is_encoder_decoder": True,
    }
}
LENGTHS = (256, 512, 1024, 2048)
TWEET_LENGTHS = (64, 128)  # tweets padded to the batch's longest: not stated
PUBLISHED = (  # (recipe, published GiB, step options)
    (
        "torchtune 7B_lora_single_device",
        17.18,
        {
            "adapter": {"kind": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        },
    ),
    (
        "torchtune 7B_qlora_single_device",
        9.29,
        {
            "adapter": {
                "kind": "lora",
                "r": 8,
                "alpha": 16,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            },
            "quantization": {"method": "nf4", "double_quant": True, "block_size": 64},
        },
    ),
)


# PEFT's README ("High performance on consumer hardware"): bigscience/T0_3B on ought/raft twitter_complaints, one
# A100 80GB, from examples/conditional_generation (batch 8, AdamW, fp32; LoRA r=8, alpha 32, dropout 0.1 on T5's q
# and v); "Total Peak Memory consumed during the train" is torch.cuda.max_memory_allocated() in MiB / 1,024.
PEFT = (
    ("PEFT T0_3B full fine-tuning", 47.14, {}),
    ("PEFT T0_3B LoRA", 14.4, {"adapter": {"kind": "lora", "r": 8, "alpha": 32, "target_modules": ["q", "v"],
                                           "dropout": 0.1}}),
)  # fmt: skip
LABEL_TOKENS = 4  # labels padded to the longest class name ("no complaint" and the end token)
# transformers 5 always ties T5's output head to its embedding (T5Config sets tie_word_embeddings=True): the model
# built here has 2,783,959,040 parameters, the T0_3B checkpoint 2,849,757,184 (its own head, 65,798,144 more).
UNTIED_HEAD = 32128 * 2048


GIB = 2**30


def _row(recipe: str, shape: str, published: str, config: dict, **options) -> list[str]:
    """One estimate beside its published figure, as a table row (printed as it comes)."""
    from app.engine import estimate_memory

    start = time.perf_counter()
    report = estimate_memory("huggingface", config, mode="train", optimizer="adamw", **options)
    seconds = time.perf_counter() - start
    estimate = report.peak_bytes / GIB
    figure = float(published.split()[0])
    row = [
        recipe,
        shape,
        published,
        f"{estimate:.2f}",
        f"{(estimate - figure) / figure * 100:+.1f}%",
        f"{report.breakdown.weights / GIB:.2f}",
        f"{report.trainable_parameters:,}",
        f"{seconds:.1f} s",
    ]
    print(row, flush=True)
    return row


def main() -> None:
    rows = []
    for recipe, published, options in PEFT:
        for length in TWEET_LENGTHS:
            rows.append(
                _row(
                    recipe,
                    f"8 x {length:,} + {LABEL_TOKENS}",
                    f"{published:.2f} (allocated)",
                    T0_3B,
                    input_size=(length, LABEL_TOKENS),
                    batch_size=8,
                    precision="fp32",
                    **options,
                )
            )
    for recipe, published, options in PUBLISHED:
        for length in LENGTHS:
            rows.append(
                _row(
                    recipe,
                    f"2 x {length:,}",
                    f"{published:.2f} (reserved)",
                    LLAMA2_7B,
                    input_size=(length,),
                    batch_size=2,
                    precision="bf16",
                    checkpointing=True,
                    **options,
                )
            )
    print()
    print(f"Machine: {machine()}")
    print(
        markdown_table(
            [
                "recipe",
                "batch x tokens",
                "published GiB",
                "estimate GiB (allocated)",
                "difference",
                "weights GiB",
                "trainable parameters",
                "estimate took",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
