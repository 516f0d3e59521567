from __future__ import annotations

import csv
import io

import pytest

ALEXNET = {"architecture": "alexnet", "input": {"batch_size": 2}}


def test_summary_totals_and_layers(client) -> None:
    body = client.post("/api/summary", json=ALEXNET).json()
    assert body["totals"]["params"] == 62_378_344
    assert body["totals"]["output_shape"] == [2, 1000]
    conv1 = next(row for row in body["layers"] if row["path"] == "features.conv1")
    assert conv1["output_shape"] == [2, 96, 55, 55]
    assert conv1["flops"] == 2 * conv1["macs"]
    assert "floor((224 + 2*2 - 11)/4) + 1 = 55" in conv1["explain"][0]
    assert set(conv1) >= {
        "path",
        "type",
        "depth",
        "input_shape",
        "output_shape",
        "params",
        "macs",
        "flops",
        "output_bytes",
        "explain",
    }


def test_the_documented_example(client) -> None:
    request = {
        "architecture": "resnet",
        "config": {"depth": 50},
        "input": {"batch_size": 32, "shape": [3, 224, 224]},
        "dtype": "float32",
    }
    body = client.post("/api/summary", json=request).json()
    assert body["totals"]["params"] == 25_557_032
    assert body["totals"]["output_shape"] == [32, 1000]


@pytest.mark.parametrize("how", ["query", "accept"])
def test_csv(client, how: str) -> None:
    if how == "query":
        response = client.post("/api/summary?format=csv", json=ALEXNET)
    else:
        response = client.post("/api/summary", json=ALEXNET, headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sum(int(r["params"]) for r in rows) == 62_378_344
    assert rows[0]["type"] == "AlexNet"


def test_repeated_request_is_served_from_the_cache(client, app) -> None:
    first = client.post("/api/summary", json={"architecture": "resnet", "config": {"depth": 18}})
    cache = app.state.service.cache
    hits = cache.hits
    second = client.post("/api/summary", json={"architecture": "resnet"})  # same selection: defaults filled in
    assert cache.hits == hits + 1
    assert first.content == second.content


def test_unknown_architecture(client) -> None:
    response = client.post("/api/summary", json={"architecture": "resnext"})
    assert response.status_code == 404
    assert "resnet" in response.json()["known"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"architecture": "resnet", "config": {"depth": 19}}, "config.depth"),
        ({"architecture": "mlp", "config": {"hidden": [10, "wide"]}}, "config.hidden.1"),
        ({"architecture": "alexnet", "input": {"batch_size": 0}}, "input.batch_size"),
        ({"architecture": "alexnet", "input": {"batch_size": "two"}}, "input.batch_size"),
        ({"architecture": "alexnet", "dtype": "int8"}, "dtype"),
        ({"architecture": "alexnet", "extra": 1}, "extra"),
        ({}, "architecture"),
        ({"architecture": "gpt", "input": {"shape": [3, 224, 224]}}, "input_size"),
    ],
)
def test_bad_fields_say_which(client, body: dict, field: str) -> None:
    response = client.post("/api/summary", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["field"] == field
    assert payload["detail"] and "Traceback" not in response.text


def test_shapes_that_do_not_fit_name_the_layer(client) -> None:
    response = client.post("/api/summary", json={"architecture": "alexnet", "input": {"shape": [3, 64, 64]}})
    assert response.status_code == 422
    body = response.json()
    assert body["layer"] == "classifier.fc1"
    assert body["input_shape"] == [1, 256]
    assert body["expected"] == "(*, 9216)"


def test_sequential_off_the_whitelist(client) -> None:
    spec = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}, {"type": "exec", "code": "1"}]}
    response = client.post("/api/summary", json={"architecture": "sequential", "config": spec})
    assert response.status_code == 422
    assert response.json()["field"] == "config.layers.1"
    assert "not allowed" in response.json()["detail"]


def test_oversized_request(client) -> None:
    spec = {"layers": [{"type": "ReLU"}] * 20000}
    response = client.post("/api/summary", json={"architecture": "sequential", "config": spec})
    assert response.status_code == 413


def test_module_limit(client, settings) -> None:
    settings.max_modules = 50
    response = client.post("/api/summary", json={"architecture": "resnet", "config": {"depth": 50}})
    assert response.status_code == 422
    assert "modules" in response.json()["detail"]


def test_malformed_json(client) -> None:
    response = client.post("/api/summary", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_every_input_by_shape_and_dtype(client) -> None:
    """The encoder-decoder fed as two token tensors spelled out: source 10 and target 7 tokens at batch 2."""
    body = {
        "architecture": "transformer",
        "config": {"preset": "tiny"},
        "input": {"tensors": [{"shape": [2, 10], "dtype": "int64"}, {"shape": [2, 7], "dtype": "int64"}]},
    }
    report = client.post("/api/summary", json=body).json()
    assert report["input_shapes"] == [[2, 10], [2, 7]] and report["batch_size"] == 2
    assert report["totals"]["output_shape"] == [2, 7, 1000]
    both = {**body, "input": {**body["input"], "shape": [10, 7]}}
    assert client.post("/api/summary", json=both).status_code == 422


def test_strict_types(client) -> None:
    """true is not a batch size and 0 is not a boolean: strict types, a 422 naming the field."""
    bad = client.post("/api/summary", json={"architecture": "mlp", "input": {"batch_size": True}})
    assert bad.status_code == 422 and bad.json()["field"] == "input.batch_size"
    bad = client.post("/api/memory", json={"architecture": "mlp", "measure": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "measure"
