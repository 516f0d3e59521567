"""HTML pages. Each page is a Jinja2 template plus one JavaScript module; all state lives in the URL."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

import models

from .. import __version__

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Jinja2Templates(directory=str(ROOT / "templates"))
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

router = APIRouter(include_in_schema=False)

PAGES = [
    ("/", "explorer", "Explorer"),
    ("/compare", "compare", "Compare"),
    ("/build", "build", "Build"),
    ("/features", "features", "Feature maps"),
    ("/attention", "attention", "Attention"),
]


def _render(request: Request, page: str, title: str) -> HTMLResponse:
    architectures = [models.get_architecture(name) for name in models.list_architectures()]
    return TEMPLATES.TemplateResponse(
        request,
        f"{page}.html",
        {
            "page": page,
            "title": title,
            "pages": PAGES,
            "version": __version__,
            "architectures": architectures,
        },
    )


@router.get("/", response_class=HTMLResponse)
def explorer(request: Request) -> HTMLResponse:
    return _render(request, "explorer", "Explorer")


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request) -> HTMLResponse:
    return _render(request, "compare", "Compare")


@router.get("/build", response_class=HTMLResponse)
def build(request: Request) -> HTMLResponse:
    return _render(request, "build", "Build")


@router.get("/features", response_class=HTMLResponse)
def features(request: Request) -> HTMLResponse:
    return _render(request, "features", "Feature maps")


@router.get("/attention", response_class=HTMLResponse)
def attention(request: Request) -> HTMLResponse:
    return _render(request, "attention", "Attention")


@router.get("/static/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly's bundle from the installed plotly package: no CDN, works offline."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=604800, immutable"}
    )
