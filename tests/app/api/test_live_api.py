"""The live endpoints: feature maps, samples, weights, attention, and their 4xx answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save

HAND_SET = {
    "input_shape": [1, 5, 5],
    "layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "bias": False}],
}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_hand_set_weights_on_a_known_image(client) -> None:
    pixels = np.arange(25).reshape(5, 5) * 10
    kernel = torch.tensor([[[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]])  # Laplacian
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "sequential", "config": json.dumps(HAND_SET), "channel_layer": "0", "channel_index": "0"},
        files={
            "image": ("ramp.png", _png(pixels), "image/png"),
            "weights_file": ("laplace.safetensors", save({"0.weight": kernel}), "application/octet-stream"),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    x = pixels / 255.0
    k = kernel[0, 0].numpy()
    expected = [[float((x[i : i + 3, j : j + 3] * k).sum()) for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(body["channel"]["values"], expected, atol=1e-5)
    assert body["weights"]["source"] == "upload"
    assert body["layers"][0]["shape"] == [1, 3, 3]


def test_alexnet_maps_shrink_as_in_the_course(client) -> None:
    body = client.post("/api/feature-maps", json={"architecture": "alexnet", "sample": "cat"}).json()
    sizes = [layer["shape"][-1] for layer in body["layers"]]
    assert sizes[0] == 55 and sizes[-1] == 6
    assert sorted(set(sizes), reverse=True) == [55, 27, 13, 6]
    assert body["weights"]["source"] == "random" and "random" in body["weights"]["label"]
    assert body["input"]["shape"] == [1, 3, 224, 224]
    assert body["layers"][0]["grid_png"].startswith("data:image/png;base64,")


def test_resnet18_stage_outputs_stay_small(client) -> None:
    response = client.post("/api/feature-maps", json={"architecture": "resnet", "sample": "coffee"})
    assert [layer["path"] for layer in response.json()["layers"]] == [
        "conv1",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert len(response.content) < 3 * 2**20


def test_trained_lenet_reads_a_drawn_digit(client) -> None:
    canvas = np.zeros((224, 224), dtype=np.uint8)
    canvas[30:195, 100:124] = 255  # a vertical stroke: a one
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "lenet5", "config": json.dumps({"variant": "modern"}), "weights": "trained"},
        files={"image": ("drawing.png", _png(canvas), "image/png")},
    )
    body = response.json()
    assert body["prediction"]["top"][0]["label"] == "1"
    assert abs(sum(body["prediction"]["probabilities"]) - 1) < 1e-4
    assert "trained" in body["weights"]["label"]


@pytest.mark.parametrize(
    ("files", "data", "status", "field"),
    [
        ({"image": ("a.png", b"not an image", "image/png")}, {"architecture": "alexnet"}, 415, "image"),
        (
            {"image": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png")},
            {"architecture": "alexnet"},
            415,
            "image",
        ),
        ({}, {"architecture": "alexnet"}, 422, "image"),
        ({"image": ("a.png", _png(np.zeros((8, 8))), "image/png")}, {"architecture": "gpt"}, 422, "architecture"),
        (
            {
                "image": ("a.png", _png(np.zeros((8, 8))), "image/png"),
                "weights_file": ("w.pt", b"\x80\x04junk", "application/octet-stream"),
            },
            {"architecture": "lenet5"},
            422,
            "weights",
        ),
        ({"image": ("a.png", _png(np.zeros((8, 8))), "image/png")}, {"architecture": "nope"}, 404, "architecture"),
    ],
)
def test_bad_uploads(client, files, data, status, field) -> None:
    response = client.post("/api/feature-maps", data=data, files=files or {"dummy": ("x", b"", "text/plain")})
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_mismatched_weights_are_listed(client) -> None:
    wrong = {"c1.weight": torch.zeros(6, 3, 5, 5)}
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "lenet5"},
        files={
            "image": ("a.png", _png(np.zeros((32, 32))), "image/png"),
            "weights_file": ("w.safetensors", save(wrong), "application/octet-stream"),
        },
    )
    assert response.status_code == 422
    messages = [e["message"] for e in response.json()["errors"]]
    assert "c1.weight: the model has [6, 1, 5, 5], the file [6, 3, 5, 5]" in messages
    assert any(m.startswith("missing c3.weight") for m in messages)


def test_oversized_upload(client, settings) -> None:
    settings.max_upload_mb = 1
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "alexnet"},
        files={"image": ("big.png", b"0" * (2 * 2**20), "image/png")},
    )
    assert response.status_code == 413


def test_decompression_bomb(client, settings) -> None:
    settings.max_image_pixels = 1_000_000
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "alexnet"},
        files={"image": ("bomb.png", bomb.getvalue(), "image/png")},
    )
    assert response.status_code == 413


def test_wrong_content_type(client) -> None:
    response = client.post("/api/feature-maps", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_real_runs_obey_the_budget(client, settings) -> None:
    settings.memory_budget_mb = 16
    response = client.post("/api/feature-maps", json={"architecture": "vgg", "sample": "cat"})
    assert response.status_code == 413


def test_samples_and_weights(client) -> None:
    samples = client.get("/api/samples").json()
    assert {s["id"] for s in samples} == {"cat", "coffee", "astronaut", "rocket"}
    assert all(s["credit"] for s in samples)
    assert client.get(samples[0]["url"]).status_code == 200
    sources = {s["id"] for s in client.get("/api/weights?architecture=lenet5").json()}
    assert {"random", "trained"} <= sources
    assert "trained" not in {s["id"] for s in client.get("/api/weights?architecture=resnet").json()}


def test_attention_endpoint(client) -> None:
    body = client.post(
        "/api/attention",
        json={"architecture": "gpt", "config": {"preset": "nano"}, "text": "Attention is all you need."},
    ).json()
    assert "".join(body["tokens"]) == "Attention is all you need."
    assert len(body["attention"]) == 4 and body["attention"][0]["kind"] == "causal"
    heads = torch.tensor(body["attention"][0]["heads"])
    assert heads.shape == (4, len(body["tokens"]), len(body["tokens"]))
    assert torch.all(heads.triu(1) == 0)
    assert len(body["positional_encoding"]) == len(body["tokens"])
    assert body["merges"][0]["merged"] == body["merges"][0]["left"] + body["merges"][0]["right"]


def test_attention_bad_input(client) -> None:
    assert client.post("/api/attention", json={"architecture": "vgg", "text": "x"}).status_code == 422
    assert client.post("/api/attention", json={"architecture": "gpt", "text": ""}).status_code == 422
    response = client.post(
        "/api/attention", json={"architecture": "gpt", "config": {"preset": "nano", "vocab_size": 100}, "text": "hi"}
    )
    assert response.status_code == 422 and response.json()["field"] == "config.vocab_size"


def test_torchvision_files_in_the_local_cache_are_offered(client, settings, tmp_path, monkeypatch) -> None:
    import models

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.manual_seed(3)
    state = models.build_model("alexnet", {"variant": "torchvision"}).state_dict()
    torch.save(state, checkpoints / "alexnet-owt-7be5be79.pth")
    settings.engine_isolation = "thread"  # the patched cache directory is seen in this process only
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    sources = client.get("/api/weights?architecture=alexnet").json()
    offered = next(s for s in sources if s["id"].startswith("torchvision:"))
    assert offered["id"] == "torchvision:alexnet-owt-7be5be79.pth"
    assert offered["config"] == {"variant": "torchvision"}
    body = {"architecture": "alexnet", "config": {"variant": "torchvision"}, "sample": "cat", "weights": offered["id"]}
    response = client.post("/api/feature-maps", json=body)
    assert response.status_code == 200, response.text
    assert "torchvision" in response.json()["weights"]["label"]
    wrong = client.post("/api/feature-maps", json={**body, "config": {"variant": "original"}})
    assert wrong.status_code == 422 and wrong.json()["field"] == "config"
