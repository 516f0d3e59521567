"""LoRA and DoRA fine-tuning (PEFT): the estimate against a real step of PEFT's own model, parameter counts against
PEFT's, and bad adapters refused before any work."""

from __future__ import annotations

import pytest

from app.engine import estimate_memory
from app.engine.errors import InputError

from . import tiny_models

LLAMA = {
    "hf_config": {
        **tiny_models.LLAMA["hf_config"],
        "hidden_size": 128,
        "intermediate_size": 344,
        "num_attention_heads": 4,
        "vocab_size": 1000,
    }
}


@pytest.mark.parametrize(
    ("config", "precision", "adapter"),
    [
        (LLAMA, "fp32", {"r": 8, "target_modules": ["q_proj", "v_proj"]}),
        (LLAMA, "bf16", {"r": 16}),
        (tiny_models.GPT2, "fp32", {"r": 4, "target_modules": ["c_attn"]}),
    ],
)
def test_lora_step_matches_a_real_peft_step(config, precision, adapter) -> None:
    """A real training step of the PEFT model on this CPU (the profiler's peak): the estimate within 0.5%."""
    report = estimate_memory(
        "huggingface",
        config,
        input_size=(64,),
        batch_size=4,
        precision=precision,
        optimizer="adamw",
        adapter=adapter,
        measure=True,
    )
    assert abs(report.error_percent) <= 0.5, report.error_percent
    assert report.frozen_parameters and report.trainable_parameters < report.frozen_parameters / 4


def test_trainable_parameters_are_peft_s_own_count() -> None:
    """PEFT's get_peft_model on the same tiny Llama, built for real, counts the same trainable and frozen
    parameters as the report."""
    import transformers
    from peft import LoraConfig, get_peft_model

    config = transformers.AutoConfig.for_model(**LLAMA["hf_config"])
    model = get_peft_model(
        transformers.AutoModelForCausalLM.from_config(config),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"),
    )
    trainable, total = model.get_nb_trainable_parameters()
    report = estimate_memory("huggingface", LLAMA, input_size=(16,), optimizer="adamw", adapter={"r": 8, "alpha": 16})
    assert (report.trainable_parameters, report.frozen_parameters) == (trainable, total - trainable)


@pytest.mark.parametrize(
    ("adapter", "field"),
    [
        ({"r": 0}, "adapter.r"),
        ({"r": 8, "target_modules": ["attention.wq"]}, "adapter.target_modules"),
        ({"r": 8, "kind": "ia3"}, "adapter.kind"),
    ],
)
def test_bad_adapters_name_the_field(adapter, field) -> None:
    with pytest.raises(InputError) as caught:
        estimate_memory("huggingface", LLAMA, input_size=(16,), adapter=adapter)
    assert caught.value.field == field
