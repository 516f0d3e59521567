"""Tiny Hugging Face configs of the families generation and training are checked on (built on meta or for real
in a second): grouped-query attention, sliding windows, alternating windows, a mixture of experts, an
encoder-decoder."""

from __future__ import annotations

from typing import Any


def _causal(model_type: str, architecture: str, **values: Any) -> dict[str, Any]:
    base = {
        "model_type": model_type,
        "architectures": [architecture],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 512,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    return {"hf_config": {**base, **values}}


LLAMA = _causal("llama", "LlamaForCausalLM")
MISTRAL = _causal("mistral", "MistralForCausalLM", sliding_window=16, max_position_embeddings=256)
GEMMA2 = _causal(
    "gemma2",
    "Gemma2ForCausalLM",
    num_hidden_layers=4,
    head_dim=16,
    sliding_window=16,
    max_position_embeddings=256,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)
MIXTRAL = _causal("mixtral", "MixtralForCausalLM", intermediate_size=96, num_local_experts=4, num_experts_per_tok=2)
GPT2 = {
    "hf_config": {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_embd": 64,
        "n_layer": 2,
        "n_head": 4,
        "vocab_size": 512,
        "n_positions": 256,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
}
T5 = {
    "hf_config": {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "d_model": 64,
        "d_ff": 128,
        "d_kv": 16,
        "num_layers": 2,
        "num_heads": 4,
        "vocab_size": 512,
        "decoder_start_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 0,
    }
}
