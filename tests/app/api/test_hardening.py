"""Requests of a few hundred bytes must not cost gigabytes or minutes, and a deadline stops the work itself.

Each case is a request that once cost gigabytes, ran past its limit or gave a 500.
Each test asserts the status, the response's size and, where memory was the
attack, that no process of the service (the server and its engine workers) peaked
past its limit while answering: peaks are read from /proc (VmHWM), reset before
the request.
"""

from __future__ import annotations

import io
import os
import threading
import time
from functools import cache

import pytest
from PIL import Image
from safetensors.torch import save

from app.api.workers import peak_resident_bytes, reset_peak, resident_bytes
from app.engine.live.device_lock import DeviceGate

MiB = 2**20


@cache
def png(width: int, height: int) -> bytes:
    """A flat grey PNG: a few KB on the wire, width x height once decoded."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 200).save(buffer, "PNG")
    return buffer.getvalue()


class Peaks:
    """The service's processes' peak resident memory while a block runs."""

    def __init__(self, app) -> None:
        self.service = app.state.service

    def pids(self) -> dict[str, list[int]]:
        return {name: lane.pids() for name, lane in self.service.lanes().items()}

    def __enter__(self) -> Peaks:
        self.server_before = resident_bytes(os.getpid())
        reset_peak(os.getpid())
        for pids in self.pids().values():
            for pid in pids:
                reset_peak(pid)
        return self

    def __exit__(self, *exc) -> None:
        self.server = peak_resident_bytes(os.getpid()) - self.server_before
        self.workers = {
            name: max((peak_resident_bytes(pid) for pid in pids), default=0) for name, pids in self.pids().items()
        }

    def assert_within_limits(self, server_growth: int = 256 * MiB) -> None:
        assert self.server < server_growth, f"the server grew by {self.server / MiB:,.0f} MiB"
        for name, peak in self.workers.items():
            limit = self.service.memory_limit(name)
            assert peak <= limit, f"the {name} worker peaked at {peak / MiB:,.0f} MiB, over {limit / MiB:,.0f} MiB"


def _error(response, status: int, field: str | None = None, max_bytes: int = 4096) -> dict:
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < max_bytes
    body = response.json()
    assert body["detail"] and "Traceback" not in body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.mark.parametrize(("width", "height"), [(400_000, 100), (600_000, 66), (39_000_000, 1)])
def test_very_wide_images_are_refused_before_decoding(client, app, width: int, height: int) -> None:
    data = png(width, height)
    assert len(data) < 64 * 1024  # a small upload
    with Peaks(app) as peaks:
        response = client.post(
            "/api/feature-maps", data={"architecture": "alexnet"}, files={"image": ("wide.png", data, "image/png")}
        )
    body = _error(response, 422, "image")
    assert f"{width:,} x {height:,}" in body["detail"]
    peaks.assert_within_limits()
    assert peaks.workers["live"] < 1024 * MiB  # once 2.5 to 4.1 GB


WIDE_CONV = {
    "input_shape": [3, 1, 1],
    "layers": [{"type": "Conv2d", "in_channels": 3, "out_channels": 262_144, "kernel_size": 1}],
}


def test_feature_maps_describe_only_the_channels_drawn(client, app) -> None:
    """262,144 channels, the path asked for four times: one layer, 64 channels' statistics (was 122 MB)."""
    body = {"architecture": "sequential", "config": WIDE_CONV, "sample": "cat", "layers": ["0"] * 4}
    with Peaks(app) as peaks:
        response = client.post("/api/feature-maps", json={**body, "channel_offset": 128})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) < 64 * 1024
    (layer,) = response.json()["layers"]
    assert layer["shape"] == [262_144, 1, 1]
    assert layer["channel_offset"] == 128 and layer["channels_shown"] == 64
    assert len(layer["stats"]) == 64
    peaks.assert_within_limits()


