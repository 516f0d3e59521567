"""The ASGI app: ``uvicorn app.main:app``. ``create_app`` builds one from settings (tests make their own)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .api import api_router
from .api.errors import install_error_handlers
from .api.openapi import install_openapi
from .api.service import ReportService
from .middleware import AccessLog, BodySizeLimit, RequestContext, SecurityHeaders
from .settings import Settings, get_settings
from .web.pages import ROOT, not_found_page
from .web.pages import router as pages_router

DESCRIPTION = """
Exact per-layer shapes, parameters, FLOPs and memory of neural-network architectures,
computed on meta and fake tensors (nothing is allocated), with live feature maps and
attention maps from real runs. Every error is a JSON body with `detail`, `field` and `layer`.

**Limits of this server** (settings `LAYERSCOPE_*`):

- a request's deadline is {request_timeout_s:g} s from its arrival, for all the work it needs; at the
  deadline the work is stopped and the answer is a 504;
- JSON bodies up to {max_request_kb:,} KiB, uploads up to {max_upload_mb:,} MiB, images up to
  {max_image_pixels:,} pixels and no wider or taller than 50:1;
- responses up to {max_response_mb:,} MiB: feature maps draw 64 channels per layer (`channel_offset` pages
  through the rest) and attention returns the `layers` and `heads` asked for; a request whose answer would
  be larger is refused with a 413 before any work, saying how many layers or heads fit;
- real runs (measured memory, feature maps, attention) whose estimated peak passes the {memory_budget_mb:,} MiB
  budget are refused with a 413 before they start; an engine process that passes its memory limit is stopped
  (413);
- models with more than {max_modules:,} modules are refused (422).

Send `X-Request-ID` (or read the one each response carries) and poll `GET /api/progress/{{request_id}}`
while a long request runs.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Layerscope",
        version=__version__,
        description=DESCRIPTION.format(**settings.model_dump()),
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = ReportService(settings)
    app.dependency_overrides[get_settings] = lambda: app.state.service.settings
    install_error_handlers(app)
    _pages_answer_browsers_with_pages(app)
    app.include_router(api_router)
    install_openapi(app)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(
        BodySizeLimit, limit=settings.max_request_kb * 1024, multipart_limit=settings.max_upload_mb * 2**20 + 65536
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)
    app.add_middleware(AccessLog, enabled=settings.access_log)
    return app


def _pages_answer_browsers_with_pages(app: FastAPI) -> None:
    """A browser asking for a page that does not exist gets a page; the API keeps its JSON errors."""
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: StarletteHTTPException):
        wants_page = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and wants_page and not request.url.path.startswith(("/api/", "/static/")):
            return not_found_page(request)
        return await api_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)


app = create_app()
