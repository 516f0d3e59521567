"""POST /api/graph: the model as nodes (module calls, ops that join or split data) and edges (tensors)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.summary.graph_report import GraphReport
from ..deps import ServiceDep, WorkDep
from ..responses import JSON
from ..schemas import ERROR_RESPONSES, SummaryRequest

router = APIRouter(tags=["summary"])


@router.post(
    "/api/graph",
    response_model=GraphReport,
    summary="The architecture as a graph",
    responses={k: ERROR_RESPONSES[k] for k in (404, 413, 422, 504)},
)
async def graph(request: SummaryRequest, service: ServiceDep, work: WorkDep) -> Response:
    """Takes the summary's body. A node per module call (containers too: each node names its `parent`, so the
    graph collapses by depth) and per op that joins, splits or reshapes data (a residual `add`, `cat`, attention's
    `matmul`), with path, type, output shape, parameters and FLOPs; an edge per tensor passed on, with its shape.
    Recorded during the same allocation-free trace as the summary."""
    return Response(content=await service.graph(request, work), media_type=JSON)
