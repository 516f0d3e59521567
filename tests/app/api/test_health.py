from __future__ import annotations

import torch


def test_health_reports_torch_and_device(client) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["torch"] == torch.__version__
    assert body["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_settings_override_reaches_the_service(client, settings) -> None:
    settings.device = "cpu"
    assert client.get("/api/health").json()["device"] == "cpu"
