"""Live runs: a real model on a photograph (feature maps) or a text (attention maps), as typed reports.

These allocate and run for real, on the chosen device: callers keep them behind
a memory budget and a device gate (the service does). What to do for a family
comes from its registry facts: how a photograph becomes its input, which layers
to show, which modules record attention, how long a text may be; weights bring
their own facts (labels, and whether a drawn digit can feed them).

>>> from app.engine.live import feature_maps
>>> report = feature_maps("alexnet", sample="cat")   # random weights, labelled as such
>>> [layer.shape[-1] for layer in report.layers]     # 55, 27, 27, 13, 13, 13, 13, 6
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pydantic import BaseModel, Field
from torch import nn

import models
from models import TRAINED, Architecture, ImagePreprocessing, InputKind

from ..device import resolve_device
from ..errors import InputError, ResponseTooLargeError
from ..tracing.selection import vocabulary
from .activations import (
    CHANNEL_SIDE,
    ChannelValues,
    LayerMaps,
    Prediction,
    channel_values,
    check_spatial,
    layer_maps,
    layer_maps_bytes,
    png_data_url,
    prediction,
    run_and_capture,
)
from .attention_maps import (
    BYTES_PER_WEIGHT,
    MAX_TOKENS,
    AttentionLayerInfo,
    AttentionReport,
    MergeStep,
    attention_blocks,
    attention_maps,
    chosen_heads,
    encode,
    positional_table,
)
from .images import Prepared, decode_image, digit_input, photo_input
from .tokenizer import bundled_tokenizer
from .weights import (
    WeightsInfo,
    bundled_state_dict,
    load_into,
    read_state_dict,
    torchvision_cache,
    torchvision_state_dict,
)

ROOT = Path(__file__).resolve().parents[3]
SAMPLES_DIR = ROOT / "static" / "samples"
SAMPLES = {
    "cat": ("Chelsea the cat", "Stefan van der Walt, CC0"),
    "coffee": ("A cup of coffee", "Rachel Michetti, CC0"),
    "astronaut": ("Astronaut Eileen Collins", "NASA, public domain"),
    "rocket": ("Falcon 9 launching DSCOVR", "SpaceX, public domain"),
}
MAX_LAYERS = 64  # feature-map layers in one request
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
RANDOM = "random"
_SEEDED = threading.Lock()  # models are built with seed 0 under a forked RNG, one at a time


class FeatureMapsReport(BaseModel):
    """What chosen layers of an image model output for one photograph."""

    kind: str = "feature-maps"
    architecture: str | None
    config: dict[str, Any] | None
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
    """A weights file sent by the user: read, checked, loaded, never kept."""

    data: bytes
    filename: str


@dataclass
class LiveModel:
    """A real model on a device, with where its weights came from."""

    module: nn.Module
    architecture: Architecture | None
    config: dict[str, Any] | None
    weights: WeightsInfo
    device: torch.device

    @property
    def name(self) -> str | None:
        return self.architecture.name if self.architecture else None

    def param_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.module.parameters(), *self.module.buffers()])


def sample_names() -> list[dict[str, str]]:
    return [
        {"id": key, "title": title, "credit": credit, "url": f"/static/samples/{key}.jpg"}
        for key, (title, credit) in SAMPLES.items()
    ]


def sample_bytes(sample: str) -> bytes:
    if sample not in SAMPLES:
        raise InputError(f"unknown sample {sample!r}; known: {', '.join(SAMPLES)}", "sample")
    return (SAMPLES_DIR / f"{sample}.jpg").read_bytes()


def weight_sources(architecture: str | None = None) -> list[dict[str, Any]]:
    """random, each architecture's bundled weights (with their facts), and torchvision files in the local cache."""
    sources: list[dict[str, Any]] = [
        {"id": RANDOM, "label": "random initialisation (seed 0)", "architecture": None, "config": None, "facts": None}
    ]
    for bundled in models.BUNDLED:
        if bundled.path.exists():
            sources.append(
                {
                    "id": TRAINED,
                    "label": bundled.describe(),
                    "architecture": bundled.architecture,
                    "config": bundled.config,
                    "facts": bundled.facts(),
                }
            )
    for entry in torchvision_cache():
        sources.append(
            {
                "id": entry["id"],
                "label": f"torchvision {entry['name']} (local cache)",
                "architecture": entry["architecture"],
                "config": entry["config"],
                "facts": None,
            }
        )
    if architecture:
        sources = [s for s in sources if s["architecture"] in (None, architecture)]
    return sources


