"""GET /api/samples and GET /api/weights: bundled images, and the weights a real run can use, with their facts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ...engine.live.runs import sample_names, weight_sources
from ..schemas import error_responses

router = APIRouter(tags=["live"])


class Sample(BaseModel):
    id: str
    title: str
    credit: str
    url: str


class WeightSource(BaseModel):
    id: str
    label: str
    architecture: str | None
    config: dict[str, Any] | None
    facts: dict[str, Any] | None = Field(
        description="For bundled weights: labels, how inputs are prepared (accepts_drawing), whether live pages "
        "start from them (live_default)."
    )


@router.get("/api/samples", response_model=list[Sample], summary="Bundled sample photographs")
def list_samples() -> list[dict[str, str]]:
    return sample_names()


@router.get(
    "/api/weights",
    response_model=list[WeightSource],
    summary="Weights available for real runs",
    responses=error_responses(422),
)
def list_weights(architecture: str | None = Query(None, max_length=64)) -> list[dict[str, Any]]:
    """random, each architecture's bundled weights, and torchvision files already in the local torch cache
    (never downloaded)."""
    return weight_sources(architecture)
