"""What the routers call: normalize a request, answer from the cache or run the engine off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

import models

from ..engine import estimate_memory, summarize
from ..engine.memory import default_device
from ..engine.memory_report import MemoryReport
from ..engine.report import SummaryReport
from ..settings import Settings
from .cache import CachedReport, ReportCache
from .errors import ComputeTimeoutError
from .gate import DeviceGate
from .realruns import RealRuns
from .schemas import CompareEntry, CompareReport, CompareRequest, MemoryRequest, SummaryRequest

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
        self.cache = ReportCache(settings.cache_size)
        self.gate = DeviceGate(1, lambda: self.settings.real_run_timeout_s, device=self.device)
        self._slots: asyncio.Semaphore | None = None
        self.real = RealRuns(self.gate, self.device, settings, self.inference_peak)

    @property
    def device(self) -> str:
        if self.settings.device == "auto":
            return str(default_device())
        return "cuda:0" if self.settings.device == "cuda" else "cpu"

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
        shape = request.input.shape or list(arch.default_input(parsed))
        return {
            "architecture": arch.name,
            "config": parsed.model_dump(mode="json"),
            "batch_size": request.input.batch_size,
            "shape": shape,
            "dtype": request.dtype,
        }

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
                norm["shape"],
                batch_size=norm["batch_size"],
                dtype=norm["dtype"],
                max_modules=self.settings.max_modules,
            )
        )
        return self._store(key, report)

    @staticmethod
    def _memory_key(norm: dict[str, Any], options: dict[str, str]) -> str:
        return "memory:" + json.dumps({**norm, **options}, sort_keys=True)

    def _estimate(self, norm: dict[str, Any], options: dict[str, str], measure: bool) -> CachedReport:
        """Run estimate_memory (in the calling thread) and cache the report unless it was measured."""
        report = estimate_memory(
            norm["architecture"],
            norm["config"],
            norm["shape"],
            batch_size=norm["batch_size"],
            dtype=norm["dtype"] if norm["dtype"] != "float32" else None,
            measure=measure,
            device=self.device,
            budget_bytes=self.budget_bytes,
            max_modules=self.settings.max_modules,
            real_run=self.gate.held(),
            **options,
        )
        return self._store(None if measure else self._memory_key(norm, options), report)

    async def memory(self, request: MemoryRequest) -> CachedReport:
        norm = self.normalize(request)
        options = {"mode": request.mode, "optimizer": request.optimizer, "precision": request.precision}
        if not request.measure:
            hit = self.cache.get(self._memory_key(norm, options))
            if hit is not None:
                return hit
        return await self.run(lambda: self._estimate(norm, options, request.measure))

    def inference_peak(self, name: str, config: dict[str, Any], shape: list[int]) -> int:
        """Peak of one fp32 inference pass at batch 1, from the report cache when it is there (real runs' budget)."""
        norm = {"architecture": name, "config": config, "batch_size": 1, "shape": shape, "dtype": "float32"}
        options = {"mode": "inference", "optimizer": "adam", "precision": "fp32"}
        hit = self.cache.get(self._memory_key(norm, options))
        report = (hit or self._estimate(norm, options, measure=False)).report
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
