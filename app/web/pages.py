"""HTML pages. Each page is a Jinja2 template plus one JavaScript module; all state lives in the URL."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

import models

from .. import __version__
from ..engine.choices import describe_choices

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


def page_facts() -> dict:
    """What every page's scripts read at start: the choices, and each family's facts for live pages."""
    return {
        "choices": describe_choices(),
        "architectures": [
            {"name": a.name, "title": a.title, "live": a.describe()["live"], "presets": [p.name for p in a.presets]}
            for a in (models.get_architecture(name) for name in models.list_architectures())
        ],
    }


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
            "choices": describe_choices(),
            "facts": page_facts(),
        },
    )


def _page(name: str, title: str):
    def page(request: Request) -> HTMLResponse:
        return _render(request, name, title)

    page.__name__ = f"{name}_page"
    return page


for _path, _name, _title in PAGES:
    router.add_api_route(_path, _page(_name, _title), methods=["GET"], response_class=HTMLResponse)


@router.get("/static/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly's bundle from the installed plotly package: no CDN, works offline."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=604800, immutable"}
    )
