"""GET /api/layer-types: the torch.nn layers the builder (``sequential``) accepts, with their arguments."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from models.sequential import LAYER_TYPES, RESIDUAL, allowed_arguments

router = APIRouter(tags=["architectures"])


class LayerArgument(BaseModel):
    name: str
    required: bool
    default: Any = Field(None, description="The constructor's default (null when required or not plain data).")


class LayerType(BaseModel):
    type: str
    doc: str = Field(description="First line of the layer's docstring.")
    arguments: list[LayerArgument]


def _plain(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def _describe(name: str) -> LayerType:
    doc = (LAYER_TYPES[name].__doc__ or "").strip().splitlines()
    args = [
        LayerArgument(name=arg, required=p.default is inspect.Parameter.empty, default=_plain(p.default))
        for arg, p in allowed_arguments(name).items()
    ]
    return LayerType(type=name, doc=doc[0] if doc else name, arguments=args)


@router.get("/api/layer-types", response_model=list[LayerType], summary="Layers the builder accepts")
def layer_types() -> list[LayerType]:
    described = [_describe(name) for name in sorted(LAYER_TYPES)]
    described.append(
        LayerType(
            type=RESIDUAL,
            doc="A block whose output is f(x) + x (or f(x) + shortcut(x)); holds its own layer list.",
            arguments=[],
        )
    )
    return described
