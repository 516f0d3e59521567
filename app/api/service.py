"""What the routers call: normalize a request, answer from the cache, or run an engine job in a worker.

Every request has one deadline (``request_timeout_s`` from its arrival), whatever
number of computations it needs. Engine work runs in worker processes
(``workers.py``) that are killed at the deadline or past their memory limit, in two
lanes: allocation-free work (``trace``) and real runs (``live``), so a quick
summary never waits behind a real run. Cached reports are answered here, on the
event loop, without touching a worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..engine.choices import OPTIMIZERS, dtype_name
from ..engine.device import resolve_device
from ..engine.errors import InputError, ResponseTooLargeError
from ..engine.jobs import (
    AttentionJob,
    BatchJob,
    DeviceLock,
    FeatureMapsJob,
    GraphJob,
    Job,
    LabJob,
    MaxBatchJob,
    MaxContextJob,
    MemoryJob,
    SelectionSpec,
    ServingJob,
    StepTimeJob,
    SummaryJob,
)
from ..engine.live.device_lock import DeviceGate
from ..engine.lru import LRUCache
from ..engine.step import STEP_FIELDS, Step, StepSetup
from ..settings import Settings
from .cache import CachedReport
from .errors import ComputeTimeoutError
from .progress import ProgressBoard
from .schemas import (
    CompareEntry,
    CompareReport,
    CompareRequest,
    MemoryOverviewRequest,
    MemoryRequest,
    ServingRequest,
    SizingRequest,
    StepTimeRequest,
    SummaryRequest,
)
from .workers import Lane, lane


@dataclass(frozen=True)
class Work:
    """One request's identity and deadline (monotonic clock), shared by all the computations it needs."""

    request_id: str
    deadline: float

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def selection_label(request: SummaryRequest) -> str:
    """'resnet (depth=50)', 'gpt (preset=nano)', 'alexnet'."""
    config = request.config or {}
    if not config:
        return request.architecture
    parts = ", ".join(f"{k}={v}" for k, v in list(config.items())[:3] if not isinstance(v, list | dict))
    return f"{request.architecture} ({parts})" if parts else request.architecture


