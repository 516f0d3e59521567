"""GET /api/health: liveness and what the server runs on."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ... import __version__
from ...engine.device import device_info
from ..deps import ServiceDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    torch: str
    device: str
    gpu: str | None
    cache_entries: int
    cache_bytes: int
    real_runs_active: int
    engine: dict[str, dict[str, int]]


@router.get("/api/health", response_model=Health, summary="Liveness, torch version and device")
def health(service: ServiceDep) -> Health:
    facts = device_info(service.device)
    return Health(
        status="ok",
        version=__version__,
        torch=facts["torch"],
        device=facts["device"],
        gpu=facts["gpu"],
        cache_entries=len(service.cache),
        cache_bytes=service.cache.bytes,
        real_runs_active=service.gate.active + service.lanes()["live"].stats.busy,
        engine={name: each.describe() for name, each in service.lanes().items()},
    )
