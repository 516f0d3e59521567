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

import models

from ..engine.choices import OPTIMIZERS, resolve_precision
from ..engine.device import resolve_device
from ..engine.device_lock import DeviceGate
from ..engine.errors import ResponseTooLargeError
from ..engine.lru import LRUCache
from ..engine.memory import generation_prompt
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
    SizingRequest,
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

    def _lock(self) -> dict[str, Any]:
        return {"timeout_s": self.settings.real_run_timeout_s, "device": self.device, "instance": self.instance}

    def _context(self) -> dict[str, Any]:
        return {
            "meta_models": self.settings.meta_models,
            "live_models": self.settings.live_models,
            "live_bytes": self.budget_bytes,
        }

    async def call(self, lane_name: str, job: str, kwargs: dict[str, Any], work: Work) -> Any:
        """Run an engine job within the request's deadline; its answer, or the error the API sends."""
        reporter = self.progress.reporter(work.request_id)
        timeout = self.settings.request_timeout_s
        ok = False
        try:
            if self.settings.engine_isolation == "thread":
                result = await self._call_in_thread(job, kwargs, work, reporter)
            else:
                busy_after = time.monotonic() + self.settings.real_run_timeout_s if lane_name == "live" else None
                result = await run_in_threadpool(
                    self.lanes()[lane_name].run,
                    job,
                    kwargs,
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

    async def _call_in_thread(self, job: str, kwargs: dict[str, Any], work: Work, reporter: Any) -> Any:
        """In this process (engine_isolation=thread, for debugging): the deadline ends the wait, not the work."""
        from ..engine import jobs

        jobs.configure(self._context())
        try:
            return await asyncio.wait_for(
                run_in_threadpool(jobs.run, job, kwargs, reporter), timeout=max(0.001, work.remaining())
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
    def normalize(request: SummaryRequest) -> dict[str, Any]:
        """The request with every default filled in: equal selections give equal keys."""
        arch = models.get_architecture(request.architecture)
        parsed = arch.parse_config(request.config)
        tensors = request.input.tensors
        return {
            "architecture": arch.name,
            "config": parsed.model_dump(mode="json"),
            "batch_size": request.input.batch_size if not tensors else 1,
            "shape": None if tensors else (request.input.shape or list(arch.default_input(parsed))),
            "tensors": [t.model_dump() for t in tensors] if tensors else None,
            "dtype": request.dtype or "float32",
        }

    @staticmethod
    def _summary_key(norm: dict[str, Any]) -> str:
        return "summary:" + json.dumps(norm, sort_keys=True)

    @staticmethod
    def _memory_key(norm: dict[str, Any], options: dict[str, str]) -> str:
        return "memory:" + json.dumps({**{k: v for k, v in norm.items() if k != "dtype"}, **options}, sort_keys=True)

    @staticmethod
    def memory_options(
        request: MemoryRequest | MemoryOverviewRequest | SizingRequest, optimizer: str, mode: str
    ) -> dict[str, Any]:
        """Mode, optimizer, the one precision that dtype and precision agree on, and how the step runs."""
        precision = resolve_precision(request.precision, request.dtype)
        options: dict[str, Any] = {"mode": mode, "optimizer": optimizer, "precision": precision.name}
        for name in ("new_tokens", "checkpointing", "gpus", "sharding"):
            if hasattr(request, name):
                options[name] = getattr(request, name)
        if mode != "generate":
            options.pop("new_tokens", None)
        if not options.get("checkpointing"):
            options.pop("checkpointing", None)
        if options.get("gpus", 1) == 1:  # defaults are left out: equal steps share one cache key
            options.pop("gpus", None)
            options.pop("sharding", None)
        return options

    def _store(self, key: str | None, kind: str, data: bytes) -> CachedReport:
        item = CachedReport(kind=kind, json=self._bounded(data, f"this {kind} report"))  # type: ignore[arg-type]
        if key is not None:
            self.cache.put(key, item)
        return item

    async def _cached(self, key: str, kind: str, job: str, kwargs: dict[str, Any], work: Work) -> CachedReport:
        """An allocation-free report: from the cache, or computed on the trace lane, bounded, then cached."""
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        return self._store(key, kind, await self.call("trace", job, kwargs, work))

    def _summary_task(self, norm: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "summary", {"norm": norm, "max_modules": self.settings.max_modules}

    def _memory_task(self, norm: dict[str, Any], options: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return "memory", {
            "norm": norm,
            "options": options,
            "device": self.device,
            "max_modules": self.settings.max_modules,
        }

    async def summary(self, request: SummaryRequest, work: Work) -> CachedReport:
        norm = self.normalize(request)
        job, kwargs = self._summary_task(norm)
        return await self._cached(self._summary_key(norm), "summary", job, kwargs, work)

    async def graph(self, request: SummaryRequest, work: Work) -> bytes:
        """The model's graph; cached beside the summaries under its own key."""
        norm = self.normalize(request)
        key = "graph:" + json.dumps(norm, sort_keys=True)
        kwargs = {"norm": norm, "max_modules": self.settings.max_modules}
        return (await self._cached(key, "graph", "graph", kwargs, work)).json

    def _generation_norm(self, request: SummaryRequest, mode: str, new_tokens: int) -> dict[str, Any]:
        """The normalized request; for a generation without a prompt length, the longest that fits the context."""
        norm = self.normalize(request)
        if mode == "generate" and not request.input.shape and not request.input.tensors:
            prompt = generation_prompt(norm["architecture"], norm["config"], None, new_tokens)
            if prompt is not None:  # a token model's longest prompt; an encoder-decoder keeps its own inputs
                norm["shape"] = list(prompt)
        return norm

    async def memory(self, request: MemoryRequest, work: Work) -> CachedReport:
        norm = self._generation_norm(request, request.mode, request.new_tokens)
        options = self.memory_options(request, request.optimizer, request.mode)
        job, kwargs = self._memory_task(norm, options)
        if not request.measure:
            return await self._cached(self._memory_key(norm, options), "memory", job, kwargs, work)
        kwargs.update(measure=True, budget_bytes=self.budget_bytes, lock=self._lock())
        return self._store(None, "memory", await self.call("live", job, kwargs, work))

    async def _batch(
        self, wanted: dict[str, tuple[str, str, tuple[str, dict[str, Any]]]], work: Work
    ) -> dict[str, bytes]:
        """Reports by cache key (kind, key, task): from the cache, the missing ones computed in one job."""
        found: dict[str, bytes] = {}
        missing = []
        for key, (kind, _, task) in wanted.items():
            hit = self.cache.get(key)
            if hit is None:
                missing.append((key, kind, task))
            else:
                found[key] = hit.json
        if missing:
            results = await self.call("trace", "batch", {"tasks": [task for _, _, task in missing]}, work)
            for (key, kind, _), data in zip(missing, results, strict=True):
                found[key] = self._store(key, kind, data).json
        return found

    async def memory_overview(self, request: MemoryOverviewRequest, work: Work) -> bytes:
        """Inference and a training step per optimizer, as one JSON body (each report from the cache when there)."""
        norm = self.normalize(request)
        inference = self.memory_options(request, "adam", "inference")
        for name in ("checkpointing", "gpus", "sharding"):  # a training step's choices
            inference.pop(name, None)
        plans = {"inference": inference}
        plans.update({name: self.memory_options(request, name, "train") for name in OPTIMIZERS})
        keys = {name: self._memory_key(norm, options) for name, options in plans.items()}
        done = await self._batch(
            {keys[name]: ("memory", name, self._memory_task(norm, options)) for name, options in plans.items()}, work
        )
        training = b",".join(f'"{name}":'.encode() + done[keys[name]] for name in OPTIMIZERS)
        body = b'{"kind":"memory-overview","inference":' + done[keys["inference"]] + b',"training":{' + training + b"}}"
        return self._bounded(body, "the overview")

    async def compare(self, request: CompareRequest, work: Work) -> CompareReport:
        """Totals and peaks of every selection under the request's one deadline, computed in one job."""
        plans = []
        wanted: dict[str, tuple[str, str, tuple[str, dict[str, Any]]]] = {}
        for selection in request.selections:
            norm = self.normalize(selection)
            precision = resolve_precision(request.precision, None if request.precision else norm["dtype"]).name
            base = {"optimizer": request.optimizer, "precision": precision}
            steps = {"inference": {**base, "mode": "inference"}, "train": {**base, "mode": "train"}}
            if request.mode == "generate":
                steps["generate"] = {**base, "mode": "generate", "new_tokens": request.new_tokens}
            keys = {"summary": self._summary_key(norm)}
            wanted[keys["summary"]] = ("summary", "summary", self._summary_task(norm))
            for mode, options in steps.items():
                each = self._generation_norm(selection, mode, request.new_tokens) if mode == "generate" else norm
                keys[mode] = self._memory_key(each, options)
                wanted[keys[mode]] = ("memory", mode, self._memory_task(each, options))
            plans.append((selection, keys, precision))
        done = await self._batch(wanted, work)
        entries = []
        for selection, keys, precision in plans:
            summary = json.loads(done[keys["summary"]])
            inference, training = json.loads(done[keys["inference"]]), json.loads(done[keys["train"]])
            step = json.loads(done[keys[request.mode]])
            entries.append(
                CompareEntry(
                    label=selection_label(selection),
                    request=selection,
                    totals=summary["totals"],
                    layers=len(summary["layers"]),
                    precision=precision,
                    optimizer=request.optimizer,
                    mode=request.mode,
                    inference_peak_bytes=inference["peak_bytes"],
                    training_peak_bytes=training["peak_bytes"],
                    step_peak_bytes=step["peak_bytes"],
                    kv_cache_bytes=step.get("kv_cache_bytes"),
                    inference_breakdown=inference["breakdown"],
                    training_breakdown=training["breakdown"],
                )
            )
        return CompareReport(entries=entries)

    async def sizing(self, job: str, request: SizingRequest, work: Work, **extra: Any) -> bytes:
        """max_batch or step_time for a GPU: JSON of the engine's report (cached like every allocation-free one)."""
        norm = self._generation_norm(request, request.mode, request.new_tokens)
        options = self.memory_options(request, request.optimizer, request.mode)
        key = f"{job}:" + json.dumps([norm, options, request.gpu, extra], sort_keys=True)
        kwargs = {"norm": norm, "options": options, "gpu": request.gpu, "max_modules": self.settings.max_modules}
        return (await self._cached(key, "sizing", job, {**kwargs, **extra}, work)).json

    def _live_kwargs(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "budget_bytes": self.budget_bytes,
            "lock": self._lock(),
            "max_response_bytes": self.max_response_bytes,
        }

    async def feature_maps(
        self,
        work: Work,
        *,
        name: str,
        config: dict[str, Any] | None,
        image: bytes,
        layers: list[str] | None,
        weights: str,
        upload: tuple[bytes, str] | None,
        channel: tuple[str, int] | None,
        channel_offset: int,
    ) -> bytes:
        kwargs = {
            "name": name,
            "config": config,
            "image": image,
            "layers": layers,
            "weights": weights,
            "upload": upload,
            "channel": channel,
            "channel_offset": channel_offset,
            "max_image_pixels": self.settings.max_image_pixels,
            **self._live_kwargs(),
        }
        return self._bounded(await self.call("live", "feature_maps", kwargs, work), "the feature maps")

    async def attention(
        self,
        work: Work,
        *,
        name: str,
        config: dict[str, Any] | None,
        text: str,
        weights: str,
        layers: list[int] | None,
        heads: list[int] | None,
    ) -> bytes:
        kwargs = {"name": name, "config": config, "text": text, "weights": weights, "layers": layers, "heads": heads}
        kwargs.update(self._live_kwargs())
        return self._bounded(await self.call("live", "attention", kwargs, work), "the attention maps")
