"""The engine's entry points for the service's worker processes: a typed job in, its report's JSON out.

Each job is a pydantic model naming what it needs (a normalized selection, a
``Step``, a GPU...) and a ``run(progress)`` that calls one engine function and
returns its typed report as JSON bytes, so a worker can run it and the service
can cache and send the answer without rebuilding it. A reader follows a request
from its router, through ``ReportService`` (which builds the job), to ``run`` here
and the engine function it calls. Real runs (measure, feature maps, attention)
keep their loaded models in this process's cache and take the device lock they
are given.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import models

from .choices import DTypeName, InputDTypeName
from .device import resolve_device
from .errors import InputError, MemoryBudgetError
from .live.device_lock import DeviceGate
from .live.runs import (
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
from .memory import estimate_case, generation_prompt
from .memory.runner import StepCase
from .step import Step
from .summary import summarize, trace_graph
from .tracing.selection import META_MODELS, TensorSpec, check_batch, check_module_count, inputs_from_specs, select

Progress = Callable[[str, int, int], None]
_LIVE_MODELS: LRUCache[str, LiveModel] = LRUCache(2, None, LiveModel.param_bytes)


def _nothing(stage: str, done: int, total: int) -> None:
    """No one is listening."""


class TensorEntry(BaseModel):
    """One forward argument by shape and dtype (batch first): positional, or the keyword ``name``."""

    name: str | None = None
    shape: list[int]
    dtype: InputDTypeName = "float32"


class SelectionSpec(BaseModel):
    """A selection with every default filled in: equal selections give equal keys.

    ``shape`` is one sample's shape (the architecture's default when the caller gave
    none; for a generation, a prompt that fits the context), or ``tensors`` every
    forward argument. The service builds it once per request (``normalized``).
    """

    model_config = ConfigDict(frozen=True)

    architecture: str
    config: dict[str, Any]
    batch_size: int = 1
    shape: list[int] | None = None
    tensors: list[TensorEntry] | None = None
    dtype: DTypeName = "float32"

    @classmethod
    def normalized(
        cls,
        architecture: str,
        config: dict[str, Any] | None,
        batch_size: int = 1,
        shape: list[int] | None = None,
        tensors: list[dict[str, Any]] | None = None,
        dtype: str | None = None,
        step: Step | None = None,
    ) -> SelectionSpec:
        """The selection as the engine will run it; for a generation without a prompt length, the longest prompt
        that fits the context with the new tokens (checked once, here)."""
        arch = models.get_architecture(architecture)
        parsed = arch.parse_config(config)
        dumped = parsed.model_dump(mode="json")
        if tensors:
            return cls(
                architecture=arch.name,
                config=dumped,
                batch_size=1,
                tensors=[TensorEntry.model_validate(t) for t in tensors],
                dtype=dtype or "float32",
            )
        if step is not None and step.generates:
            prompt = generation_prompt(arch.name, dumped, shape, step.new_tokens)
            shape = list(prompt) if prompt is not None else shape
        return cls(
            architecture=arch.name,
            config=dumped,
            batch_size=check_batch(batch_size),
            shape=list(shape) if shape else list(arch.default_input(parsed)),
            dtype=dtype or "float32",
        )

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def engine_inputs(self) -> dict[str, Any]:
        """input_size, or input_data built from the tensor specs (meta tensors: nothing allocated)."""
        if self.tensors:
            specs = [TensorSpec(tuple(t.shape), t.dtype, t.name) for t in self.tensors]
            return {"input_size": None, "input_data": inputs_from_specs(specs)}
        return {"input_size": self.shape}

    def case(self, step: Step, device: str | None, max_modules: int | None) -> StepCase:
        """The selection built on meta in the step's dtype, ready for an estimate."""
        inputs = self.engine_inputs()
        selection = select(
            self.architecture,
            self.config,
            inputs["input_size"],
            dtype=step.param_dtype,
            input_data=inputs.get("input_data"),
        )
        check_module_count(selection.module, max_modules)
        batch = selection.input_data.batch_size() or 1 if selection.input_data is not None else self.batch_size
        return StepCase(selection, step, batch, resolve_device(device))


class DeviceLock(BaseModel):
    """The instance's device lock: a file lock, released by the kernel if the process holding it is killed."""

    timeout_s: float
    device: str
    instance: str


@contextlib.contextmanager
def _device_lock(lock: DeviceLock | None, progress: Progress) -> Iterator[None]:
    if lock is None:
        yield
        return
    progress("waiting for the device", 0, 1)
    gate = DeviceGate(1, lock.timeout_s, device=lock.device, instance=lock.instance)
    with gate.held():
        progress("running", 0, 1)
        yield


