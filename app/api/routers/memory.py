"""POST /api/memory: peak memory of a training step or an inference pass; /api/memory/optimizers: every optimizer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.memory.report import MemoryReport
from ..deps import CsvDep, ServiceDep, WorkDep
from ..responses import JSON, report_response
from ..schemas import MemoryOverview, MemoryOverviewRequest, MemoryRequest, error_responses

router = APIRouter(tags=["memory"])


@router.post(
    "/api/memory",
    response_model=MemoryReport,
    summary="Estimate (and optionally measure) peak memory",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV layer rows"},
        **error_responses(404, 413, 422, 503, 504),
    },
)
async def memory(request: MemoryRequest, service: ServiceDep, work: WorkDep, as_csv: CsvDep) -> Response:
    """The exact peak of one steady-state step, its breakdown, per-layer saved bytes and the textbook formula."""
    item = await service.memory(request, work)
    return report_response(item, as_csv, f"{request.architecture}-memory")


@router.post(
    "/api/memory/optimizers",
    response_model=MemoryOverview,
    summary="Inference, and a training step with every optimizer",
    responses=error_responses(404, 413, 422, 504),
)
async def memory_overview(request: MemoryOverviewRequest, service: ServiceDep, work: WorkDep) -> Response:
    """One request for what the explorer's memory chart shows: the inference peak and each optimizer's
    training peak (each a full MemoryReport)."""
    return Response(content=await service.memory_overview(request, work), media_type=JSON)