class ReportService:
    """The report cache, the progress board, the lanes and the device lock around the engine; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: LRUCache[str, CachedReport] = LRUCache(
            settings.cache_size, settings.cache_mb * 2**20, CachedReport.weight
        )
        self.progress = ProgressBoard()
        self.gate = DeviceGate(1, settings.real_run_timeout_s, device=self.device, instance=self.instance)

    @property
    def device(self) -> str:
        return str(resolve_device(None if self.settings.device == "auto" else self.settings.device))

    @property
    def instance(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def budget_bytes(self) -> int:
        return self.settings.memory_budget_mb * 2**20

    @property
    def max_response_bytes(self) -> int:
        return self.settings.max_response_mb * 2**20

    def lanes(self) -> dict[str, Lane]:
        return {"trace": lane("trace", self.settings.engine_workers), "live": lane("live", 1)}

    def memory_limit(self, lane_name: str) -> int:
        """A worker's most resident bytes: its base, plus the budget when it runs real models."""
        base = self.settings.worker_memory_mb * 2**20
        return base + (self.budget_bytes if lane_name == "live" else 0)

    def _lock(self) -> DeviceLock:
        return DeviceLock(timeout_s=self.settings.real_run_timeout_s, device=self.device, instance=self.instance)

    def _context(self) -> dict[str, Any]:
        return {
            "meta_models": self.settings.meta_models,
            "live_models": self.settings.live_models,
            "live_bytes": self.budget_bytes,
        }

    async def call(self, lane_name: str, job: Job, work: Work) -> Any:
        """Run an engine job within the request's deadline; its answer, or the error the API sends."""
        reporter = self.progress.reporter(work.request_id)
        timeout = self.settings.request_timeout_s
        ok = False
        try:
            if self.settings.engine_isolation == "thread":
                result = await self._call_in_thread(job, work, reporter)
            else:
                busy_after = time.monotonic() + self.settings.real_run_timeout_s if lane_name == "live" else None
                result = await run_in_threadpool(
                    self.lanes()[lane_name].run,
                    job,
                    work.deadline,
                    self.memory_limit(lane_name),
                    reporter,
                    timeout,
                    self._context(),
                    busy_after,
                )
            ok = True
            return result
        finally:
            self.progress.finish(work.request_id, ok)

    async def _call_in_thread(self, job: Job, work: Work, reporter: Any) -> Any:
        """In this process (engine_isolation=thread, for debugging): the deadline ends the wait, not the work."""
        from ..engine import jobs

        jobs.configure(self._context())
        try:
            return await asyncio.wait_for(
                run_in_threadpool(jobs.run, job, reporter), timeout=max(0.001, work.remaining())
            )
        except TimeoutError:
            raise ComputeTimeoutError(self.settings.request_timeout_s) from None

    def _bounded(self, data: bytes, what: str) -> bytes:
        if len(data) > self.max_response_bytes:
            raise ResponseTooLargeError(
                len(data), self.max_response_bytes, f"{what}: ask for CSV, or a smaller model", "architecture"
            )
        return data

    @staticmethod
    def selection(request: SummaryRequest, step: Step | None = None) -> SelectionSpec:
        """The request's selection with every default filled in (for a generation, the prompt that fits)."""
        tensors = request.input.tensors
        dtype = request.dtype
        if step is not None:  # a step's precision decides the parameters' dtype
            dtype = dtype_name(step.param_dtype)
        return SelectionSpec.normalized(
            request.architecture,
            request.config,
            batch_size=request.input.batch_size,
            shape=request.input.shape,
            tensors=[t.model_dump() for t in tensors] if tensors else None,
            dtype=dtype,
            step=step,
        )

    @staticmethod
    def step(request: StepSetup, **overrides: Any) -> Step:
        """The request's step, checked (options that contradict each other are refused before any work)."""
        values = {name: getattr(request, name) for name in STEP_FIELDS if name in type(request).model_fields}
        return Step.of(**{**values, **overrides}).resolved()

    def _store(self, key: str | None, kind: str, data: bytes) -> CachedReport:
        item = CachedReport(kind=kind, json=self._bounded(data, f"this {kind} report"))  # type: ignore[arg-type]
        if key is not None:
            self.cache.put(key, item)
        return item

    async def _cached(self, key: str, kind: str, job: Job, work: Work) -> CachedReport:
        """An allocation-free report: from the cache, or computed on the trace lane, bounded, then cached."""
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        return self._store(key, kind, await self.call("trace", job, work))

    def _memory_job(self, spec: SelectionSpec, step: Step) -> tuple[str, MemoryJob]:
        """A memory estimate's cache key and job."""
        key = f"memory:{spec.key()}|{step.key()}"
        return key, MemoryJob(selection=spec, step=step, device=self.device, max_modules=self.settings.max_modules)

    def _summary_job(self, spec: SelectionSpec) -> tuple[str, SummaryJob]:
        return f"summary:{spec.key()}", SummaryJob(selection=spec, max_modules=self.settings.max_modules)

    async def summary(self, request: SummaryRequest, work: Work) -> CachedReport:
        key, job = self._summary_job(self.selection(request))
        return await self._cached(key, "summary", job, work)

    async def graph(self, request: SummaryRequest, work: Work) -> bytes:
        """The model's graph; cached beside the summaries under its own key."""
        spec = self.selection(request)
        job = GraphJob(selection=spec, max_modules=self.settings.max_modules)
        return (await self._cached(f"graph:{spec.key()}", "graph", job, work)).json

    async def memory(self, request: MemoryRequest, work: Work) -> CachedReport:
        step = self.step(request)
        key, job = self._memory_job(self.selection(request, step), step)
        if not request.measure:
            return await self._cached(key, "memory", job, work)
        job = job.model_copy(update={"measure": True, "budget_bytes": self.budget_bytes, "lock": self._lock()})
        return self._store(None, "memory", await self.call("live", job, work))

    async def _batch(self, wanted: dict[str, tuple[str, Job]], work: Work) -> dict[str, bytes]:
        """Reports by cache key ((kind, job) each): from the cache, the missing ones computed in one job."""
        found: dict[str, bytes] = {}
        missing = []
        for key, (kind, job) in wanted.items():
            hit = self.cache.get(key)
            if hit is None:
                missing.append((key, kind, job))
            else:
                found[key] = hit.json
        if missing:
            results = await self.call("trace", BatchJob(jobs=[job for _, _, job in missing]), work)
            for (key, kind, _), data in zip(missing, results, strict=True):
                found[key] = self._store(key, kind, data).json
        return found

    async def memory_overview(self, request: MemoryOverviewRequest, work: Work) -> bytes:
        """Inference and a training step per optimizer, as one JSON body (each report from the cache when there)."""
        inference = self.step(
            request, mode="inference", checkpointing=False, gpus=1, offload="none", pp=1, microbatches=None
        )
        steps: dict[str, Step] = {"inference": inference}
        refused: dict[str, bytes] = {}  # an optimizer the request's layout cannot run: said so in its place
        for name in OPTIMIZERS:
            try:
                steps[name] = self.step(request, optimizer=name)
            except InputError as error:
                refused[name] = json.dumps({"kind": "refused", "optimizer": name, "detail": str(error)}).encode()
        jobs = {name: self._memory_job(self.selection(request, step), step) for name, step in steps.items()}
        done = await self._batch({key: ("memory", job) for key, job in jobs.values()}, work)
        training = b",".join(
            f'"{name}":'.encode() + (refused[name] if name in refused else done[jobs[name][0]]) for name in OPTIMIZERS
        )
        body = (
            b'{"kind":"memory-overview","inference":' + done[jobs["inference"][0]] + b',"training":{' + training + b"}}"
        )
        return self._bounded(body, "the overview")

    async def compare(self, request: CompareRequest, work: Work) -> CompareReport:
        """Totals and peaks of every selection under the request's one deadline, computed in one job."""
        plans = []
        wanted: dict[str, tuple[str, Job]] = {}
        for selection in request.selections:
            own = {} if request.precision or request.dtype else {"dtype": selection.dtype}
            chosen = self.step(request, **own)
            steps = {
                "inference": chosen.replace(
                    mode="inference",
                    checkpointing=False,
                    gpus=1,
                    offload="none",
                    kv_cache_dtype="auto",
                    pp=1,
                    microbatches=None,
                ),
                "train": chosen.replace(mode="train", kv_cache_dtype="auto"),
            }
            if request.mode == "generate":
                steps["generate"] = chosen
            summary_key, summary_job = self._summary_job(self.selection(selection))
            keys = {"summary": summary_key}
            wanted[summary_key] = ("summary", summary_job)
            for mode, step in steps.items():
                key, job = self._memory_job(self.selection(selection, step), step)
                keys[mode] = key
                wanted[key] = ("memory", job)
            plans.append((selection, keys, chosen))
        done = await self._batch(wanted, work)
        entries = []
        for selection, keys, chosen in plans:
            summary = json.loads(done[keys["summary"]])
            inference, training = json.loads(done[keys["inference"]]), json.loads(done[keys["train"]])
            step_report = json.loads(done[keys[request.mode]])
            entries.append(
                CompareEntry(
                    label=selection_label(selection),
                    request=selection,
                    totals=summary["totals"],
                    layers=len(summary["layers"]),
                    precision=chosen.precision_choice.name,
                    optimizer=request.optimizer,
                    mode=request.mode,
                    inference_peak_bytes=inference["peak_bytes"],
                    training_peak_bytes=training["peak_bytes"],
                    step_peak_bytes=step_report["peak_bytes"],
                    kv_cache_bytes=step_report.get("kv_cache_bytes"),
                    inference_breakdown=inference["breakdown"],
                    training_breakdown=training["breakdown"],
                )
            )
        return CompareReport(entries=entries)

    async def max_batch(self, request: SizingRequest, work: Work) -> bytes:
        """The largest batch that fits the request's GPU (cached like every allocation-free report)."""
        step = self.step(request)
        spec = self.selection(request, step)
        job = MaxBatchJob(selection=spec, step=step, gpu=request.gpu, max_modules=self.settings.max_modules)
        key = f"max-batch:{spec.key()}|{step.key()}|{request.gpu}"
        return (await self._cached(key, "sizing", job, work)).json

    async def max_context(self, request: SizingRequest, work: Work) -> bytes:
        """The longest context that fits the request's GPU at its batch size (cached like max-batch)."""
        if request.input.shape is not None or request.input.tensors:
            raise InputError("max-context chooses the sequence length: give input.batch_size only", "input.shape")
        step = self.step(request)
        spec = self.selection(request, step)
        job = MaxContextJob(selection=spec, step=step, gpu=request.gpu, max_modules=self.settings.max_modules)
        key = f"max-context:{spec.key()}|{step.key()}|{request.gpu}"
        return (await self._cached(key, "sizing", job, work)).json

    async def serving(self, request: ServingRequest, work: Work) -> bytes:
        """KV-cache blocks and concurrent requests on the request's GPU (cached like every sizing report)."""
        step = Step.of(precision=request.precision, quantization=request.quantization, mode="generate", new_tokens=1)
        spec = SelectionSpec.normalized(request.architecture, request.config, dtype=dtype_name(step.param_dtype))
        serving = request.model_dump(
            exclude={"architecture", "config", "precision", "quantization", "gpu", "non_torch_mb"}
        )
        serving["non_torch_bytes"] = request.non_torch_mb * 2**20
        job = ServingJob(
            architecture=spec.architecture,
            config=spec.config,
            gpu=request.gpu,
            serving=serving,
            step=step,
            max_modules=self.settings.max_modules,
        )
        key = f"serving:{spec.key()}|{step.key()}|{json.dumps(request.model_dump(mode='json'), sort_keys=True)}"
        return (await self._cached(key, "sizing", job, work)).json

    async def step_time(self, request: StepTimeRequest, work: Work) -> bytes:
        """A roofline estimate of the step's time on the request's GPU."""
        step = self.step(request)
        spec = self.selection(request, step)
        job = StepTimeJob(
            selection=spec,
            step=step,
            gpu=request.gpu,
            utilization=request.utilization,
            bandwidth_efficiency=request.bandwidth_efficiency,
            max_modules=self.settings.max_modules,
        )
        key = f"step-time:{spec.key()}|{step.key()}|{request.gpu}|{request.utilization}|{request.bandwidth_efficiency}"
        return (await self._cached(key, "sizing", job, work)).json

    async def lab(self, name: str, values: dict[str, Any] | None, work: Work) -> bytes:
        """One lab of the course on the student's values (computed on the trace lane; labs are small)."""
        return await self.call("trace", LabJob(name=name, values=values), work)

    def _live_kwargs(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "budget_bytes": self.budget_bytes,
            "lock": self._lock(),
            "max_response_bytes": self.max_response_bytes,
        }

    async def feature_maps(self, work: Work, **request: Any) -> bytes:
        """Feature maps of an image (``FeatureMapsJob``'s fields: name, config, image, layers, weights...)."""
        job = FeatureMapsJob(**request, max_image_pixels=self.settings.max_image_pixels, **self._live_kwargs())
        return self._bounded(await self.call("live", job, work), "the feature maps")

    async def attention(self, work: Work, **request: Any) -> bytes:
        """Attention maps of a text (``AttentionJob``'s fields: name, config, text, weights, layers, heads)."""
        job = AttentionJob(**request, **self._live_kwargs())
        return self._bounded(await self.call("live", job, work), "the attention maps")