def test_feature_maps_over_the_response_limit_are_refused_before_the_run(client, app, settings) -> None:
    """The size is predicted from the layers' shapes before the run; the layers it says fit do fit."""
    convs = [f"features.{i}" for i in (0, 3, 6, 8, 11, 13, 16, 18)]
    settings.memory_budget_mb = 1024  # VGG-11's weights: 507 MiB
    body = {"architecture": "vgg", "config": {"depth": 11}, "sample": "cat", "layers": convs}
    whole = client.post("/api/feature-maps", json=body)
    assert whole.status_code == 200
    settings.max_response_mb = 2  # the prediction is an upper bound (PNGs counted stored, uncompressed)
    assert len(whole.content) > MiB
    with Peaks(app) as peaks:
        refused = client.post("/api/feature-maps", json=body)
    detail = _error(refused, 413, "layers")["detail"]
    assert "MiB limit" in detail
    fit = int(detail.split("ask for at most ")[1].split()[0])
    assert 1 <= fit < len(convs)
    assert peaks.workers["live"] <= app.state.service.memory_limit("live")
    fitting = client.post("/api/feature-maps", json={**body, "layers": convs[:fit]})
    assert fitting.status_code == 200, fitting.text[:300]
    assert len(fitting.content) <= 2 * MiB


def test_attention_over_the_response_limit_is_refused_before_the_model_is_built(client, app, settings) -> None:
    """A GPT within its config limits (d_model 1024, 256 heads, 24 layers) once returned 138 MB at 4.7 GB peak."""
    settings.memory_budget_mb = 4096
    config = {"d_model": 1024, "heads": 256, "layers": 24}
    with Peaks(app) as peaks:
        response = client.post("/api/attention", json={"architecture": "gpt", "config": config, "text": "x " * 1000})
    body = _error(response, 413, "layers")
    assert "head matrices" in body["detail"]
    peaks.assert_within_limits()
    assert peaks.workers["live"] < 1024 * MiB  # the 300M-parameter model was never built


def test_attention_returns_the_layers_and_heads_asked_for(client) -> None:
    body = {"architecture": "gpt", "config": {"preset": "nano"}, "text": "attention is all you need"}
    everything = client.post("/api/attention", json=body)
    chosen = client.post("/api/attention", json={**body, "layers": [1], "heads": [0, 2]})
    assert chosen.status_code == 200, chosen.text[:300]
    report = chosen.json()
    assert [layer["index"] for layer in report["attention"]] == [1]
    assert report["attention"][0]["head_indices"] == [0, 2]
    assert len(report["layers"]) == len(everything.json()["layers"])  # every layer is still listed, for the next choice
    assert len(chosen.content) < len(everything.content)
    bad = client.post("/api/attention", json={**body, "layers": [99]})
    _error(bad, 422, "layers")


def test_a_timed_out_request_stops_its_work(client, app, settings) -> None:
    """The 504 comes at the deadline; the worker is killed, the device lock free and the lane empty at once."""
    settings.request_timeout_s = 1.0
    settings.memory_budget_mb = 2048
    heavy = {"architecture": "resnet", "config": {"depth": 50}, "mode": "inference", "measure": True}
    heavy["input"] = {"batch_size": 32}
    service = app.state.service
    start = time.monotonic()
    response = client.post("/api/memory", json=heavy)
    elapsed = time.monotonic() - start
    _error(response, 504)
    assert elapsed < 1.0 + 2.0
    live = service.lanes()["live"]
    assert live.stats.busy == 0
    killed = live.stats.killed_pids[-1]
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # the process is gone, not just abandoned
    gate = DeviceGate(1, 0.1, device=service.device, instance=service.instance)
    with gate.held():  # the lock it held is free: no 503 for the next real run
        pass
    settings.request_timeout_s = 60.0
    again = client.post("/api/memory", json={"architecture": "lenet5", "measure": True})
    assert again.status_code == 200, again.text[:300]


