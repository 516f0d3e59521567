"""GET /api/health: liveness and what the server runs on."""

from __future__ import annotations

import torch
from fastapi import APIRouter
from pydantic import BaseModel

from ... import __version__
from ..deps import ServiceDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    torch: str
    device: str
    cache_entries: int
    real_runs_active: int


@router.get("/api/health", response_model=Health, summary="Liveness, torch version and device")
def health(service: ServiceDep) -> Health:
    return Health(
        status="ok",
        version=__version__,
        torch=torch.__version__,
        device=service.device,
        cache_entries=len(service.cache),
        real_runs_active=service.gate.active,
    )
