"""GET /api/choices: the dtypes, precisions, optimizers and modes the engine offers (pages build their controls
from it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...engine.choices import describe_choices

router = APIRouter(tags=["architectures"])


@router.get("/api/choices", summary="Dtypes, precisions, optimizers and modes")
def choices() -> dict[str, Any]:
    return describe_choices()
