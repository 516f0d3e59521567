"""The ASGI app: ``uvicorn app.main:app``. ``create_app`` builds one from settings (tests make their own)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from . import __version__
from .api import api_router
from .api.errors import install_error_handlers
from .api.openapi import install_openapi
from .api.service import ReportService
from .middleware import AccessLog, BodySizeLimit
from .settings import Settings, get_settings
from .web.pages import ROOT
from .web.pages import router as pages_router

DESCRIPTION = """
Exact per-layer shapes, parameters, FLOPs and memory of neural-network architectures,
computed on meta and fake tensors (nothing is allocated), with live feature maps and
attention maps from real runs. Every error is a JSON body with `detail`, `field` and `layer`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Layerscope", version=__version__, description=DESCRIPTION)
    app.state.service = ReportService(settings)
    app.dependency_overrides[get_settings] = lambda: app.state.service.settings
    install_error_handlers(app)
    app.include_router(api_router)
    install_openapi(app)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(
        BodySizeLimit, limit=settings.max_request_kb * 1024, multipart_limit=settings.max_upload_mb * 2**20 + 65536
    )
    app.add_middleware(AccessLog, enabled=settings.access_log)
    return app


app = create_app()
