from __future__ import annotations

import threading

import pytest


def test_memory_report(client) -> None:
    body = client.post(
        "/api/memory", json={"architecture": "mlp", "input": {"batch_size": 4}, "optimizer": "sgd"}
    ).json()
    assert body["peak_bytes"] == sum(body["breakdown"].values())
    assert body["phase"] in ("forward", "backward", "optimizer")
    assert body["formula"]["expression"].startswith("M + B*m*layers")
    assert any(row["saved_bytes"] for row in body["layers"])
    assert body["measured_peak_bytes"] is None


def test_measured(client) -> None:
    body = client.post(
        "/api/memory",
        json={"architecture": "lenet5", "input": {"batch_size": 8}, "mode": "inference", "measure": True},
    ).json()
    assert body["measured_peak_bytes"] > 0
    assert abs(body["error_percent"]) < 5


def test_over_budget_is_413(client, settings) -> None:
    settings.memory_budget_mb = 16
    response = client.post("/api/memory", json={"architecture": "alexnet", "measure": True})
    assert response.status_code == 413
    assert "budget" in response.json()["detail"]


def test_estimates_are_not_limited_by_the_budget(client, settings) -> None:
    settings.memory_budget_mb = 16
    response = client.post("/api/memory", json={"architecture": "alexnet"})
    assert response.status_code == 200


def test_busy_device_is_503(client, app, settings) -> None:
    settings.real_run_timeout_s = 0.2
    client.get("/api/health")  # the service for these settings
    gate = app.state.service.gate
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with gate.held():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    try:
        response = client.post("/api/memory", json={"architecture": "mlp", "measure": True})
    finally:
        release.set()
        thread.join()
    assert response.status_code == 503
    assert "busy" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"architecture": "mlp", "mode": "eval"}, "mode"),
        ({"architecture": "mlp", "optimizer": "lion"}, "optimizer"),
        ({"architecture": "mlp", "precision": "fp8"}, "precision"),
        ({"architecture": "mlp", "dtype": "float16", "precision": "bf16"}, "dtype"),
    ],
)
def test_bad_memory_fields(client, body: dict, field: str) -> None:
    response = client.post("/api/memory", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_memory_csv(client) -> None:
    response = client.post("/api/memory?format=csv", json={"architecture": "lenet5"})
    assert response.text.startswith("path,type,saved_bytes,output_bytes")


def test_optimizer_overview_over_fsdp_says_which_optimizer_cannot_run(client) -> None:
    """Every optimizer's training step over 2 GPUs with FSDP; Adafactor, which cannot step FSDP2's shards, is
    refused in its place, and the others still come."""
    body = {"architecture": "mlp", "input": {"batch_size": 2}, "gpus": 2, "sharding": "fsdp"}
    response = client.post("/api/memory/optimizers", json=body)
    assert response.status_code == 200, response.text
    training = response.json()["training"]
    assert training["adafactor"]["kind"] == "refused" and "FSDP2" in training["adafactor"]["detail"]
    assert training["adamw"]["gpus"] == 2 and training["adamw"]["peak_bytes"] > training["sgd"]["peak_bytes"]


def test_recipes_are_memory_requests_with_the_settings_they_name(client) -> None:
    """Every recipe's request is a body POST /api/memory accepts, and holds the settings its label promises."""
    from app.api.schemas import MemoryRequest

    recipes = {r["id"]: r for r in client.get("/api/recipes").json()["recipes"]}
    assert {"qlora-llama-3.1-8b", "lora-mistral-7b", "full-adamw-8bit-llama-3.1-8b"} <= set(recipes)
    for recipe in recipes.values():
        MemoryRequest.model_validate(recipe["request"])
    qlora = recipes["qlora-llama-3.1-8b"]["request"]
    assert qlora["quantization"] == {"method": "nf4", "double_quant": True, "block_size": 64}
    assert qlora["adapter"]["r"] == 16 and qlora["adapter"]["target_modules"] == "all-linear"
    assert qlora["optimizer"] == "paged-adamw-8bit" and qlora["config"] == {"preset": "llama-3.1-8b"}
    full = recipes["full-adamw-8bit-llama-3.1-8b"]["request"]
    assert "adapter" not in full and full["optimizer"] == "adamw-8bit"


def test_an_eight_bit_kv_cache_is_its_own_report(client) -> None:
    """The same generation with the cache in the compute dtype, then in fp8: two reports (not one from the
    cache), the second holding a byte per element; on a training step the option is refused naming it."""
    from tests.app.engine import tiny_models

    body = {
        "architecture": "huggingface",
        "config": tiny_models.LLAMA,
        "input": {"batch_size": 2, "shape": [16]},
        "mode": "generate",
        "new_tokens": 8,
    }
    full = client.post("/api/memory", json=body).json()
    fp8 = client.post("/api/memory", json={**body, "kv_cache_dtype": "fp8"}).json()
    assert fp8["kv_cache_bytes"] * 4 == full["kv_cache_bytes"] and fp8["kv_cache_dtype"] == "fp8"
    refused = client.post("/api/memory", json={**body, "mode": "train", "kv_cache_dtype": "int8"})
    assert refused.status_code == 422 and refused.json()["field"] == "kv_cache_dtype"
