"""Sizing through the API: generation for every family that generates, the GPU catalog, max batch, step time."""

from __future__ import annotations

import pytest

GENERATING = [
    ("transformer", {}),  # an encoder-decoder: keeps its own source and target inputs
    ("transformer", {"preset": "tiny"}),
    ("gpt", {"preset": "nano"}),
    ("huggingface", {"preset": "gpt2"}),
    ("huggingface", {"preset": "t5-base"}),
]


@pytest.mark.parametrize(("architecture", "config"), GENERATING)
def test_generation_without_a_prompt_length(client, architecture: str, config: dict) -> None:
    """The explorer's request: no input shape, the family's default prompt, new tokens on top."""
    response = client.post(
        "/api/memory", json={"architecture": architecture, "config": config, "mode": "generate", "new_tokens": 8}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "generate" and body["kv_cache_bytes"] > 0
    assert body["peak_bytes"] >= body["kv_cache_bytes"]


def test_generation_past_the_context_is_a_422_naming_new_tokens(client) -> None:
    response = client.post(
        "/api/memory",
        json={"architecture": "gpt", "config": {"preset": "nano"}, "mode": "generate", "new_tokens": 100_000},
    )
    assert response.status_code == 422 and response.json()["field"] == "new_tokens"


def test_gpu_catalog_max_batch_and_step_time(client) -> None:
    catalog = client.get("/api/gpus").json()
    gpus = {gpu["id"]: gpu for gpu in catalog["gpus"]}
    assert {"t4-16gb", "h100-80gb", "mi300x-192gb"} <= set(gpus)
    h100 = gpus["h100-80gb"]
    # usable = (capacity - the stated CUDA context reserve) x the allocator's share
    assert h100["usable_bytes"] == int((h100["memory_bytes"] - catalog["reserve_bytes"]) * catalog["allocator_share"])
    fit = client.post(
        "/api/max-batch", json={"architecture": "resnet", "gpu": "t4-16gb", "mode": "train", "optimizer": "adam"}
    ).json()
    assert fit["peak_bytes"] <= fit["usable_bytes"] < fit["next_peak_bytes"], fit
    step = client.post("/api/step-time", json={"architecture": "resnet", "gpu": "h100-80gb"}).json()
    assert step["seconds"] > 0 and step["compute_seconds"] > 0


def test_max_context_endpoint(client) -> None:
    """GPT-2 generating 64 tokens at batch 512 on a T4: the longest prompt fits, one more token does not; a given
    shape is refused (the length is the endpoint's to choose), and so is a model without tokens."""
    body = {
        "architecture": "gpt",
        "config": {"preset": "gpt2"},
        "input": {"batch_size": 512},
        "gpu": "t4-16gb",
        "mode": "generate",
        "new_tokens": 64,
        "precision": "bf16",
    }
    fit = client.post("/api/max-context", json=body).json()
    assert fit["kind"] == "max-context" and fit["context_tokens"] == fit["prompt_tokens"] + 64, fit
    assert fit["limited_by_config"] or fit["peak_bytes"] <= fit["usable_bytes"] < fit["next_peak_bytes"], fit
    shaped = client.post("/api/max-context", json={**body, "input": {"batch_size": 2, "shape": [128]}})
    assert shaped.status_code == 422 and shaped.json()["field"] == "input.shape"
    images = client.post("/api/max-context", json={"architecture": "resnet", "gpu": "t4-16gb"})
    assert images.status_code == 422 and images.json()["field"] == "architecture"


def test_adapter_on_memory_and_max_batch(client) -> None:
    """A LoRA adapter on POST /api/memory and /api/max-batch: fewer bytes than full fine-tuning, and a bad rank or
    a target the model lacks is a 422 naming the field."""
    body = {"architecture": "gpt", "config": {"preset": "nano"}, "optimizer": "adamw"}
    full = client.post("/api/memory", json=body).json()
    lora = client.post("/api/memory", json={**body, "adapter": {"r": 4, "target_modules": ["q_proj", "v_proj"]}})
    assert lora.status_code == 200 and lora.json()["peak_bytes"] < full["peak_bytes"]
    assert lora.json()["trainable_parameters"] < full["trainable_parameters"] / 10
    fit = client.post("/api/max-batch", json={**body, "gpu": "t4-16gb", "adapter": {"r": 4}}).json()
    assert fit["batch_size"] >= 1
    for adapter, field in (({"r": 0}, "adapter.r"), ({"r": 4, "target_modules": ["wq"]}, "adapter.target_modules")):
        refused = client.post("/api/memory", json={**body, "adapter": adapter})
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text


def test_serving_endpoint(client) -> None:
    body = {
        "architecture": "gpt",
        "config": {"preset": "gpt2"},
        "gpu": "t4-16gb",
        "prompt_tokens": 512,
        "output_tokens": 256,
    }
    report = client.post("/api/serving", json=body)
    assert report.status_code == 200, report.text
    data = report.json()
    assert data["kv_tokens"] == data["kv_blocks"] * data["block_size"] and data["estimate"] is True
    bad = client.post("/api/serving", json={**body, "block_size": 12})
    assert bad.status_code == 422
    images = client.post("/api/serving", json={"architecture": "resnet"})
    assert images.status_code == 422


def test_pipeline_stages_on_memory_and_the_overview(client) -> None:
    """pp and microbatches on POST /api/memory give every stage; the overview sizes inference as one GPU's; a
    layout that does not divide is a 422 naming the field and both numbers."""
    hf = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    }
    body = {"architecture": "huggingface", "config": {"hf_config": hf}, "input": {"batch_size": 4, "shape": [32]}}
    report = client.post("/api/memory", json={**body, "pp": 2, "microbatches": 4}).json()
    assert [s["in_flight_microbatches"] for s in report["stages"]] == [2, 1]
    assert report["peak_bytes"] == max(s["peak_bytes"] for s in report["stages"]) and report["pp"] == 2
    overview = client.post("/api/memory/optimizers", json={**body, "pp": 2}).json()
    assert overview["inference"]["pp"] == 1 and overview["training"]["adamw"]["pp"] == 2
    refused = client.post("/api/memory", json={**body, "pp": 3})
    assert refused.status_code == 422 and "pp=3" in refused.text and "num_hidden_layers=4" in refused.text
    uneven = client.post("/api/memory", json={**body, "pp": 2, "microbatches": 3})
    assert uneven.status_code == 422 and "microbatches" in uneven.text
