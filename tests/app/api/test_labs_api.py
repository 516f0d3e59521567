"""GET /api/labs and POST /api/labs/{name}: the notes' example from an empty body, clear 4xx otherwise."""

from __future__ import annotations

import pytest


def test_lists_the_labs_with_their_schema_and_the_notes_example(client) -> None:
    body = client.get("/api/labs").json()
    names = [lab["name"] for lab in body]
    assert names[:2] == ["pooling", "convolution"] and "positional-encoding" in names and len(names) == 11
    pooling = body[0]
    assert pooling["defaults"]["kernel_size"] == 2 and len(pooling["defaults"]["matrix"]) == 6
    assert "MaxPool2d" in pooling["layer_types"]
    assert set(pooling["input_schema"]["properties"]) >= {"matrix", "kind", "kernel_size", "stride", "padding"}


def test_empty_body_computes_the_notes_example(client) -> None:
    response = client.post("/api/labs/pooling")
    assert response.status_code == 200, response.text
    assert response.json()["output"] == [[6, 5, 3], [7, 8, 7], [2, 9, 4]]
    dropout = client.post("/api/labs/dropout", json={}).json()
    assert dropout["train_output"] == [4, 0, -6, 0, 10] and dropout["eval_output"] == [2, 8, -3, 11, 5]


def test_the_students_numbers(client) -> None:
    body = {"matrix": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "kind": "avg", "kernel_size": 2, "stride": 1}
    assert client.post("/api/labs/pooling", json=body).json()["output"] == [[3, 4], [6, 7]]
    attention = client.post(
        "/api/labs/attention", json={"q": [[1, 0]], "k": [[1, 0], [0, 1]], "v": [[1, 2], [3, 4]], "causal": False}
    ).json()
    assert attention["scores"] == [[[1, 0]]]


def test_unknown_lab_is_404_and_bad_values_422_naming_the_field(client) -> None:
    missing = client.post("/api/labs/nope")
    assert missing.status_code == 404 and "pooling" in missing.json()["detail"]
    bad = client.post("/api/labs/softmax", json={"logits": [1, 2], "target": 7})
    assert bad.status_code == 422 and "target 7" in bad.json()["detail"]
    unknown_field = client.post("/api/labs/pooling", json={"kernel": 2})
    assert unknown_field.status_code == 422 and unknown_field.json()["field"] == "kernel"
    too_big = client.post("/api/labs/pooling", json={"matrix": [[1] * 40] * 40})
    assert too_big.status_code == 422 and too_big.json()["field"] == "matrix"


def test_not_a_number_is_a_422_and_an_overflow_is_valid_json(client) -> None:
    import json

    nan = client.post(
        "/api/labs/softmax", content='{"logits": [NaN, 1.0]}', headers={"content-type": "application/json"}
    )
    assert nan.status_code == 422 and nan.json()["field"] == "logits.0"
    wrong = client.post("/api/labs/batchnorm", json={"gamma": [1, 2]})
    assert wrong.status_code == 422 and wrong.json()["field"] == "gamma" and "3 features" in wrong.json()["detail"]
    overflow = client.post("/api/labs/backprop", json={"x": [1e300, 1e300], "activation": "relu"})
    assert overflow.status_code == 200
    assert json.loads(overflow.text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["loss"] == "inf"
