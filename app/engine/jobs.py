"""The engine's entry points for the service's worker processes: plain arguments in, JSON bytes out.

Each job takes JSON-ready arguments (a normalized request) and a ``progress``
callback ``(stage, done, total)``, and returns the report's JSON, so a worker
process can run it and the service can cache and send it without rebuilding it.
Real runs (measure, feature maps, attention) keep their loaded models in this
process's cache and take the device lock the service passes them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import models

from .device_lock import DeviceGate
from .errors import InputError, MemoryBudgetError
from .live import (
    LiveModel,
    Upload,
    attention,
    check_attention,
    check_attention_request,
    check_feature_request,
    check_photo_input,
    feature_maps,
    load_model,
    text_limit,
)
from .lru import LRUCache
from .memory import estimate_memory
from .selection import META_MODELS, TensorSpec, inputs_from_specs
from .summary import summarize, trace_graph

Progress = Callable[[str, int, int], None]
_LIVE_MODELS: LRUCache[str, LiveModel] = LRUCache(2, None, LiveModel.param_bytes)


def _nothing(stage: str, done: int, total: int) -> None:
    """No one is listening."""


def engine_inputs(norm: dict[str, Any]) -> dict[str, Any]:
    """input_size, or input_data built from tensor specs (meta tensors: nothing allocated)."""
    if norm.get("tensors"):
        specs = [TensorSpec(tuple(t["shape"]), t["dtype"], t["name"]) for t in norm["tensors"]]
        return {"input_size": None, "input_data": inputs_from_specs(specs)}
    return {"input_size": norm["shape"]}


def _traced(trace: Callable[..., Any], norm: dict[str, Any], max_modules: int | None, progress: Progress) -> bytes:
    report = trace(
        norm["architecture"],
        norm["config"],
        batch_size=norm["batch_size"],
        dtype=norm["dtype"],
        max_modules=max_modules,
        progress=progress,
        **engine_inputs(norm),
    )
    return report.model_dump_json().encode()


def summary(norm: dict[str, Any], max_modules: int | None = None, progress: Progress = _nothing) -> bytes:
    return _traced(summarize, norm, max_modules, progress)


def graph(norm: dict[str, Any], max_modules: int | None = None, progress: Progress = _nothing) -> bytes:
    """Nodes and edges of the same trace as the summary."""
    return _traced(trace_graph, norm, max_modules, progress)


@contextlib.contextmanager
def _device_lock(lock: dict[str, Any] | None, progress: Progress) -> Iterator[None]:
    """The instance's device lock (a file lock: released by the kernel if this process is killed)."""
    if not lock:
        yield
        return
    progress("waiting for the device", 0, 1)
    gate = DeviceGate(1, lock["timeout_s"], device=lock["device"], instance=lock["instance"])
    with gate.held():
        progress("running", 0, 1)
        yield


def memory(
    norm: dict[str, Any],
    options: dict[str, str],
    measure: bool = False,
    device: str | None = None,
    budget_bytes: int | None = None,
    max_modules: int | None = None,
    lock: dict[str, Any] | None = None,
    progress: Progress = _nothing,
) -> bytes:
    progress("estimating", 0, 1)
    report = estimate_memory(
        norm["architecture"],
        norm["config"],
        batch_size=norm["batch_size"],
        measure=measure,
        device=device,
        budget_bytes=budget_bytes,
        max_modules=max_modules,
        real_run=_device_lock(lock, progress) if measure else None,
        **options,
        **engine_inputs(norm),
    )
    return report.model_dump_json().encode()


def max_batch_job(
    norm: dict[str, Any],
    options: dict[str, Any],
    gpu: str,
    max_modules: int | None = None,
    progress: Progress = _nothing,
) -> bytes:
    """The largest batch that fits ``gpu`` for a normalized selection (its batch size is the engine's to choose)."""
    from .sizing import max_batch

    progress("estimating batch sizes", 0, 1)
    inputs = engine_inputs(norm)
    if inputs.get("input_data") is not None:
        raise InputError("max-batch chooses the batch size: give input.shape, not input.tensors", "input.tensors")
    report = max_batch(norm["architecture"], norm["config"], gpu=gpu, input_size=inputs["input_size"], **options)
    return report.model_dump_json().encode()


def step_time_job(
    norm: dict[str, Any],
    options: dict[str, Any],
    gpu: str,
    utilization: float = 0.4,
    bandwidth_efficiency: float = 0.8,
    max_modules: int | None = None,
    progress: Progress = _nothing,
) -> bytes:
    """A roofline estimate of the step's time on ``gpu``."""
    from .sizing import estimate_step_time

    progress("estimating", 0, 1)
    report = estimate_step_time(
        norm["architecture"],
        norm["config"],
        gpu=gpu,
        utilization=utilization,
        bandwidth_efficiency=bandwidth_efficiency,
        batch_size=norm["batch_size"],
        max_modules=max_modules,
        **options,
        **engine_inputs(norm),
    )
    return report.model_dump_json().encode()


def lab(name: str, values: dict[str, Any] | None, progress: Progress = _nothing) -> bytes:
    """One lab of the course, computed from the student's values."""
    from .labs import run_lab

    return json.dumps(run_lab(name, values)).encode()


