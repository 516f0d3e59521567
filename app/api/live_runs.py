"""Real runs for the live endpoints: the memory budget, the device gate and a cache of loaded models.

The work itself is the engine's (``app.engine.live``); this keeps what a shared
service adds: a run is refused when its allocation-free estimate is over the
budget, runs go one at a time per device, and models built from bundled or
on-disk weights are kept (bounded in bytes) so the pages stay interactive. A
model holding uploaded weights is built for the request and dropped with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import models

from ..engine.attention_maps import AttentionReport
from ..engine.errors import MemoryBudgetError
from ..engine.live import (
    FeatureMapsReport,
    LiveModel,
    Upload,
    attention,
    check_attention,
    check_photo_input,
    feature_maps,
    load_model,
    parsed_config,
    text_limit,
)
from ..engine.lru import LRUCache
from ..settings import Settings
from .gate import DeviceGate


class LiveRuns:
    """Budget, gate and model cache around the engine's live runs; one per service."""

    def __init__(
        self,
        gate: DeviceGate,
        device: str,
        settings: Settings,
        inference_peak: Callable[[str, dict[str, Any], list[int]], int],
    ) -> None:
        self.gate = gate
        self.device = device
        self.settings = settings
        self.inference_peak = inference_peak  # the service's cached allocation-free estimate
        self.models: LRUCache[str, LiveModel] = LRUCache(
            settings.live_models, settings.memory_budget_mb * 2**20, LiveModel.param_bytes
        )

    def check_budget(self, name: str, config: dict[str, Any], input_size: list[int]) -> None:
        """Refuse a real run whose allocation-free estimate is over the budget."""
        peak = self.inference_peak(name, config, input_size)
        budget = self.settings.memory_budget_mb * 2**20
        if peak > budget:
            raise MemoryBudgetError(peak, budget)

    def model(self, name: str, config: dict[str, Any], weights: str, upload: Upload | None) -> LiveModel:
        """A real model on the device, from the cache unless its weights were uploaded."""
        if upload is not None:
            return load_model(name, config, weights, upload, self.device)
        key = f"{name}|{sorted(config.items())}|{weights}"
        cached = self.models.get(key)
        if cached is None:
            cached = load_model(name, config, weights, None, self.device)
            self.models.put(key, cached)
        return cached

    def feature_maps(
        self,
        name: str,
        config: dict[str, Any] | None,
        image: bytes,
        layers: list[str] | None,
        weights: str,
        upload: Upload | None,
        channel: tuple[str, int] | None,
    ) -> FeatureMapsReport:
        arch = models.get_architecture(name)
        parsed = parsed_config(name, config)
        check_photo_input(arch, parsed)
        self.check_budget(name, parsed, list(arch.default_input(arch.parse_config(parsed))))
        with self.gate.held():
            live = self.model(name, parsed, weights, upload)
            return feature_maps(
                live,
                image=image,
                layers=layers,
                channel=channel,
                max_image_pixels=self.settings.max_image_pixels,
            )

    def attention(self, name: str, config: dict[str, Any] | None, text: str, weights: str) -> AttentionReport:
        arch = models.get_architecture(name)
        check_attention(arch)
        parsed = parsed_config(name, config)
        limit = text_limit(arch, parsed)
        size = [limit, limit] if arch.kind(arch.parse_config(parsed)).value == "seq2seq" else [limit]
        self.check_budget(name, parsed, size)
        with self.gate.held():
            live = self.model(name, parsed, weights, None)
            return attention(live, text=text)
