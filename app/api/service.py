"""What the routers call: normalize a request, answer from the cache or run the engine off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

import models

from ..engine import estimate_memory, summarize
from ..engine.choices import OPTIMIZERS, resolve_precision
from ..engine.device import resolve_device
from ..engine.lru import LRUCache
from ..engine.memory_report import MemoryReport
from ..engine.report import SummaryReport
from ..engine.selection import META_MODELS, TensorSpec, inputs_from_specs
from ..settings import Settings
from .cache import CachedReport
from .errors import ComputeTimeoutError
from .gate import DeviceGate
from .live_runs import LiveRuns
from .schemas import (
    CompareEntry,
    CompareReport,
    CompareRequest,
    MemoryOverviewRequest,
    MemoryRequest,
    SummaryRequest,
)

T = TypeVar("T")


def selection_label(request: SummaryRequest) -> str:
    """'resnet (depth=50)', 'gpt (preset=nano)', 'alexnet'."""
    config = request.config or {}
    if not config:
        return request.architecture
    parts = ", ".join(f"{k}={v}" for k, v in list(config.items())[:3] if not isinstance(v, list | dict))
    return f"{request.architecture} ({parts})" if parts else request.architecture


class ReportService:
    """Caches, limits and the device gate around the engine; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: LRUCache[str, CachedReport] = LRUCache(
            settings.cache_size, settings.cache_mb * 2**20, CachedReport.weight
        )
        META_MODELS.resize(settings.meta_models)
        self.gate = DeviceGate(
            1, lambda: self.settings.real_run_timeout_s, device=self.device, instance=f"{settings.host}:{settings.port}"
        )
        self._slots: asyncio.Semaphore | None = None
        self.live = LiveRuns(self.gate, self.device, settings, self.inference_peak)

    @property
    def device(self) -> str:
        return str(resolve_device(None if self.settings.device == "auto" else self.settings.device))

    @property
    def budget_bytes(self) -> int:
        return self.settings.memory_budget_mb * 2**20

    async def run(self, fn: Callable[[], T]) -> T:
        """Run CPU-bound engine work in a worker thread, so the event loop keeps answering.

        At most ``engine_threads`` run at once: the engine is mostly Python, so more
        threads would only contend for the interpreter lock; requests queue instead.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.engine_threads)

        async def limited() -> T:
            async with self._slots:
                return await run_in_threadpool(fn)

        try:
            return await asyncio.wait_for(limited(), timeout=self.settings.request_timeout_s)
        except TimeoutError:
            raise ComputeTimeoutError(self.settings.request_timeout_s) from None

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
    def engine_inputs(norm: dict[str, Any]) -> dict[str, Any]:
        """input_size, or input_data built from the tensor specs (meta tensors: nothing allocated)."""
        if norm["tensors"]:
            specs = [TensorSpec(tuple(t["shape"]), t["dtype"], t["name"]) for t in norm["tensors"]]
            return {"input_size": None, "input_data": inputs_from_specs(specs)}
        return {"input_size": norm["shape"]}

    @staticmethod
    def memory_options(request: MemoryRequest | MemoryOverviewRequest, optimizer: str, mode: str) -> dict[str, str]:
        """Mode, optimizer and the one precision that dtype and precision agree on."""
        precision = resolve_precision(request.precision, request.dtype)
        return {"mode": mode, "optimizer": optimizer, "precision": precision.name}

    def _store(self, key: str | None, report: SummaryReport | MemoryReport) -> CachedReport:
        item = CachedReport(report=report, json=report.model_dump_json().encode())
        if key is not None:
            self.cache.put(key, item)
        return item

    async def summary(self, request: SummaryRequest) -> CachedReport:
        norm = self.normalize(request)
        key = "summary:" + json.dumps(norm, sort_keys=True)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        report = await self.run(
            lambda: summarize(
                norm["architecture"],
                norm["config"],
                batch_size=norm["batch_size"],
                dtype=norm["dtype"],
                max_modules=self.settings.max_modules,
                **self.engine_inputs(norm),
            )
        )
        return self._store(key, report)

    @staticmethod
    def _memory_key(norm: dict[str, Any], options: dict[str, str]) -> str:
        return "memory:" + json.dumps({**{k: v for k, v in norm.items() if k != "dtype"}, **options}, sort_keys=True)

    def _estimate(self, norm: dict[str, Any], options: dict[str, str], measure: bool) -> CachedReport:
        """Run estimate_memory (in the calling thread) and cache the report unless it was measured."""
        key = self._memory_key(norm, options)
        if not measure:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        report = estimate_memory(
            norm["architecture"],
            norm["config"],
            batch_size=norm["batch_size"],
            **self.engine_inputs(norm),
            measure=measure,
            device=self.device,
            budget_bytes=self.budget_bytes,
            max_modules=self.settings.max_modules,
            real_run=self.gate.held(),
            **options,
        )
        return self._store(None if measure else key, report)

    async def memory(self, request: MemoryRequest) -> CachedReport:
        norm = self.normalize(request)
        options = self.memory_options(request, request.optimizer, request.mode)
        if not request.measure:
            hit = self.cache.get(self._memory_key(norm, options))
            if hit is not None:
                return hit
        return await self.run(lambda: self._estimate(norm, options, request.measure))

    async def memory_overview(self, request: MemoryOverviewRequest) -> bytes:
        """Inference and a training step per optimizer, as one JSON body (each report from the cache when there)."""
        norm = self.normalize(request)
        plans = {"inference": self.memory_options(request, "adam", "inference")}
        plans.update({name: self.memory_options(request, name, "train") for name in OPTIMIZERS})

        def compute() -> dict[str, CachedReport]:
            return {name: self._estimate(norm, options, False) for name, options in plans.items()}

        done = {name: self.cache.get(self._memory_key(norm, options)) for name, options in plans.items()}
        if any(item is None for item in done.values()):
            done = await self.run(compute)
        training = b",".join(f'"{name}":'.encode() + done[name].json for name in OPTIMIZERS)  # type: ignore[union-attr]
        return b'{"kind":"memory-overview","inference":' + done["inference"].json + b',"training":{' + training + b"}}"  # type: ignore[union-attr]

    def inference_peak(self, name: str, config: dict[str, Any], shape: list[int]) -> int:
        """Peak of one fp32 inference pass at batch 1, from the report cache when it is there (real runs' budget)."""
        norm = {"architecture": name, "config": config, "batch_size": 1, "shape": shape, "tensors": None}
        options = {"mode": "inference", "optimizer": "adam", "precision": "fp32"}
        report = self._estimate(norm, options, measure=False).report
        assert isinstance(report, MemoryReport)
        return report.peak_bytes

    async def compare(self, request: CompareRequest) -> CompareReport:
        entries = []
        for selection in request.selections:
            summary = (await self.summary(selection)).report
            memory_base = {**selection.model_dump(), "measure": False}
            inference = (await self.memory(MemoryRequest(**memory_base, mode="inference"))).report
            training = (await self.memory(MemoryRequest(**memory_base, mode="train", optimizer="adam"))).report
            assert isinstance(summary, SummaryReport)
            assert isinstance(inference, MemoryReport) and isinstance(training, MemoryReport)
            entries.append(
                CompareEntry(
                    label=selection_label(selection),
                    request=selection,
                    totals=summary.totals.model_dump(),
                    layers=len(summary.layers),
                    inference_peak_bytes=inference.peak_bytes,
                    training_peak_bytes=training.peak_bytes,
                    inference_breakdown=inference.breakdown.model_dump(),
                    training_breakdown=training.breakdown.model_dump(),
                )
            )
        return CompareReport(entries=entries)
