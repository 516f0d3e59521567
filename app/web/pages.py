"""HTML pages. Each page is a Jinja2 template plus one JavaScript module; all state lives in the URL."""

from __future__ import annotations

import functools
from pathlib import Path

import fastapi_offline
import plotly
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

import models

from .. import __version__
from ..engine.choices import describe_choices
from ..engine.labs import LABS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Jinja2Templates(directory=str(ROOT / "templates"))
# Third-party bundles served from the installed packages (no CDN: the pages work offline under a strict policy).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
VENDOR = {
    "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
    "swagger-ui-bundle.js": DOCS_ASSETS / "swagger-ui-bundle.js",
    "swagger-ui.css": DOCS_ASSETS / "swagger-ui.css",
    "redoc.standalone.js": DOCS_ASSETS / "redoc.standalone.js",
}

router = APIRouter(include_in_schema=False)

PAGES = [
    ("/", "explorer", "Explorer"),
    ("/compare", "compare", "Compare"),
    ("/build", "build", "Build"),
    ("/features", "features", "Feature maps"),
    ("/attention", "attention", "Attention"),
    ("/labs", "labs", "Labs"),
]


@functools.cache
def page_facts() -> dict:
    """What every page's scripts read at start: the choices, each family's facts for live pages, and which labs
    explain which layer types (the explorer links rows to them). Fixed once the registry is loaded: built once."""
    return {
        "choices": describe_choices(),
        "labs": [{"name": lab.name, "title": lab.title, "layer_types": list(lab.layer_types)} for lab in LABS.values()],
        "architectures": [
            {"name": a.name, "title": a.title, "live": a.describe()["live"], "presets": [p.name for p in a.presets]}
            for a in (models.get_architecture(name) for name in models.list_architectures())
        ],
    }


def not_found_page(request: Request) -> HTMLResponse:
    """A page, not a JSON body, for a browser that follows a bad link."""
    response = _render(request, "not_found", "Not found")
    response.status_code = 404
    return response


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
            "choices": page_facts()["choices"],
            "facts": page_facts(),
            "labs": [
                {
                    "name": lab.name,
                    "title": lab.title,
                    "section": lab.section,
                    "example": lab.example,
                    "example_source": lab.example_source,
                }
                for lab in LABS.values()
            ],
        },
    )


def _page(name: str, title: str):
    def page(request: Request) -> HTMLResponse:
        return _render(request, name, title)

    page.__name__ = f"{name}_page"
    return page


for _path, _name, _title in PAGES:
    router.add_api_route(_path, _page(_name, _title), methods=["GET"], response_class=HTMLResponse)


@router.get("/static/vendor/{name}")
def vendor_asset(name: str) -> FileResponse:
    """Plotly's, Swagger UI's and ReDoc's bundles from their installed packages."""
    path = VENDOR.get(name)
    if path is None:
        raise HTTPException(404, f"no vendored asset {name!r}")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=604800, immutable"})


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the OpenAPI document, from local assets."""
    return TEMPLATES.TemplateResponse(
        request, "api_docs.html", {"title": "API", "version": __version__, "viewer": "swagger"}
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the OpenAPI document, from local assets."""
    return TEMPLATES.TemplateResponse(
        request, "api_docs.html", {"title": "API reference", "version": __version__, "viewer": "redoc"}
    )
