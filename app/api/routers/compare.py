"""POST /api/compare: two to eight selections side by side."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import CsvDep, ServiceDep, WorkDep
from ..responses import compare_response
from ..schemas import ERROR_RESPONSES, CompareReport, CompareRequest

router = APIRouter(tags=["compare"])


@router.post(
    "/api/compare",
    response_model=CompareReport,
    summary="Compare selections",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV totals"},
        **{k: ERROR_RESPONSES[k] for k in (404, 413, 422, 504)},
    },
)
async def compare(request: CompareRequest, service: ServiceDep, work: WorkDep, as_csv: CsvDep) -> Response:
    """Totals, inference peak and Adam training peak of each selection, under one deadline for the whole request."""
    return compare_response(await service.compare(request, work), as_csv)
