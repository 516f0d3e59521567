"""FastAPI dependencies, as ``Annotated`` aliases the routers declare."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from ..settings import Settings, get_settings
from .service import ReportService

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_service(request: Request, settings: SettingsDep) -> ReportService:
    """The app's ReportService for the current settings (tests swap settings through ``get_settings``)."""
    service: ReportService = request.app.state.service
    if service.settings is not settings:
        service = request.app.state.service = ReportService(settings)
    return service


ServiceDep = Annotated[ReportService, Depends(get_service)]


def wants_csv(request: Request, format: Literal["json", "csv"] | None = Query(None, description="json or csv")) -> bool:
    """CSV when asked by ?format=csv or an Accept header that prefers text/csv."""
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split("text/csv")[0]


CsvDep = Annotated[bool, Depends(wants_csv)]
