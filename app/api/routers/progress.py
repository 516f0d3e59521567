"""GET /api/progress/{request_id}: where a long request's engine work stands."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from ..deps import ServiceDep
from ..progress import Progress
from ..schemas import error_responses

router = APIRouter(tags=["health"])


@router.get(
    "/api/progress/{request_id}",
    response_model=Progress,
    summary="Progress of a request",
    responses=error_responses(404, 422),
)
def progress(
    request_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="The X-Request-ID.")],
    service: ServiceDep,
) -> Progress:
    """Send a request with an ``X-Request-ID`` header (or read the one the response carries), then poll this
    while it runs: its state (queued, running, done, failed), the engine's stage, and how far along it is."""
    found = service.progress.get(request_id)
    if found is None:
        raise HTTPException(404, f"no request {request_id!r} has run on this server recently")
    return found
