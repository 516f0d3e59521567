"""ASGI middleware: the body-size limit and one JSON access line per request."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient


def test_body_over_the_limit_is_413_before_parsing(client, settings) -> None:
    body = b'{"architecture": "mlp", "config": {"hidden": [' + b"1," * 200_000 + b"1]}}"
    response = client.post("/api/summary", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"


def test_access_log_line(settings, caplog) -> None:
    from app.main import create_app

    settings.access_log = True
    app = create_app(settings)
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="layerscope.access"):
        logger = logging.getLogger("layerscope.access")
        logger.propagate = True
        try:
            client.get("/api/health?x=1")
        finally:
            logger.propagate = False
    line = json.loads(next(r.getMessage() for r in caplog.records if r.name == "layerscope.access"))
    assert line["path"] == "/api/health" and line["status"] == 200 and line["query"] == "x=1" and line["ms"] >= 0