def test_one_deadline_for_the_whole_request(client, settings) -> None:
    """A comparison makes three computations per selection; all of them share the request's deadline."""
    settings.request_timeout_s = 1.0
    big = [
        {"architecture": "gpt", "config": {"preset": "gpt2-xl"}, "input": {"shape": [1024]}, "dtype": d}
        for d in ("float32", "bfloat16", "float16", "float64")
    ]
    selections = [*big, *({**s, "input": {"shape": [512]}} for s in big)]
    start = time.monotonic()
    response = client.post("/api/compare", json={"selections": selections})
    elapsed = time.monotonic() - start
    _error(response, 504)
    assert elapsed < 1.0 + 2.0


def test_quick_requests_do_not_wait_for_real_runs(client, app, settings) -> None:
    """A real run waiting on the device holds the live lane; an uncached summary still answers at once."""
    settings.real_run_timeout_s = 30
    service = app.state.service
    gate = DeviceGate(1, 5, device=service.device, instance=service.instance)
    results: dict[str, int] = {}
    with gate.held():  # another instance's real run, as far as the worker can tell
        thread = threading.Thread(
            target=lambda: results.setdefault(
                "real", client.post("/api/memory", json={"architecture": "mlp", "measure": True}).status_code
            )
        )
        thread.start()
        deadline = time.monotonic() + 30
        while service.lanes()["live"].stats.busy == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        summary = client.post("/api/summary", json={"architecture": "resnet", "config": {"depth": 34}})
        assert summary.status_code == 200
        assert thread.is_alive()  # the real run was still waiting when the summary came back
    thread.join(30)
    assert results["real"] == 200


def test_over_budget_real_runs_are_refused_from_the_weights_alone(client, settings) -> None:
    settings.memory_budget_mb = 64
    response = client.post("/api/feature-maps", json={"architecture": "vgg", "sample": "cat"})
    body = _error(response, 413)
    assert "budget" in body["detail"]


NESTED = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"json": None, "content": '{"architecture": "alexnet", "config": {"a": ' + NESTED + "}}"}, "body"),
        ({"files": {"architecture": (None, "alexnet"), "sample": (None, "cat"), "config": (None, NESTED)}}, "config"),
        ({"files": {"architecture": (None, "alexnet"), "sample": (None, "cat"), "layers": (None, NESTED)}}, "layers"),
    ],
)
def test_deeply_nested_bodies_are_422(client, kwargs: dict, field: str) -> None:
    if "content" in kwargs:
        kwargs = {"content": kwargs["content"], "headers": {"content-type": "application/json"}}
    _error(client.post("/api/feature-maps", **kwargs), 422, field)


def test_deeply_nested_json_on_other_routes_is_422(client) -> None:
    body = '{"architecture": "alexnet", "config": {"a": ' + NESTED + "}}"
    response = client.post("/api/summary", content=body, headers={"content-type": "application/json"})
    _error(response, 422, "body")


@pytest.mark.parametrize("name", ["forward", "training", "_modules", "__class__"])
def test_builder_names_that_shadow_module_attributes_are_422(client, name: str) -> None:
    config = {"input_shape": [4], "layers": [{"type": "ReLU", "name": name}]}
    body = _error(client.post("/api/summary", json={"architecture": "sequential", "config": config}), 422)
    assert "reserved" in body["detail"] and name in body["detail"]


def test_group_norm_with_zero_groups_is_422(client) -> None:
    config = {"input_shape": [4, 8, 8], "layers": [{"type": "GroupNorm", "num_groups": 0, "num_channels": 4}]}
    body = _error(client.post("/api/summary", json={"architecture": "sequential", "config": config}), 422)
    assert "GroupNorm" in body["detail"]


