from __future__ import annotations

import models


def test_lists_every_architecture_with_schema(client) -> None:
    body = client.get("/api/architectures").json()
    assert [a["name"] for a in body] == models.list_architectures()
    alexnet = next(a for a in body if a["name"] == "alexnet")
    assert alexnet["default_params"] == 62_378_344
    assert alexnet["default_input"] == [3, 224, 224]
    assert alexnet["config_schema"]["properties"]["variant"]["enum"] == ["original", "torchvision"]
    assert {p["name"] for p in alexnet["presets"]} == {"original", "torchvision"}


def test_one_architecture(client) -> None:
    body = client.get("/api/architectures/resnet").json()
    depth = body["config_schema"]["properties"]["depth"]
    assert depth["default"] == 18 and depth["description"]
    assert any(p["name"] == "wide_resnet50_2" and p["params"] == 68_883_240 for p in body["presets"])


def test_unknown_architecture_is_404_with_the_known_ones(client) -> None:
    response = client.get("/api/architectures/lenet")
    assert response.status_code == 404
    body = response.json()
    assert body["field"] == "architecture" and "lenet5" in body["known"]
