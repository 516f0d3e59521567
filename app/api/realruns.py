"""Real runs for feature maps and attention: real weights on the service's device, behind budget and gate.

Models built from bundled or on-disk weights are kept in a small cache so the
explorer stays interactive; a model holding uploaded weights is built for the
request and dropped with it (nothing uploaded is kept).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import nn

import models

from ..engine.activations import (
    ChannelValues,
    LayerMaps,
    Prediction,
    channel_values,
    check_spatial,
    default_layers,
    layer_maps,
    png_data_url,
    prediction,
    run_and_capture,
)
from ..engine.attention_maps import MAX_TOKENS, AttentionReport, MergeStep, attention_maps, encode, positional_table
from ..engine.errors import InputError, MemoryBudgetError
from ..engine.images import Prepared, decode_image, digit_input, imagenet_input, plain_input
from ..engine.tokenizer import bundled_tokenizer
from ..engine.weights import (
    BUNDLED,
    WeightsInfo,
    load_into,
    read_state_dict,
    torchvision_cache,
    torchvision_config,
    torchvision_state_dict,
)
from ..settings import Settings
from .gate import DeviceGate

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = ROOT / "static" / "samples"
SAMPLES = {
    "cat": ("Chelsea the cat", "Stefan van der Walt, CC0"),
    "coffee": ("A cup of coffee", "Rachel Michetti, CC0"),
    "astronaut": ("Astronaut Eileen Collins", "NASA, public domain"),
    "rocket": ("Falcon 9 launching DSCOVR", "SpaceX, public domain"),
}
IMAGENET_FAMILIES = {"alexnet", "vgg", "resnet", "vit"}
DIGIT_LABELS = [str(i) for i in range(10)]


class FeatureMapsReport(BaseModel):
    kind: str = "feature-maps"
    architecture: str
    config: dict[str, Any]
    weights: dict[str, str] = Field(description="source (random, trained, upload, torchvision:...) and a label.")
    preprocessing: list[str]
    input: dict[str, Any] = Field(description="The tensor's shape and the image the model saw, as a PNG data: URL.")
    layers: list[LayerMaps]
    channel: ChannelValues | None = None
    prediction: Prediction | None = None
    device: str
    elapsed_ms: float


@dataclass
class Upload:
    data: bytes
    filename: str


class RealRuns:
    """Builds and runs real models; one instance per service."""

    def __init__(
        self,
        gate: DeviceGate,
        device: str,
        settings: Settings,
        inference_peak: Callable[[str, dict[str, Any], list[int]], int],
    ) -> None:
        self.gate = gate
        self.device = torch.device(device)
        self.settings = settings
        self.inference_peak = inference_peak  # the service's cached allocation-free estimate
        self._models: OrderedDict[str, tuple[nn.Module, WeightsInfo]] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ models and weights

    def _check_budget(self, name: str, config: dict[str, Any], input_size: Any) -> None:
        """Refuse a real run whose allocation-free estimate is over the budget."""
        peak = self.inference_peak(name, config, list(input_size))
        budget = self.settings.memory_budget_mb * 2**20
        if peak > budget:
            raise MemoryBudgetError(peak, budget)

    def _weights_for(
        self, name: str, config: dict[str, Any], source: str
    ) -> tuple[dict[str, torch.Tensor] | None, WeightsInfo]:
        if source == "random":
            return None, WeightsInfo("random", "random initialisation (seed 0): untrained weights")
        if source == "trained":
            bundled = BUNDLED.get(name)
            if bundled is None:
                known = ", ".join(BUNDLED)
                raise InputError(f"trained weights are bundled for {known} only; use random or your own", "weights")
            wanted = models.get_architecture(name).parse_config(bundled.config).model_dump(mode="json")
            if config != wanted:
                raise InputError(f"the trained {name} weights need the config {bundled.config}", "config")
            return bundled.state_dict(), WeightsInfo("trained", bundled.describe())
        if source.startswith("torchvision:"):
            entry = next((e for e in torchvision_cache() if e["id"] == source), None)
            if entry is None:
                raise InputError(f"{source} is not in the local torch cache; nothing is ever downloaded", "weights")
            arch, wanted = torchvision_config(entry["name"])
            parsed = models.get_architecture(arch).parse_config(wanted).model_dump(mode="json")
            if name != arch or config != parsed:
                raise InputError(f"{entry['file']} fits {arch} with config {wanted}", "config")
            return torchvision_state_dict(source), WeightsInfo(source, f"torchvision's pretrained {entry['name']}")
        raise InputError(f"weights must be random, trained, upload or torchvision:<file>, got {source!r}", "weights")

    def model(
        self, name: str, config: dict[str, Any], source: str, upload: Upload | None
    ) -> tuple[nn.Module, WeightsInfo]:
        """A real model on the device, from the cache unless its weights were uploaded."""
        arch = models.get_architecture(name)
        key = f"{name}|{sorted(config.items())}|{source}"
        if upload is None:
            with self._lock:
                cached = self._models.get(key)
                if cached is not None:
                    self._models.move_to_end(key)
                    return cached
        state, info = (
            (None, WeightsInfo("upload", "")) if upload is not None else self._weights_for(name, config, source)
        )
        torch.manual_seed(0)
        module = arch.build(config)
        if upload is not None:
            state = read_state_dict(upload.data, upload.filename)
            load_into(module, state, upload.filename)
            info = WeightsInfo("upload", f"your weights ({upload.filename}, {len(state)} tensors)")
        elif state is not None:
            load_into(module, state, info.source)
        module = module.to(self.device).eval()
        if upload is None:
            with self._lock:
                self._models[key] = (module, info)
                while len(self._models) > 2:
                    self._models.popitem(last=False)
        return module, info

    # ------------------------------------------------------------ inputs

    def sample_bytes(self, sample: str) -> bytes:
        if sample not in SAMPLES:
            raise InputError(f"unknown sample {sample!r}; known: {', '.join(SAMPLES)}", "sample")
        return (SAMPLES_DIR / f"{sample}.jpg").read_bytes()

    def prepare(self, name: str, config: dict[str, Any], source: str, image_bytes: bytes) -> Prepared:
        arch = models.get_architecture(name)
        parsed = arch.parse_config(config)
        size = tuple(arch.default_input(parsed))
        image = decode_image(image_bytes, self.settings.max_image_pixels)
        if name == "lenet5" and source == "trained":
            meta = BUNDLED["lenet5"].metadata()
            return digit_input(image, float(meta["normalize_mean"]), float(meta["normalize_std"]))
        if name in IMAGENET_FAMILIES:
            return imagenet_input(image, size[1:])
        if arch.kind(parsed).value == "image" and len(size) == 3:
            return plain_input(image, size)
        raise InputError(
            f"feature maps need an image model; {name} takes {arch.kind(parsed).value} "
            "(attention maps: /api/attention)",
            "architecture",
        )

    # ------------------------------------------------------------ runs

    def feature_maps(
        self,
        name: str,
        config: dict[str, Any] | None,
        image_bytes: bytes,
        layers: list[str] | None,
        source: str,
        upload: Upload | None,
        channel: tuple[str, int] | None,
    ) -> FeatureMapsReport:
        start = time.perf_counter()
        arch = models.get_architecture(name)
        parsed = arch.parse_config(config).model_dump(mode="json")
        prepared = self.prepare(name, parsed, source, image_bytes)
        self._check_budget(name, parsed, tuple(prepared.tensor.shape[1:]))
        with self.gate.held():
            module, info = self.model(name, parsed, source, upload)
            paths = list(layers) if layers else default_layers(module)
            if channel and channel[0] not in paths:
                paths.append(channel[0])
            capture = run_and_capture(module, (prepared.tensor.to(self.device),), paths)
        maps = []
        for path in paths:
            output = capture.outputs.get(path)
            if output is None:
                raise InputError(f"layer '{path}' did not run on this input", "layers")
            check_spatial(path, output)
            if layers is None or path in layers:
                maps.append(layer_maps(path, dict(module.named_modules())[path], output))
        detail = channel_values(channel[0], capture.outputs[channel[0]], channel[1]) if channel else None
        labels = DIGIT_LABELS if name == "lenet5" and info.source == "trained" else None
        return FeatureMapsReport(
            architecture=name,
            config=parsed,
            weights={"source": info.source, "label": info.label},
            preprocessing=prepared.steps,
            input={
                "shape": list(prepared.tensor.shape),
                "png": png_data_url(prepared.preview) if prepared.preview else "",
            },
            layers=maps,
            channel=detail,
            prediction=prediction(capture.result, labels, top=10 if labels else 5),
            device=str(self.device),
            elapsed_ms=round((time.perf_counter() - start) * 1000, 1),
        )

    def attention(self, name: str, config: dict[str, Any] | None, text: str, source: str) -> AttentionReport:
        if name not in ("gpt", "transformer"):
            raise InputError("attention maps are for gpt and transformer", "architecture")
        arch = models.get_architecture(name)
        parsed_model = arch.parse_config(config)
        parsed = parsed_model.model_dump(mode="json")
        tokenizer = bundled_tokenizer()
        if parsed["vocab_size"] < tokenizer.vocab_size:
            raise InputError(
                f"vocab_size {parsed['vocab_size']} is smaller than the tokenizer's {tokenizer.vocab_size} tokens",
                "config.vocab_size",
            )
        limit = min(MAX_TOKENS, parsed["context"] if name == "gpt" else parsed["max_len"])
        ids, encoding, truncated = encode(tokenizer, text, limit)
        length = (len(ids), len(ids)) if name == "transformer" else (len(ids),)
        self._check_budget(name, parsed, length)
        with self.gate.held():
            module, info = self.model(name, parsed, source, None)
            layers = attention_maps(module, ids, name, self.device)
        d_model = parsed["d_model"]
        return AttentionReport(
            architecture=name,
            config=parsed,
            tokens=[tokenizer.token_text(i) for i in ids],
            token_ids=ids,
            truncated=truncated,
            merges=[MergeStep(**vars(m)) for m in encoding.merges],
            vocab_size=tokenizer.vocab_size,
            attention=layers,
            positional_encoding=positional_table(len(ids), min(d_model, 256)),
            weights=info.label,
            device=str(self.device),
        )


def samples() -> list[dict[str, str]]:
    return [
        {"id": key, "title": title, "credit": credit, "url": f"/static/samples/{key}.jpg"}
        for key, (title, credit) in SAMPLES.items()
    ]


def weight_sources(architecture: str | None = None) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = [
        {"id": "random", "label": "random initialisation (seed 0)", "architecture": None, "config": None}
    ]
    for bundled in BUNDLED.values():
        with contextlib.suppress(InputError):  # a bundled file is missing only in a broken checkout
            sources.append(
                {
                    "id": "trained",
                    "label": bundled.describe(),
                    "architecture": bundled.architecture,
                    "config": bundled.config,
                }
            )
    for entry in torchvision_cache():
        sources.append(
            {
                "id": entry["id"],
                "label": f"torchvision {entry['name']} (local cache)",
                "architecture": entry["architecture"],
                "config": entry["config"],
            }
        )
    if architecture:
        sources = [s for s in sources if s["architecture"] in (None, architecture)]
    return sources
