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
    DeviceBusyError,
    EngineError,
    InputError,
    MemoryBudgetError,
    ResponseTooLargeError,
    UnknownArchitectureError,
    UnknownPresetError,
)

log = logging.getLogger("layerscope.api")


class ComputeTimeoutError(EngineError):
    """The request's deadline passed: its work was stopped (or never started, when it waited in the queue)."""

    def __init__(self, limit: float, queued: bool = False) -> None:
        if queued:
            message = "the request waited in the queue until its deadline passed: the server is busy, try again"
        else:
            message = f"the computation took longer than the {limit:g} s limit and was stopped"
        super().__init__(message)


class WorkerFailure(Exception):
    """A worker's answer to a job that failed: the status and body to send as they are."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", "failed"))
        self.status = status
        self.body = {"field": None, "layer": None, **body}


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


def failure_response(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for anything raised while answering: one place, for the app and its workers."""
    if isinstance(exc, WorkerFailure):
        return exc.status, exc.body
    if isinstance(exc, UnknownArchitectureError):
        return 404, {"detail": str(exc), "field": "architecture", "layer": None, "known": exc.known}
    if isinstance(exc, UnknownPresetError):
        return 404, {"detail": str(exc), "field": "config.preset", "layer": None, "known": exc.known}
    if isinstance(exc, ConfigError):
        body = {"detail": str(exc), "field": exc.field, "layer": None}
        if exc.errors:
            body["errors"] = exc.errors
        return 422, body
    if isinstance(exc, RecursionError):
        return 422, {"detail": "the request nests too deeply to read", "field": "body", "layer": None}
    if isinstance(exc, EngineError):
        content = exc.details()
        if getattr(exc, "errors", None):
            content["errors"] = exc.errors  # type: ignore[attr-defined]
        return _engine_status(exc), content
    return 500, {"detail": "internal error: the server failed to answer this request; it has been logged"}


def _engine_status(exc: EngineError) -> int:
    if isinstance(exc, MemoryBudgetError | PayloadTooLargeError | ResponseTooLargeError) or type(exc).__name__ == (
        "MemoryLimitError"
    ):
        return 413
    if isinstance(exc, DeviceBusyError):
        return 503
    if isinstance(exc, ComputeTimeoutError):
        return 504
    if isinstance(exc, UnsupportedMediaError):
        return 415
    if isinstance(exc, BadRequestError):
        return 400
    if isinstance(exc, InputError):
        return getattr(exc, "status", 422)  # image errors say 413 or 415 themselves
    return 422


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WorkerFailure)
    @app.exception_handler(UnknownArchitectureError)
    @app.exception_handler(UnknownPresetError)
    @app.exception_handler(ConfigError)
    @app.exception_handler(EngineError)
    @app.exception_handler(RecursionError)
    async def known_failure(request: Request, exc: Exception) -> JSONResponse:
        status, body = failure_response(exc)
        return JSONResponse(status_code=status, content=body)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            field = "body" if e.get("type") == "json_invalid" else _location(e.get("loc", ()))
            message = str(e.get("msg", "invalid")).removeprefix("Value error, ")  # our own validators' words
            errors.append({"field": field, "message": message})
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return error_json(422, detail, field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | ValueError):
            # FastAPI's own JSON parsing failed (a body nested past the parser's limit): a bad field, not a bad stream
            return error_json(422, "the body is not JSON that can be read: it nests too deeply", field="body")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": detail, "field": None, "layer": None},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        status, body = failure_response(exc)
        return JSONResponse(status_code=status, content=body)
