"""POST /api/summary: per-layer shapes, parameters, FLOPs and formulas."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.summary.report import SummaryReport
from ..deps import CsvDep, ServiceDep, WorkDep
from ..responses import report_response
from ..schemas import ERROR_RESPONSES, SummaryRequest

router = APIRouter(tags=["summary"])


@router.post(
    "/api/summary",
    response_model=SummaryReport,
    summary="Summarize an architecture",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV layer rows"},
        **{k: ERROR_RESPONSES[k] for k in (404, 413, 422, 504)},
    },
)
async def summary(request: SummaryRequest, service: ServiceDep, work: WorkDep, as_csv: CsvDep) -> Response:
    """Shapes, parameters, MACs/FLOPs and worked formulas of every layer, computed without allocating."""
    item = await service.summary(request, work)
    return report_response(item, as_csv, f"{request.architecture}-summary")