def parsed_config(name: str, config: dict[str, Any] | None) -> dict[str, Any]:
    return models.get_architecture(name).parse_config(config).model_dump(mode="json")


def _state_for(
    arch: Architecture, config: dict[str, Any], source: str
) -> tuple[dict[str, torch.Tensor] | None, WeightsInfo]:
    if source == RANDOM:
        return None, WeightsInfo(RANDOM, "random initialisation (seed 0): untrained weights")
    if source == TRAINED:
        bundled = models.bundled_for(arch.name)
        if bundled is None:
            known = ", ".join(b.architecture for b in models.BUNDLED)
            raise InputError(f"trained weights are bundled for {known} only; use random or your own", "weights")
        if config != arch.parse_config(bundled.config).model_dump(mode="json"):
            raise InputError(f"the trained {arch.name} weights need the config {bundled.config}", "config")
        info = WeightsInfo(TRAINED, bundled.describe(), bundled.labels, bundled)
        return bundled_state_dict(bundled), info
    if source.startswith("torchvision:"):
        entry = next((e for e in torchvision_cache() if e["id"] == source), None)
        if entry is None:
            raise InputError(f"{source} is not in the local torch cache; nothing is ever downloaded", "weights")
        wanted = models.get_architecture(entry["architecture"]).parse_config(entry["config"]).model_dump(mode="json")
        if arch.name != entry["architecture"] or config != wanted:
            raise InputError(f"{entry['file']} fits {entry['architecture']} with config {entry['config']}", "config")
        return torchvision_state_dict(source), WeightsInfo(source, f"torchvision's pretrained {entry['name']}")
    raise InputError(f"weights must be random, trained, upload or torchvision:<file>, got {source!r}", "weights")


def build_seeded(arch: Architecture, config: dict[str, Any]) -> nn.Module:
    """The model with PyTorch's default initialisation from seed 0, without touching the global RNG."""
    with _SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return arch.build(config)


def load_model(
    name: str,
    config: dict[str, Any] | None = None,
    weights: str = RANDOM,
    upload: Upload | None = None,
    device: str | torch.device | None = None,
) -> LiveModel:
    """A real model of a zoo family with random, bundled, torchvision or uploaded weights, in eval mode."""
    arch = models.get_architecture(name)
    parsed = arch.parse_config(config).model_dump(mode="json")
    target = resolve_device(device)
    if upload is not None:
        module = build_seeded(arch, parsed)
        state = read_state_dict(upload.data, upload.filename)
        load_into(module, state, upload.filename)
        info = WeightsInfo("upload", f"your weights ({upload.filename}, {len(state):,} tensors)")
    else:
        state, info = _state_for(arch, parsed, weights)
        module = build_seeded(arch, parsed)
        if state is not None:
            load_into(module, state, info.source)
    return LiveModel(module.to(target).eval(), arch, parsed, info, target)


def _as_live(
    model: str | nn.Module | LiveModel,
    config: dict[str, Any] | None,
    weights: str,
    upload: Upload | None,
    device: str | torch.device | None,
) -> LiveModel:
    if isinstance(model, LiveModel):
        return model
    if isinstance(model, nn.Module):
        if config:
            raise InputError("config applies to zoo architectures, not to a module you pass", "config")
        target = next((p.device for p in model.parameters()), resolve_device(device))
        return LiveModel(model, None, None, WeightsInfo("yours", "your module's own weights"), target)
    return load_model(model, config, weights, upload, device)


