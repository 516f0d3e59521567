"""Pages render server-side and every asset is served locally (no CDN)."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("path", ["/", "/compare", "/build"])
def test_pages_render(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(src).status_code == 200, src
    assert "https://cdn" not in html and "//unpkg" not in html


def test_explorer_lists_every_architecture(client) -> None:
    html = client.get("/").text
    for name in ("mlp", "lenet5", "alexnet", "vgg", "resnet", "transformer", "gpt", "vit", "sequential"):
        assert f'data-arch="{name}"' in html


def test_plotly_comes_from_the_python_package(client) -> None:
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert "plotly" in response.text[:2000].lower()
    assert response.headers["cache-control"].startswith("public")


def test_layer_types_for_the_builder(client) -> None:
    types = {t["type"]: t for t in client.get("/api/layer-types").json()}
    assert "residual" in types and "Conv2d" in types
    linear = {a["name"]: a for a in types["Linear"]["arguments"]}
    assert linear["in_features"]["required"] and linear["bias"]["default"] is True
