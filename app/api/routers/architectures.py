"""GET /api/architectures[/{name}]: the zoo, with config schemas, defaults and presets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

import models

from ..schemas import ERROR_RESPONSES

router = APIRouter(prefix="/api/architectures", tags=["architectures"])


class PresetInfo(BaseModel):
    name: str
    title: str
    config: dict[str, Any]
    params: int | None = Field(description="Exact parameter count, when declared.")


class ArchitectureInfo(BaseModel):
    name: str
    family: str
    title: str
    description: str
    input_kind: str = Field(description="vector, image, tokens or seq2seq.")
    default_input: list[int] = Field(description="One sample's default shape.")
    config_schema: dict[str, Any] = Field(description="JSON schema of the config: defaults, bounds, descriptions.")
    defaults: dict[str, Any]
    presets: list[PresetInfo]
    default_params: int | None
    live: dict[str, Any] = Field(
        description="Facts for real runs: feature maps (preprocessing), attention maps (modules, context), preset."
    )
    generates: bool = Field(description="Whether mode 'generate' applies (a KV-cache generation loop).")
    kv_cache_dtypes: list[str] = Field(
        description="What its generation's KV cache can store besides the compute dtype (kv_cache_dtype: fp8, int8)."
    )


@router.get("", response_model=list[ArchitectureInfo], summary="Every architecture")
def list_architectures() -> list[dict[str, Any]]:
    return [models.get_architecture(name).describe() for name in models.list_architectures()]


@router.get(
    "/{name}",
    response_model=ArchitectureInfo,
    summary="One architecture",
    responses={k: ERROR_RESPONSES[k] for k in (404, 422)},
)
def get_architecture(name: str = Path(max_length=64)) -> dict[str, Any]:
    return models.get_architecture(name).describe()
