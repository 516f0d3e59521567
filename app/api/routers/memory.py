"""POST /api/memory: peak memory of a training step or an inference pass."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.memory_report import MemoryReport
from ..deps import CsvDep, ServiceDep
from ..responses import report_response
from ..schemas import ERROR_RESPONSES, MemoryRequest

router = APIRouter(tags=["memory"])


@router.post(
    "/api/memory",
    response_model=MemoryReport,
    summary="Estimate (and optionally measure) peak memory",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV layer rows"},
        **{k: ERROR_RESPONSES[k] for k in (404, 413, 422, 503, 504)},
    },
)
async def memory(request: MemoryRequest, service: ServiceDep, as_csv: CsvDep) -> Response:
    """The exact peak of one steady-state step, its breakdown, per-layer saved bytes and the textbook formula."""
    item = await service.memory(request)
    return report_response(item, as_csv, f"{request.architecture}-memory")
