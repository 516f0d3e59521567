"""The REST API: one router per resource, all included here."""

from fastapi import APIRouter

from .routers import (
    architectures,
    attention,
    choices,
    compare,
    feature_maps,
    gpus,
    graph,
    health,
    labs,
    layer_types,
    memory,
    progress,
    recipes,
    samples,
    summary,
)

api_router = APIRouter()
for module in (
    health,
    progress,
    architectures,
    choices,
    layer_types,
    summary,
    graph,
    memory,
    recipes,
    gpus,
    compare,
    samples,
    feature_maps,
    attention,
    labs,
):
    api_router.include_router(module.router)

__all__ = ["api_router"]
