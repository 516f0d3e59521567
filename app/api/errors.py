"""Every failure becomes a JSON body that says what is wrong and where; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.errors import (
    ConfigError,
    EngineError,
    InputError,
    MemoryBudgetError,
    UnknownArchitectureError,
    UnknownPresetError,
)

log = logging.getLogger("layerscope.api")


class DeviceBusyError(EngineError):
    """The device stayed busy with other real runs past the wait limit."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"the device is busy with other real runs; waited {waited:g} s, try again shortly")


class ComputeTimeoutError(EngineError):
    def __init__(self, limit: float) -> None:
        super().__init__(f"the computation took longer than the {limit:g} s limit")


class PayloadTooLargeError(EngineError):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is larger than the {limit:,} byte limit")
        self.field = "body"


class UnsupportedMediaError(EngineError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequestError(EngineError):
    """A body the server cannot read at all (a malformed multipart stream)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.field = "body"


def validation_error(exc: ValidationError) -> InputError:
    """A pydantic error on a body the route validated itself, as the API reports every invalid field."""
    errors = [
        {"field": _location(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    error = InputError(detail, first["field"])
    error.errors = errors  # type: ignore[attr-defined]
    return error


def error_json(status: int, detail: str, **extra: Any) -> JSONResponse:
    body = {"detail": detail, "field": None, "layer": None}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(status_code=status, content=body)


def _location(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownArchitectureError)
    async def unknown_architecture(request: Request, exc: UnknownArchitectureError) -> JSONResponse:
        return error_json(404, str(exc), field="architecture", known=exc.known)

    @app.exception_handler(UnknownPresetError)
    async def unknown_preset(request: Request, exc: UnknownPresetError) -> JSONResponse:
        return error_json(404, str(exc), field="config.preset", known=exc.known)

    @app.exception_handler(ConfigError)
    async def bad_config(request: Request, exc: ConfigError) -> JSONResponse:
        return error_json(422, str(exc), field=exc.field, errors=exc.errors or None)

    @app.exception_handler(EngineError)
    async def engine_error(request: Request, exc: EngineError) -> JSONResponse:
        status = 422
        if isinstance(exc, MemoryBudgetError | PayloadTooLargeError):
            status = 413
        elif isinstance(exc, DeviceBusyError):
            status = 503
        elif isinstance(exc, ComputeTimeoutError):
            status = 504
        elif isinstance(exc, UnsupportedMediaError):
            status = 415
        elif isinstance(exc, BadRequestError):
            status = 400
        elif isinstance(exc, InputError):
            status = getattr(exc, "status", 422)  # image errors say 413 or 415 themselves
        content = exc.details()
        if getattr(exc, "errors", None):
            content["errors"] = exc.errors  # type: ignore[attr-defined]
        return JSONResponse(status_code=status, content=content)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return error_json(422, detail, field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": detail, "field": None, "layer": None},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_json(500, "internal error: the server failed to answer this request; it has been logged")
