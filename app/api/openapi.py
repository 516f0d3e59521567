"""The OpenAPI document: schemas of request bodies a route declares by hand, registered as components.

A route that reads its body itself (one route, JSON or multipart) names its pydantic
classes with ``schema_ref``; ``install_openapi`` puts their schemas, and every schema
they refer to, into ``components/schemas``, so each ``$ref`` resolves.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
_EXTRA: list[type[BaseModel]] = []


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A $ref to ``model``'s schema, which ``install_openapi`` adds to the document."""
    if model not in _EXTRA:
        _EXTRA.append(model)
    return {"$ref": REF.format(model=model.__name__)}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
        )
        _, definitions = models_json_schema([(m, "validation") for m in _EXTRA], ref_template=REF)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            components.setdefault(name, schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