class Job(BaseModel):
    """A unit of engine work a worker runs: ``run(progress)`` returns the report's JSON."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def run(self, progress: Progress = _nothing) -> Any:
        raise NotImplementedError


class SummaryJob(Job):
    """Per-layer shapes, parameters, FLOPs and formulas (``summarize``)."""

    selection: SelectionSpec
    max_modules: int | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        spec = self.selection
        report = summarize(
            spec.architecture,
            spec.config,
            batch_size=spec.batch_size,
            dtype=spec.dtype,
            max_modules=self.max_modules,
            progress=progress,
            **spec.engine_inputs(),
        )
        return report.model_dump_json().encode()


class GraphJob(SummaryJob):
    """Nodes and edges of the same trace as the summary (``trace_graph``)."""

    def run(self, progress: Progress = _nothing) -> bytes:
        spec = self.selection
        report = trace_graph(
            spec.architecture,
            spec.config,
            batch_size=spec.batch_size,
            dtype=spec.dtype,
            max_modules=self.max_modules,
            progress=progress,
            **spec.engine_inputs(),
        )
        return report.model_dump_json().encode()


class MemoryJob(Job):
    """The peak of one step (``estimate_case``); with ``measure``, also a real run behind the device lock."""

    selection: SelectionSpec
    step: Step
    device: str | None = None
    max_modules: int | None = None
    measure: bool = False
    budget_bytes: int | None = None
    lock: DeviceLock | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        progress("estimating", 0, 1)
        case = self.selection.case(self.step, self.device, self.max_modules)
        report = estimate_case(
            case,
            measure=self.measure,
            budget_bytes=self.budget_bytes,
            real_run=_device_lock(self.lock, progress) if self.measure else None,
        )
        return report.model_dump_json().encode()


class MaxBatchJob(Job):
    """The largest batch that fits ``gpu`` (the selection's batch size is the engine's to choose)."""

    selection: SelectionSpec
    step: Step
    gpu: str
    max_modules: int | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        from .sizing import max_batch

        progress("estimating batch sizes", 0, 1)
        if self.selection.tensors:
            raise InputError("max-batch chooses the batch size: give input.shape, not input.tensors", "input.tensors")
        report = max_batch(
            self.selection.architecture,
            self.selection.config,
            gpu=self.gpu,
            input_size=self.selection.shape,
            step=self.step,
            max_modules=self.max_modules,
        )
        return report.model_dump_json().encode()


class MaxContextJob(Job):
    """The longest context that fits ``gpu`` at the selection's batch (the sequence length is the engine's)."""

    selection: SelectionSpec
    step: Step
    gpu: str
    max_modules: int | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        from .sizing import max_context

        progress("estimating context lengths", 0, 1)
        report = max_context(
            self.selection.architecture,
            self.selection.config,
            gpu=self.gpu,
            batch_size=self.selection.batch_size,
            step=self.step,
            max_modules=self.max_modules,
        )
        return report.model_dump_json().encode()


class StepTimeJob(Job):
    """A roofline estimate of the step's time on ``gpu`` (``estimate_step_time``)."""

    selection: SelectionSpec
    step: Step
    gpu: str
    utilization: float = 0.4
    bandwidth_efficiency: float = 0.8
    max_modules: int | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        from .sizing import estimate_step_time

        progress("estimating", 0, 1)
        spec = self.selection
        report = estimate_step_time(
            spec.architecture,
            spec.config,
            gpu=self.gpu,
            utilization=self.utilization,
            bandwidth_efficiency=self.bandwidth_efficiency,
            batch_size=spec.batch_size,
            step=self.step,
            max_modules=self.max_modules,
            **spec.engine_inputs(),
        )
        return report.model_dump_json().encode()


class ServingJob(Job):
    """KV-cache blocks and concurrent requests on ``gpu`` (``serving_capacity``), from the request's fields."""

    architecture: str
    config: dict[str, Any]
    gpu: str
    serving: dict[str, Any]  # serving_capacity's keyword arguments, checked by the request's schema
    step: Step
    max_modules: int | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        from .sizing import serving_capacity

        progress("estimating the prefill chunk", 0, 1)
        report = serving_capacity(
            self.architecture,
            self.config,
            gpu=self.gpu,
            max_modules=self.max_modules,
            precision=self.step.precision,
            dtype=self.step.dtype,
            quantization=self.step.quantization,
            **self.serving,
        )
        return report.model_dump_json().encode()


