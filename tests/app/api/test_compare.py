from __future__ import annotations


def test_compare_two(client) -> None:
    body = client.post(
        "/api/compare",
        json={"selections": [{"architecture": "resnet"}, {"architecture": "resnet", "config": {"depth": 50}}]},
    ).json()
    first, second = body["entries"]
    assert first["totals"]["params"] == 11_689_512 and second["totals"]["params"] == 25_557_032
    assert first["label"] == "resnet" and second["label"] == "resnet (depth=50)"
    assert second["training_peak_bytes"] > first["training_peak_bytes"] > first["inference_peak_bytes"]
    assert sum(second["training_breakdown"].values()) == second["training_peak_bytes"]


def test_compare_needs_two_to_eight(client) -> None:
    assert client.post("/api/compare", json={"selections": [{"architecture": "mlp"}]}).status_code == 422
    many = {"selections": [{"architecture": "mlp"}] * 9}
    assert client.post("/api/compare", json=many).status_code == 422


def test_compare_csv(client) -> None:
    response = client.post(
        "/api/compare?format=csv", json={"selections": [{"architecture": "mlp"}, {"architecture": "lenet5"}]}
    )
    lines = response.text.splitlines()
    assert lines[0].startswith("label,architecture,config") and lines[1].startswith(
        "mlp,mlp,{},1,fp32,adam,train,22401"
    )


def test_compare_names_the_bad_selection(client) -> None:
    response = client.post(
        "/api/compare", json={"selections": [{"architecture": "mlp"}, {"architecture": "mlp", "config": {"x": 1}}]}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "config.x"
