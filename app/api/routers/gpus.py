"""GET /api/gpus, POST /api/max-batch, /api/max-context, /api/serving and /api/step-time: sizing for a GPU."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine.gpus import ALLOCATOR_SHARE, CONTEXT_RESERVE_BYTES, GPUS
from ...engine.sizing import MaxBatchReport, MaxContextReport, ServingReport, StepTimeReport
from ..deps import ServiceDep, WorkDep
from ..responses import JSON
from ..schemas import ServingRequest, SizingRequest, StepTimeRequest, error_responses

router = APIRouter(tags=["sizing"])


@router.get("/api/gpus", summary="The GPU catalog")
def gpus() -> dict[str, Any]:
    """Memory, dense bf16/fp16/fp32 TFLOP/s and bandwidth of each GPU, from its datasheet (cited), and what a
    model may use of the memory: capacity less the CUDA context reserve, times the allocator's share."""
    return {
        "reserve_bytes": CONTEXT_RESERVE_BYTES,
        "allocator_share": ALLOCATOR_SHARE,
        "gpus": [g.describe() for g in GPUS.values()],
    }


@router.post(
    "/api/max-batch",
    response_model=MaxBatchReport,
    summary="The largest batch that fits a GPU",
    responses=error_responses(404, 413, 422, 504),
)
async def max_batch(request: SizingRequest, service: ServiceDep, work: WorkDep) -> Response:
    """The largest batch (per device, with gpus) whose exact estimated peak fits the GPU's usable memory, with
    the peak at it and at one more (peak_bytes <= usable_bytes < next_peak_bytes)."""
    return Response(content=await service.max_batch(request, work), media_type=JSON)


@router.post(
    "/api/max-context",
    response_model=MaxContextReport,
    summary="The longest context that fits a GPU",
    responses=error_responses(404, 413, 422, 504),
)
async def max_context(request: SizingRequest, service: ServiceDep, work: WorkDep) -> Response:
    """The longest prompt (plus new_tokens, in a generation) whose exact estimated peak at input.batch_size fits
    the GPU's usable memory, with the peak at it and at one more token; the config's context caps it."""
    return Response(content=await service.max_context(request, work), media_type=JSON)


@router.post(
    "/api/serving",
    response_model=ServingReport,
    summary="KV-cache blocks and concurrent requests a GPU serves (vLLM's plan)",
    responses=error_responses(404, 413, 422, 504),
)
async def serving(request: ServingRequest, service: ServiceDep, work: WorkDep) -> Response:
    """The GPU's memory x utilization, less the weights as stored and the traced activation peak of a prefill
    chunk, as a paged KV cache: its blocks, its tokens, the concurrent requests of prompt + output tokens, and a
    roofline time to first token and per output token (labelled as an estimate)."""
    return Response(content=await service.serving(request, work), media_type=JSON)


@router.post(
    "/api/step-time",
    response_model=StepTimeReport,
    summary="Estimate a step's time on a GPU (roofline)",
    responses=error_responses(404, 413, 422, 504),
)
async def step_time(request: StepTimeRequest, service: ServiceDep, work: WorkDep) -> Response:
    """FLOPs from the trace over the GPU's peak times a utilisation, against memory traffic over its bandwidth:
    an estimate, labelled as one, for a training step, a forward, or a generation (prefill, tokens/s)."""
    return Response(content=await service.step_time(request, work), media_type=JSON)
