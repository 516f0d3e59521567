"""POST /api/attention: every head's attention weights on a text, from a real forward pass."""

from __future__ import annotations

from fastapi import APIRouter

from ...engine.attention_maps import AttentionReport
from ..deps import ServiceDep
from ..schemas import AttentionRequest, error_responses

router = APIRouter(tags=["live"])


@router.post(
    "/api/attention",
    response_model=AttentionReport,
    summary="Attention maps of a text",
    responses=error_responses(404, 413, 422, 503, 504),
)
async def attention(request: AttentionRequest, service: ServiceDep) -> AttentionReport:
    """Tokenize the text with the bundled BPE (showing its merges), run the model, and return the
    softmax(QK^T/sqrt(d_k)) weights of every layer and head, with the sinusoidal positional table."""
    return await service.run(
        lambda: service.live.attention(request.architecture, request.config, request.text, request.weights)
    )
