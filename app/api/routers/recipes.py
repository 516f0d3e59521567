"""GET /api/recipes: named fine-tuning setups (QLoRA, LoRA, 8-bit AdamW), each as the body POST /api/memory takes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...engine.recipes import describe_recipes

router = APIRouter(tags=["memory"])


@router.get("/api/recipes", summary="Fine-tuning recipes, each a ready POST /api/memory body")
def recipes() -> dict[str, Any]:
    return {"recipes": describe_recipes()}