class LabJob(Job):
    """One lab of the course, computed from the student's values."""

    name: str
    values: dict[str, Any] | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        from .labs import run_lab

        return json.dumps(run_lab(self.name, self.values)).encode()


class BatchJob(Job):
    """Several jobs one after another under the caller's one deadline (a comparison, the optimizer overview)."""

    jobs: list[Job] = Field(min_length=1)

    def run(self, progress: Progress = _nothing) -> list[bytes]:
        results = []
        for done, job in enumerate(self.jobs):
            progress(f"{type(job).__name__.removesuffix('Job').lower()} reports", done, len(self.jobs))
            results.append(job.run())
        progress("done", len(self.jobs), len(self.jobs))
        return results


def _inference_peak(name: str, config: dict[str, Any], shape: list[int]) -> int:
    """Peak of one fp32 inference pass at batch 1: the allocation-free estimate a real run is checked against."""
    from .memory import estimate_memory

    return estimate_memory(name, config, batch_size=1, input_size=shape, mode="inference", precision="fp32").peak_bytes


def _check_budget(name: str, config: dict[str, Any], shape: list[int], budget_bytes: int) -> None:
    """Refuse before any real work: the weights alone first (instant), then the allocation-free estimate."""
    import torch

    arch = models.get_architecture(name)
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


class FeatureMapsJob(Job):
    """Feature maps of an image from a real forward, after the checks that cost nothing."""

    name: str
    config: dict[str, Any] | None = None
    image: bytes
    layers: list[str] | None = None
    weights: str = "random"
    upload: tuple[bytes, str] | None = None
    channel: tuple[str, int] | None = None
    channel_offset: int = 0
    device: str
    budget_bytes: int
    max_image_pixels: int
    max_response_bytes: int | None = None
    lock: DeviceLock | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        arch = models.get_architecture(self.name)
        parsed = arch.parse_config(self.config).model_dump(mode="json")
        check_photo_input(arch, parsed)
        progress("checking the layers and the response's size", 0, 1)
        check_feature_request(arch, parsed, self.layers, self.channel, self.max_response_bytes)
        progress("checking the memory budget", 0, 1)
        _check_budget(self.name, parsed, list(arch.default_input(arch.parse_config(parsed))), self.budget_bytes)
        with _device_lock(self.lock, progress):
            upload = Upload(*self.upload) if self.upload else None
            live = _live_model(self.name, parsed, self.weights, upload, self.device)
            report = feature_maps(
                live,
                image=self.image,
                layers=self.layers,
                channel=self.channel,
                max_image_pixels=self.max_image_pixels,
                max_response_bytes=self.max_response_bytes,
                channel_offset=self.channel_offset,
            )
        return report.model_dump_json().encode()


class AttentionJob(Job):
    """Attention weights of a text from a real forward, after the checks that cost nothing."""

    name: str
    config: dict[str, Any] | None = None
    text: str
    weights: str = "random"
    layers: list[int] | None = None
    heads: list[int] | None = None
    device: str
    budget_bytes: int
    max_response_bytes: int | None = None
    lock: DeviceLock | None = None

    def run(self, progress: Progress = _nothing) -> bytes:
        arch = models.get_architecture(self.name)
        check_attention(arch)
        parsed = arch.parse_config(self.config).model_dump(mode="json")
        limit = text_limit(arch, parsed)
        size = [limit, limit] if arch.kind(arch.parse_config(parsed)).value == "seq2seq" else [limit]
        progress("checking the layers, heads and the response's size", 0, 1)
        check_attention_request(arch, parsed, self.text, self.layers, self.heads, self.max_response_bytes)
        progress("checking the memory budget", 0, 1)
        _check_budget(self.name, parsed, size, self.budget_bytes)
        with _device_lock(self.lock, progress):
            live = _live_model(self.name, parsed, self.weights, None, self.device)
            report = attention(
                live, text=self.text, layers=self.layers, heads=self.heads, max_response_bytes=self.max_response_bytes
            )
        return report.model_dump_json().encode()


def configure(context: dict[str, Any]) -> None:
    """Apply the service's cache bounds in this process (sent with every job: settings may change)."""
    if "meta_models" in context:
        META_MODELS.resize(context["meta_models"])
    if "live_models" in context:
        _LIVE_MODELS.max_items = context["live_models"]
    if "live_bytes" in context:
        _LIVE_MODELS.max_bytes = context["live_bytes"]


def run(job: Job, progress: Progress = _nothing) -> Any:
    """Run ``job`` (a worker calls this)."""
    if not isinstance(job, Job):
        raise InputError(f"not a job: {type(job).__name__}")
    return job.run(progress)