def batch(tasks: list[tuple[str, dict[str, Any]]], progress: Progress = _nothing) -> list[bytes]:
    """Several jobs one after another under the caller's one deadline (a comparison, the optimizer overview)."""
    results = []
    for done, (name, kwargs) in enumerate(tasks):
        progress(f"{name} reports", done, len(tasks))
        results.append(JOBS[name](**kwargs))
    progress(f"{tasks[-1][0]} reports" if tasks else "done", len(tasks), len(tasks))
    return results


def _inference_peak(name: str, config: dict[str, Any], shape: list[int]) -> int:
    """Peak of one fp32 inference pass at batch 1: the allocation-free estimate a real run is checked against."""
    return estimate_memory(name, config, batch_size=1, input_size=shape, mode="inference", precision="fp32").peak_bytes


def _check_budget(name: str, config: dict[str, Any], shape: list[int], budget_bytes: int) -> None:
    """Refuse before any real work: the weights alone first (instant), then the allocation-free estimate."""
    arch = models.get_architecture(name)
    import torch

    with torch.device("meta"):
        weights = sum(p.numel() * p.element_size() for p in arch.build(config).parameters())
    if weights > budget_bytes:
        raise MemoryBudgetError(weights, budget_bytes)
    peak = _inference_peak(name, config, shape)
    if peak > budget_bytes:
        raise MemoryBudgetError(peak, budget_bytes)


def _live_model(name: str, config: dict[str, Any], weights: str, upload: Upload | None, device: str) -> LiveModel:
    if upload is not None:
        return load_model(name, config, weights, upload, device)
    key = f"{name}|{json.dumps(config, sort_keys=True)}|{weights}|{device}"
    cached = _LIVE_MODELS.get(key)
    if cached is None:
        cached = load_model(name, config, weights, None, device)
        _LIVE_MODELS.put(key, cached)
    return cached


def live_feature_maps(
    name: str,
    config: dict[str, Any] | None,
    image: bytes,
    layers: list[str] | None,
    weights: str,
    upload: tuple[bytes, str] | None,
    channel: tuple[str, int] | None,
    device: str,
    budget_bytes: int,
    max_image_pixels: int,
    lock: dict[str, Any] | None = None,
    max_response_bytes: int | None = None,
    channel_offset: int = 0,
    progress: Progress = _nothing,
) -> bytes:
    arch = models.get_architecture(name)
    parsed = arch.parse_config(config).model_dump(mode="json")
    check_photo_input(arch, parsed)
    progress("checking the layers and the response's size", 0, 1)
    check_feature_request(arch, parsed, layers, channel, max_response_bytes)
    progress("checking the memory budget", 0, 1)
    _check_budget(name, parsed, list(arch.default_input(arch.parse_config(parsed))), budget_bytes)
    with _device_lock(lock, progress):
        live = _live_model(name, parsed, weights, Upload(*upload) if upload else None, device)
        report = feature_maps(
            live,
            image=image,
            layers=layers,
            channel=channel,
            max_image_pixels=max_image_pixels,
            max_response_bytes=max_response_bytes,
            channel_offset=channel_offset,
        )
    return report.model_dump_json().encode()


def live_attention(
    name: str,
    config: dict[str, Any] | None,
    text: str,
    weights: str,
    device: str,
    budget_bytes: int,
    lock: dict[str, Any] | None = None,
    layers: list[int] | None = None,
    heads: list[int] | None = None,
    max_response_bytes: int | None = None,
    progress: Progress = _nothing,
) -> bytes:
    arch = models.get_architecture(name)
    check_attention(arch)
    parsed = arch.parse_config(config).model_dump(mode="json")
    limit = text_limit(arch, parsed)
    size = [limit, limit] if arch.kind(arch.parse_config(parsed)).value == "seq2seq" else [limit]
    progress("checking the layers, heads and the response's size", 0, 1)
    check_attention_request(arch, parsed, text, layers, heads, max_response_bytes)
    progress("checking the memory budget", 0, 1)
    _check_budget(name, parsed, size, budget_bytes)
    with _device_lock(lock, progress):
        live = _live_model(name, parsed, weights, None, device)
        report = attention(live, text=text, layers=layers, heads=heads, max_response_bytes=max_response_bytes)
    return report.model_dump_json().encode()


JOBS: dict[str, Callable[..., bytes]] = {
    "summary": summary,
    "graph": graph,
    "memory": memory,
    "batch": batch,
    "lab": lab,
    "max_batch": max_batch_job,
    "step_time": step_time_job,
    "feature_maps": live_feature_maps,
    "attention": live_attention,
}


def configure(context: dict[str, Any]) -> None:
    """Apply the service's cache bounds in this process (sent with every job: settings may change)."""
    if "meta_models" in context:
        META_MODELS.resize(context["meta_models"])
    if "live_models" in context:
        _LIVE_MODELS.max_items = context["live_models"]
    if "live_bytes" in context:
        _LIVE_MODELS.max_bytes = context["live_bytes"]


def run(name: str, kwargs: dict[str, Any], progress: Progress = _nothing) -> Any:
    """Run the job ``name`` (a worker calls this)."""
    if name not in JOBS:
        raise InputError(f"no job {name!r}")
    return JOBS[name](**kwargs, progress=progress)
