"""The huggingface family: configs in, models built on meta by transformers, published counts out; no remote code."""

from __future__ import annotations

import json

import pytest
import torch

import models
from models.huggingface import CONFIG_DIR, bundled_config

ARCH = models.get_architecture("huggingface")

# Published parameter counts (the model cards and the checkpoints' own totals), independent of our table.
PUBLISHED = {
    "llama-3.1-8b": 8_030_261_248,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-9b": 9_241_705_984,
    "phi-3-mini": 3_821_079_552,
    "gpt2": 124_439_808,
    "bert-base": 109_482_240,  # with the pooler
    "t5-base": 222_903_552,
    "vit-base": 86_567_656,
}


def _params(config: dict) -> int:
    with torch.device("meta"):
        model = models.build_model("huggingface", config)
    assert all(p.device.type == "meta" for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", list(PUBLISHED))
def test_presets_match_published_counts(preset: str) -> None:
    assert ARCH.preset(preset).params == PUBLISHED[preset]
    assert _params({"preset": preset}) == PUBLISHED[preset]


def test_every_bundled_config_is_a_preset_and_is_credited() -> None:
    files = {path.stem for path in CONFIG_DIR.glob("*.json")}
    assert files == {p.name for p in ARCH.presets} == set(PUBLISHED)
    credits = (CONFIG_DIR / "CREDITS.md").read_text()
    for name in files:
        assert f"`{name}.json`" in credits
        assert (CONFIG_DIR / f"{name}.json").stat().st_size < 4096  # small files of hyperparameters


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "t5-base", "bert-base"])
def test_a_pasted_config_equals_its_preset(preset: str) -> None:
    pasted = json.loads((CONFIG_DIR / f"{preset}.json").read_text())
    head = ARCH.preset(preset).overrides.get("head")
    config = {"hf_config": pasted, **({"head": head} if head else {})}
    assert ARCH.parse_config(config) == ARCH.parse_config({"preset": preset})
    assert _params(config) == PUBLISHED[preset]


def test_the_head_comes_from_the_configs_architectures() -> None:
    assert ARCH.parse_config({"preset": "llama-3.1-8b"}).task == "causal-lm"
    assert ARCH.parse_config({"preset": "t5-base"}).task == "seq2seq-lm"
    assert ARCH.parse_config({"preset": "vit-base"}).task == "image-classification"
    bare = {k: v for k, v in bundled_config("llama-3.1-8b").items() if k != "architectures"}
    assert ARCH.parse_config({"hf_config": bare}).task == "base"
    with torch.device("meta"):
        base = models.build_model("huggingface", {"hf_config": bare})
    assert type(base).__name__ == "LlamaModel"  # no language-model head: 8.03B less the 525M lm_head
    assert sum(p.numel() for p in base.parameters()) == PUBLISHED["llama-3.1-8b"] - 128_256 * 4096


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (
            {"hf_config": {"model_type": "llama", "auto_map": {"AutoModel": "x.Model"}}},
            "config.hf_config",
            "remote code",
        ),
        ({"hf_config": {"model_type": "lama"}}, "config.hf_config", "'lama'"),
        ({"hf_config": {"hidden_size": 8}}, "config.hf_config", "model_type"),
        ({"hf_config": {"model_type": "llama", "hidden_size": 100, "num_attention_heads": 7}}, "config.hf_config", "7"),
        ({"hf_config": {"model_type": "bert"}, "head": "seq2seq-lm"}, "config.head", "seq2seq-lm"),
    ],
)
def test_configs_that_cannot_be_built_safely_are_refused(config: dict, field: str, words: str) -> None:
    with pytest.raises(models.ConfigError) as caught:
        ARCH.parse_config(config)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_remote_code_names_the_model_type() -> None:
    with pytest.raises(models.ConfigError, match="this qwen2 config asks for remote code"):
        ARCH.parse_config({"hf_config": {**bundled_config("qwen2.5-7b"), "auto_map": {"AutoConfig": "a.B"}}})


@pytest.mark.parametrize(
    ("preset", "shape"),
    [
        ("llama-3.1-8b", (2048,)),
        ("gpt2", (1024,)),
        ("bert-base", (512,)),
        ("t5-base", (512, 512)),
        ("vit-base", (3, 224, 224)),
    ],
)
def test_default_inputs_come_from_the_config(preset: str, shape: tuple[int, ...]) -> None:
    assert ARCH.default_input(ARCH.parse_config({"preset": preset})) == shape
