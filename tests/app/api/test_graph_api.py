"""POST /api/graph: the summary's body in, nodes and edges out."""

from __future__ import annotations


def test_graph_of_resnet18(client) -> None:
    response = client.post("/api/graph", json={"architecture": "resnet", "config": {"depth": 18}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert sum(1 for n in body["nodes"] if n["type"] == "add") == 8
    ids = {n["id"] for n in body["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in body["edges"])
    conv1 = next(n for n in body["nodes"] if n["path"] == "conv1")
    assert conv1["params"] == 64 * 3 * 7 * 7 and conv1["output_shape"] == [1, 64, 112, 112]
    assert conv1["flops"] == 2 * 64 * 3 * 7 * 7 * 112 * 112


def test_graph_errors_are_the_summarys(client) -> None:
    bad = client.post("/api/graph", json={"architecture": "alexnet", "input": {"shape": [3, 32, 32]}})
    assert bad.status_code == 422 and bad.json()["layer"] == "features.pool3"
    assert client.post("/api/graph", json={"architecture": "nope"}).status_code == 404
