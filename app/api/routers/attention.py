"""POST /api/attention: every head's attention weights on a text, from a real forward pass."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.live.attention_maps import AttentionReport
from ..deps import ServiceDep, WorkDep
from ..responses import JSON
from ..schemas import AttentionRequest, error_responses

router = APIRouter(tags=["live"])


@router.post(
    "/api/attention",
    response_model=AttentionReport,
    summary="Attention maps of a text",
    responses=error_responses(404, 413, 422, 503, 504),
)
async def attention(request: AttentionRequest, service: ServiceDep, work: WorkDep) -> Response:
    """Tokenize the text with the bundled BPE (showing its merges), run the model, and return the
    softmax(QK^T/sqrt(d_k)) weights of the layers and heads asked for (default: all), with the sinusoidal
    positional table. A response that would pass the size limit is refused (413) before the model runs,
    saying how many head matrices fit."""
    data = await service.attention(
        work,
        name=request.architecture,
        config=request.config,
        text=request.text,
        weights=request.weights,
        layers=request.layers,
        heads=request.heads,
    )
    return Response(content=data, media_type=JSON)