def check_photo_input(arch: Architecture, config: dict[str, Any] | None) -> None:
    """Feature maps are for families fed photographs: refuse the others, before any work."""
    kind = arch.kind(arch.parse_config(config))
    if arch.preprocessing is None or kind is not InputKind.IMAGE:
        raise InputError(
            f"feature maps need an image model; {arch.name} takes {kind.value} (attention maps: /api/attention)",
            "architecture",
        )


def prepare_photo(
    live: LiveModel,
    image: bytes | Image.Image,
    input_size: tuple[int, ...] | None = None,
    preprocessing: ImagePreprocessing | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Prepared:
    """A photograph (or a drawing) as the model's input, the way its family and weights say."""
    decoded = decode_image(image, max_image_pixels) if isinstance(image, bytes) else image
    bundled = live.weights.bundled
    if bundled is not None and bundled.accepts_drawing:
        meta = bundled.metadata()
        return digit_input(decoded, float(meta["normalize_mean"]), float(meta["normalize_std"]))
    arch = live.architecture
    if arch is not None:
        check_photo_input(arch, live.config)
        parsed = arch.parse_config(live.config)
        return photo_input(
            decoded, tuple(input_size or arch.default_input(parsed)), preprocessing or arch.preprocessing
        )
    if input_size is None:
        raise InputError("a module you pass needs input_size, e.g. (3, 224, 224)", "input_size")
    return photo_input(decoded, tuple(input_size), preprocessing or models.PLAIN_PREPROCESSING)


def feature_maps(
    model: str | nn.Module | LiveModel,
    config: dict[str, Any] | None = None,
    *,
    image: bytes | Image.Image | None = None,
    sample: str | None = None,
    layers: list[str] | None = None,
    channel: tuple[str, int] | None = None,
    weights: str = RANDOM,
    upload: Upload | None = None,
    device: str | torch.device | None = None,
    input_size: tuple[int, ...] | None = None,
    preprocessing: ImagePreprocessing | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_response_bytes: int | None = None,
    channel_offset: int = 0,
) -> FeatureMapsReport:
    """A real forward pass on one image: each chosen layer's channels (PNG grid, statistics), and the prediction.

    ``model`` is a zoo name (built with ``weights``: random, trained, torchvision:<file>,
    or ``upload``), a loaded ``LiveModel``, or your own module (give ``input_size``).
    Each layer draws 64 channels from ``channel_offset``. With ``max_response_bytes``
    the response's size is bounded from the layers' shapes (traced without
    allocating) before the model runs, and refused when it would pass the cap.
    """
    start = time.perf_counter()
    if image is None:
        image = sample_bytes(sample or "cat")
    live = _as_live(model, config, weights, upload, device)
    prepared = prepare_photo(live, image, input_size, preprocessing, max_image_pixels)
    paths, wanted = _feature_paths(live.module, live.architecture, layers, channel)
    _check_layers(live.module, prepared.tensor, paths, wanted, max_response_bytes)
    capture = run_and_capture(live.module, (prepared.tensor.to(live.device),), paths)
    modules = dict(live.module.named_modules())
    maps = []
    for path in paths:
        output = capture.outputs.get(path)
        if output is None:
            raise InputError(f"layer '{path}' did not run on this input", "layers")
        check_spatial(path, output)
        if wanted is None or path in wanted:
            maps.append(layer_maps(path, modules[path], output, channel_offset))
    detail = channel_values(channel[0], capture.outputs[channel[0]], channel[1]) if channel else None
    labels = live.weights.labels
    return FeatureMapsReport(
        architecture=live.name,
        config=live.config,
        weights={"source": live.weights.source, "label": live.weights.label},
        preprocessing=prepared.steps,
        input={"shape": list(prepared.tensor.shape), "png": png_data_url(prepared.preview) if prepared.preview else ""},
        layers=maps,
        channel=detail,
        prediction=prediction(capture.result, list(labels) if labels else None, top=10 if labels else 5),
        device=str(live.device),
        elapsed_ms=round((time.perf_counter() - start) * 1000, 1),
    )


def _feature_paths(
    module: nn.Module, arch: Architecture | None, layers: list[str] | None, channel: tuple[str, int] | None
) -> tuple[list[str], list[str] | None]:
    """The layers to run to (with the channel's), and those asked for (None: the family's default ones)."""
    wanted = list(dict.fromkeys(layers)) if layers else None  # each path once, in order
    if wanted is not None and len(wanted) > MAX_LAYERS:
        raise InputError(f"at most {MAX_LAYERS} layers at once; {len(wanted)} were asked for", "layers")
    if wanted:
        paths = list(wanted)
    else:
        paths = arch.feature_layers(module) if arch is not None else models.registry.every_conv_and_pool(module)
    if channel and channel[0] not in paths:
        paths.append(channel[0])
    return paths, wanted


def check_feature_request(
    arch: Architecture,
    config: dict[str, Any],
    layers: list[str] | None,
    channel: tuple[str, int] | None,
    max_response_bytes: int | None,
) -> None:
    """Before any weight is loaded or image decoded: the layers exist and output maps, and the response fits.

    Checked on the family's model built on meta at its default input (nothing allocated).
    """
    parsed = arch.parse_config(config)
    with torch.device("meta"):
        module = arch.build(parsed)
    tensor = torch.empty((1, *arch.default_input(parsed)), device="meta")
    paths, wanted = _feature_paths(module, arch, layers, channel)
    _check_layers(module, tensor, paths, wanted, max_response_bytes)


def _check_layers(
    module: nn.Module, tensor: torch.Tensor, paths: list[str], wanted: list[str] | None, limit: int | None
) -> None:
    """Every layer exists and outputs a map, and the response fits the cap.

    The layers' output shapes come from an allocation-free trace of the same model.
    """
    from ..summary.summarizer import summarize

    modules = dict(module.named_modules())
    unknown = [p for p in paths if p not in modules]
    if unknown:
        candidates = ", ".join(list(modules)[1:21])
        raise InputError(
            f"no layer {', '.join(map(repr, unknown))} in this model; its first layers: {candidates}", "layers"
        )
    rows = {row.path: row for row in summarize(module, input_data=torch.empty(tensor.shape, device="meta")).layers}
    sizes = []
    for path in paths:
        shape = rows[path].output_shape
        if not rows[path].calls or shape is None:
            raise InputError(f"layer '{path}' did not run on this input", "layers")
        if len(shape) not in (3, 4):
            raise InputError(
                f"layer '{path}' outputs {tuple(shape)}: not a feature map (it needs channels and positions)", "layers"
            )
        if wanted is None or path in wanted:
            sizes.append(layer_maps_bytes(shape[1:]))
    if limit is None:
        return
    fixed = tensor[0].numel() * 4 // 3 + 2048 + CHANNEL_SIDE**2 * 12  # the input image, one channel's values
    expected = fixed + sum(sizes)
    if expected > limit:
        fit = 0
        for size in sizes:
            fixed += size
            fit += fixed <= limit
        advice = f"ask for at most {fit} of these layers" if fit else "even the first of these layers is over it"
        raise ResponseTooLargeError(expected, limit, advice, "layers")


def text_limit(arch: Architecture, config: dict[str, Any]) -> int:
    """Most tokens a text may have for this config: the page's cap, or the config's context if shorter."""
    parsed = arch.parse_config(config)
    return min(MAX_TOKENS, arch.context(parsed)) if arch.context else MAX_TOKENS


ATTENTION_FIXED_BYTES = 65536  # tokens, merges and the positional table, beside the weights


def _check_attention_size(size: int, tokens: int, limit: int | None) -> None:
    if limit is not None and size + ATTENTION_FIXED_BYTES > limit:
        room = max(1, (limit - ATTENTION_FIXED_BYTES) // (tokens**2 * BYTES_PER_WEIGHT))
        raise ResponseTooLargeError(
            size + ATTENTION_FIXED_BYTES,
            limit,
            f"choose layers and heads: at most {room:,} head matrices of {tokens} x {tokens} fit",
            "layers",
        )


def check_attention_request(
    arch: Architecture,
    config: dict[str, Any],
    text: str,
    layers: list[int] | None,
    heads: list[int] | None,
    max_response_bytes: int | None,
) -> None:
    """Before any weight exists: the layers and heads asked for exist, and their weights fit the response cap
    (counted on the model built on meta, for the text's token count)."""
    check_attention(arch)
    parsed = arch.parse_config(config)
    ids, _, _ = encode(bundled_tokenizer(), text, text_limit(arch, parsed.model_dump(mode="json")))
    with torch.device("meta"):
        module = arch.build(parsed)
    _, size = chosen_heads(attention_blocks(module, arch.attention_modules), layers, heads, len(ids))
    _check_attention_size(size, len(ids), max_response_bytes)


def check_attention(arch: Architecture) -> None:
    if not (arch.attention_modules and arch.text_input):
        known = ", ".join(a.name for a in models.REGISTRY if a.attention_modules and a.text_input)
        raise InputError(f"attention maps of a text are for {known}; {arch.name} reads no text", "architecture")


def attention(
    model: str | LiveModel,
    config: dict[str, Any] | None = None,
    *,
    text: str,
    weights: str = RANDOM,
    device: str | torch.device | None = None,
    layers: list[int] | None = None,
    heads: list[int] | None = None,
    max_response_bytes: int | None = None,
) -> AttentionReport:
    """Tokenize ``text`` with the bundled BPE, run the model once, and return its attention weights.

    ``layers`` and ``heads`` (indices) choose which weights come back (default: all);
    with ``max_response_bytes`` a response that would pass the cap is refused before
    the model runs, saying how many layers fit.
    """
    arch = model.architecture if isinstance(model, LiveModel) else models.get_architecture(model)
    if arch is None:
        raise InputError("attention maps need a zoo architecture", "architecture")
    check_attention(arch)
    parsed = arch.parse_config(model.config if isinstance(model, LiveModel) else config).model_dump(mode="json")
    tokenizer = bundled_tokenizer()
    if not text.strip():
        raise InputError("the text is empty: type a sentence to see how its tokens attend to each other", "text")
    live = model if isinstance(model, LiveModel) else None
    vocab = vocabulary(live.module) if live else parsed.get("vocab_size", tokenizer.vocab_size)
    if vocab < tokenizer.vocab_size:
        field = "config.vocab_size" if "vocab_size" in parsed else "config"
        raise InputError(f"vocab_size {vocab} is smaller than the tokenizer's {tokenizer.vocab_size} tokens", field)
    ids, encoding, truncated = encode(tokenizer, text, text_limit(arch, parsed))
    if live is None:
        check_attention_request(arch, parsed, text, layers, heads, max_response_bytes)  # before building it
        live = load_model(arch.name, parsed, weights, None, device)
    kind = arch.kind(arch.parse_config(parsed))
    blocks = attention_blocks(live.module, arch.attention_modules)
    per_layer, size = chosen_heads(blocks, layers, heads, len(ids))
    _check_attention_size(size, len(ids), max_response_bytes)
    ids_tensor = torch.tensor([ids], dtype=torch.long, device=live.device)
    inputs = (ids_tensor, ids_tensor) if kind is InputKind.SEQ2SEQ else (ids_tensor,)
    maps = attention_maps(live.module, inputs, arch.attention_modules, per_layer)
    width = next(m.embedding_dim for m in live.module.modules() if isinstance(m, nn.Embedding))
    return AttentionReport(
        architecture=arch.name,
        config=parsed,
        tokens=[tokenizer.token_text(i) for i in ids],
        token_ids=ids,
        truncated=truncated,
        merges=[MergeStep(**vars(m)) for m in encoding.merges],
        vocab_size=tokenizer.vocab_size,
        layers=[
            AttentionLayerInfo(index=i, path=p, heads=int(getattr(m, "heads", 1))) for i, (p, m) in enumerate(blocks)
        ],
        attention=maps,
        positional_encoding=positional_table(len(ids), min(width, 256)),
        weights=live.weights.label,
        device=str(live.device),
    )