def test_softmax_dims_are_checked_as_pytorch_checks_them(client) -> None:
    import torch

    with pytest.raises(IndexError):  # the reference: PyTorch on a real tensor
        torch.nn.Softmax(dim=100)(torch.zeros(1, 10))
    config = {"input_shape": [10], "layers": [{"type": "Softmax", "dim": 100}]}
    body = _error(client.post("/api/summary", json={"architecture": "sequential", "config": config}), 422)
    assert body["layer"] == "0" and "range" in body["detail"]
    config["layers"][0]["dim"] = -1
    assert client.post("/api/summary", json={"architecture": "sequential", "config": config}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"architecture": "mlp", "input": {"batch_size": True}}, "input.batch_size"),
        ({"architecture": "mlp", "measure": 0}, "measure"),
        ({"architecture": "mlp", "input": {"batch_size": 2.0}}, "input.batch_size"),
    ],
)
def test_types_are_strict(client, body: dict, field: str) -> None:
    _error(client.post("/api/memory", json=body), 422, field)


def test_a_malformed_body_names_the_body(client) -> None:
    response = client.post(
        "/api/memory", content=b'{"architecture": "mlp",', headers={"content-type": "application/json"}
    )
    _error(response, 422, "body")


def test_training_a_model_without_parameters_says_so(client) -> None:
    config = {"input_shape": [10], "layers": [{"type": "ReLU"}]}
    body = _error(client.post("/api/memory", json={"architecture": "sequential", "config": config}), 422, "mode")
    assert "no trainable parameters" in body["detail"]


def test_a_weights_file_with_60000_tensors_gets_a_short_error(client) -> None:
    import torch

    tensors = {f"t{i}": torch.zeros(1) for i in range(60_000)}
    data = save(tensors)
    response = client.post(
        "/api/feature-maps",
        data={"architecture": "lenet5", "sample": "cat"},
        files={"weights_file": ("many.safetensors", data, "application/octet-stream")},
    )
    body = _error(response, 422, "weights", max_bytes=16 * 1024)
    assert "60,0" in body["detail"] or "more" in body["detail"]


def test_security_headers(client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "<script>" not in page.text  # no inline code: the policy would block it
    for response in (page, client.get("/api/health"), client.post("/api/summary", json={"architecture": "nope"})):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_local_assets_only(client, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text and "cdn" not in page.text.lower()
    for asset in (
        ("/static/vendor/swagger-ui-bundle.js", "/static/vendor/swagger-ui.css", "/static/js/swagger-init.js")
        if path == "/docs"
        else ("/static/vendor/redoc.standalone.js",)
    ):
        assert asset in page.text
        fetched = client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 100


def test_openapi_refs_resolve_and_limits_are_documented(client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    refs = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert "ChannelRequest" in refs
    assert refs <= set(schemas), refs - set(schemas)
    feature_maps = document["paths"]["/api/feature-maps"]["post"]["responses"]
    assert "400" in feature_maps and "413" in feature_maps
    assert "MiB" in document["info"]["description"]  # the response and memory limits are stated


def test_progress_of_a_request(client) -> None:
    response = client.post(
        "/api/summary", json={"architecture": "resnet", "config": {"depth": 101}}, headers={"X-Request-ID": "probe-1"}
    )
    assert response.headers["x-request-id"] == "probe-1"
    progress = client.get("/api/progress/probe-1").json()
    assert progress["state"] == "done" and progress["done"] == progress["total"]
    assert client.get("/api/progress/never-sent").status_code == 404


def test_the_report_cache_is_bounded_in_bytes(app, settings) -> None:
    from fastapi.testclient import TestClient

    from app.api.service import ReportService

    settings.cache_mb = 1
    app.state.service = ReportService(settings)
    with TestClient(app) as client:
        sizes = [
            len(client.post("/api/summary", json={"architecture": "resnet", "config": {"depth": d}}).content)
            for d in (18, 34, 50, 101, 152)
        ]
        sizes += [
            len(client.post("/api/summary", json={"architecture": "vit", "config": {"preset": p}}).content)
            for p in ("vit_b_16", "vit_l_16")
        ]
    cache = app.state.service.cache
    assert sum(sizes) > MiB  # more than the cache may hold...
    assert 0 < cache.bytes <= MiB  # ...so the oldest went
    assert len(cache) < len(sizes)
