"""Fine-tuning recipes engineers start from: a model, its sequence and batch, and a step (adapter, quantization,
optimizer, checkpointing), named so one word asks for the whole setup.

Each recipe is a complete memory request: ``request()`` is the body ``POST /api/memory`` takes, ``GET
/api/recipes`` lists them, ``layerscope recipes NAME`` estimates one, and the explorer's fine-tuning panel opens
one. The settings follow the sources named beside them (the QLoRA paper and PEFT's defaults); the figures are
Layerscope's own estimates of that setup, not the sources' published peaks (``bench/finetune_papers.py`` sets
those side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .step import Step


@dataclass(frozen=True)
class Recipe:
    """A named fine-tuning setup: what it trains, on what data shape, with which step."""

    name: str
    label: str
    architecture: str
    config: dict[str, Any]
    batch_size: int
    tokens: int  # tokens per sequence
    step: dict[str, Any]  # Step fields
    source: str  # where the settings come from
    notes: tuple[str, ...] = field(default=())

    def checked_step(self) -> Step:
        return Step.of(**self.step)

    def request(self) -> dict[str, Any]:
        """The body of ``POST /api/memory`` that estimates this recipe."""
        return {
            "architecture": self.architecture,
            "config": dict(self.config),
            "input": {"batch_size": self.batch_size, "shape": [self.tokens]},
            **self.step,
        }

    def describe(self) -> dict[str, Any]:
        return {"id": self.name, "label": self.label, "source": self.source, "request": self.request()}


ALL_LINEAR_LORA = {"kind": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear", "dropout": 0.05}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="qlora-llama-3.1-8b",
            label="QLoRA Llama-3.1-8B, r=16 all-linear",
            architecture="huggingface",
            config={"preset": "llama-3.1-8b"},
            batch_size=2,
            tokens=2048,
            step={
                "mode": "train",
                "precision": "bf16",
                "optimizer": "paged-adamw-8bit",
                "checkpointing": True,
                "adapter": ALL_LINEAR_LORA,
                "quantization": {"method": "nf4", "double_quant": True, "block_size": 64},
            },
            source="QLoRA (Dettmers et al., 2023): NF4 base with double quantization, bf16 compute, LoRA on every "
            "linear layer, paged 8-bit AdamW, gradient checkpointing; r=16, alpha=32, dropout 0.05 as PEFT's "
            "examples set them",
        ),
        Recipe(
            name="lora-mistral-7b",
            label="LoRA Mistral-7B, r=16 on the attention projections",
            architecture="huggingface",
            config={"preset": "mistral-7b"},
            batch_size=2,
            tokens=2048,
            step={
                "mode": "train",
                "precision": "bf16",
                "optimizer": "adamw",
                "checkpointing": True,
                "adapter": {**ALL_LINEAR_LORA, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            },
            source="LoRA (Hu et al., 2021) on the attention projections, bf16 weights, AdamW on the adapter, "
            "gradient checkpointing",
        ),
        Recipe(
            name="full-adamw-8bit-llama-3.1-8b",
            label="Full fine-tune Llama-3.1-8B with 8-bit AdamW",
            architecture="huggingface",
            config={"preset": "llama-3.1-8b"},
            batch_size=1,
            tokens=2048,
            step={"mode": "train", "precision": "bf16", "optimizer": "adamw-8bit", "checkpointing": True},
            source="every weight trained in bf16 with bitsandbytes' 8-bit AdamW (one byte per moment and a block "
            "absmax) and gradient checkpointing",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; one of {', '.join(RECIPES)}", "recipe") from None


def describe_recipes() -> list[dict[str, Any]]:
    return [recipe.describe() for recipe in RECIPES.values()]
