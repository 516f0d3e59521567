"""FastAPI dependencies, as ``Annotated`` aliases the routers declare."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from ..settings import Settings, get_settings
from .service import ReportService, Work

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_service(request: Request, settings: SettingsDep) -> ReportService:
    """The app's ReportService for the current settings (tests swap settings through ``get_settings``)."""
    service: ReportService = request.app.state.service
    if service.settings is not settings:
        service = request.app.state.service = ReportService(settings)
    return service


ServiceDep = Annotated[ReportService, Depends(get_service)]


def get_work(request: Request, settings: SettingsDep) -> Work:
    """The request's id and its one deadline, counted from its arrival (set by the RequestContext middleware)."""
    state = request.scope.get("state") or {}
    started = state.get("started", time.monotonic())
    return Work(state.get("request_id") or uuid.uuid4().hex, started + settings.request_timeout_s)


WorkDep = Annotated[Work, Depends(get_work)]


def wants_csv(request: Request, format: Literal["json", "csv"] | None = Query(None, description="json or csv")) -> bool:
    """CSV when asked by ?format=csv or an Accept header that prefers text/csv."""
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split("text/csv")[0]


CsvDep = Annotated[bool, Depends(wants_csv)]
