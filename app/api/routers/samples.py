"""GET /api/samples and GET /api/weights: bundled images, and the weights a real run can use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ..realruns import samples, weight_sources
from ..schemas import ERROR_RESPONSES

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


@router.get("/api/samples", response_model=list[Sample], summary="Bundled sample photographs")
def list_samples() -> list[dict[str, str]]:
    return samples()


@router.get(
    "/api/weights",
    response_model=list[WeightSource],
    summary="Weights available for real runs",
    responses={422: ERROR_RESPONSES[422]},
)
def list_weights(architecture: str | None = Query(None, max_length=64)) -> list[dict[str, Any]]:
    """random, the bundled LeNet-5, and torchvision files already in the local torch cache (never downloaded)."""
    return weight_sources(architecture)
