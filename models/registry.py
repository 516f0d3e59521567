"""A strict registry of architecture families.

Each family module registers one :class:`Architecture`: its typed config, its
builder, named presets, and what input it takes. Registering a name twice
raises; asking for an unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn


class InputKind(StrEnum):
    """What a model consumes, so callers can build example inputs and targets."""

    VECTOR = "vector"  # (B, D) floats
    IMAGE = "image"  # (B, C, H, W) floats
    TOKENS = "tokens"  # (B, T) token ids
    SEQ2SEQ = "seq2seq"  # (B, S) source ids and (B, T) target ids


class ArchitectureConfig(BaseModel):
    """Base of every family's config: unknown keys are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UnknownArchitectureError(KeyError):
    """Raised for a name that is not registered; lists the known names."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown architecture {name!r}; known: {', '.join(known)}")

    def __str__(self) -> str:
        return self.args[0]


class UnknownPresetError(KeyError):
    """Raised for a preset name the family does not define."""

    def __init__(self, architecture: str, preset: str, known: list[str]) -> None:
        self.architecture = architecture
        self.preset = preset
        self.known = known
        super().__init__(f"architecture {architecture!r} has no preset {preset!r}; known: {', '.join(known)}")

    def __str__(self) -> str:
        return self.args[0]


class ConfigError(ValueError):
    """A config that fails validation; ``field`` names where (dotted path)."""

    def __init__(self, message: str, field: str | None = None, errors: list[dict] | None = None):
        self.field = field
        self.errors = errors or []
        super().__init__(message)

    @classmethod
    def from_validation(cls, architecture: str, exc: ValidationError) -> ConfigError:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        field = ".".join(["config", *(str(p) for p in first["loc"])])
        cause = (first.get("ctx") or {}).get("error")
        text = first["msg"]
        if isinstance(cause, ValueError):  # our own validators: keep their message, and their finer location
            text = str(cause)
            finer = getattr(cause, "path", None)
            if finer:
                field = f"config.{finer}"
                text = text.removeprefix(f"{finer}: ")
        message = f"{architecture}: {field}: {text}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        cleaned = [{"field": ".".join(["config", *(str(p) for p in e["loc"])]), "message": e["msg"]} for e in errors]
        return cls(message, field=field, errors=cleaned)


@dataclass(frozen=True)
class Preset:
    """A named config of a family, with the parameter count it must reproduce."""

    name: str
    title: str
    overrides: dict[str, Any]
    params: int | None = None  # exact parameter count at the default input, when known


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a photograph becomes the model's input, as torchvision's transforms do it.

    With ``resize_ratio`` the short side is resized to the input side times the
    ratio (256/224 for ImageNet models), then centre-cropped; without it the image
    is resized to exactly the input size. ``mean``/``std`` normalise each channel
    after scaling to [0, 1]; None leaves the values in [0, 1].
    """

    resize_ratio: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def describe(self) -> dict[str, Any]:
        return {"resize_ratio": self.resize_ratio, "mean": self.mean, "std": self.std}


IMAGENET_PREPROCESSING = ImagePreprocessing(256 / 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PLAIN_PREPROCESSING = ImagePreprocessing()


def every_conv_and_pool(model: nn.Module) -> list[str]:
    """Default feature-map layers: every convolution and pooling layer, in order."""
    spatial = (
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
    )
    return [path for path, module in model.named_modules() if path and isinstance(module, spatial)]


@dataclass(frozen=True)
class Architecture:
    """Everything the engine, the API and the UI need to know about one family.

    Consumers ask these facts instead of deciding by the family's name: how a
    photograph becomes its input, which layers show feature maps, which modules
    give attention maps, how long a sequence may be, which preset live pages use.
    """

    name: str
    title: str
    description: str
    config_cls: type[ArchitectureConfig]
    builder: Callable[[Any], nn.Module]
    input_kind: InputKind | Callable[[Any], InputKind]  # fixed, or decided by the config
    default_input: Callable[[Any], tuple[int, ...]]  # one sample's shape for a config
    presets: tuple[Preset, ...] = field(default_factory=tuple)
    default_params: int | None = None  # exact parameter count of the default config
    # Facts for live runs and pages:
    preprocessing: ImagePreprocessing | None = None  # None: not fed photographs (no feature maps)
    feature_layers: Callable[[nn.Module], list[str]] = every_conv_and_pool  # default feature-map layers
    attention_modules: tuple[type[nn.Module], ...] = ()  # modules that can record their attention weights
    context: Callable[[Any], int] | None = None  # longest token sequence a config accepts
    # (config) -> how the checkpoint stores its weights, as its config says (a quantization_config), or None
    stored_quantization: Callable[[Any], dict[str, Any] | None] | None = None
    live_preset: str | None = None  # the preset live pages start from (small enough to run for real)
    # The forward's arguments when not one tensor per input (e.g. keyword arguments): built by the family.
    inputs: Callable[..., Any] | None = None
    # Greedy generation with a KV cache: a kv_cache.GreedyDecoding class, (model, prompt inputs, real) -> steps.
    generate: type | None = None
    # (config) -> notes on layers by path ('' is the whole model), shown with their figures: where the course
    # notes' figure differs (citing their section) or where this model departs from its paper.
    layer_notes: Callable[[Any], dict[str, str]] | None = None

    def notes_for(self, config: dict[str, Any] | None) -> dict[str, str]:
        """The notes that apply to this configuration's layers."""
        return self.layer_notes(self.parse_config(config)) if self.layer_notes else {}

    def parse_config(self, config: dict[str, Any] | ArchitectureConfig | None = None) -> Any:
        """Validate a config dict; a ``preset`` key starts from that preset's values."""
        if isinstance(config, self.config_cls):
            return config
        values = dict(config or {})
        preset_name = values.pop("preset", None)
        if preset_name is not None:
            values = {**self.preset(str(preset_name)).overrides, **values}
        try:
            return self.config_cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError.from_validation(self.name, exc) from None

    def kind(self, config: Any) -> InputKind:
        """The input kind for a parsed config."""
        return self.input_kind if isinstance(self.input_kind, InputKind) else self.input_kind(config)

    @property
    def text_input(self) -> bool:
        """True when the family reads token ids for every config (so a text can feed it)."""
        return isinstance(self.input_kind, InputKind) and self.input_kind in (InputKind.TOKENS, InputKind.SEQ2SEQ)

    def check_input(self, config: Any, size: tuple[int, ...]) -> None:
        """Refuse sequences longer than the config's context, naming both."""
        if self.context is None or self.kind(config) not in (InputKind.TOKENS, InputKind.SEQ2SEQ):
            return
        limit = self.context(config)
        if max(size) > limit:
            raise ConfigError(
                f"{self.name}: input_size {list(size)} is longer than this config's context of {limit:,} tokens",
                field="input_size",
            )

    def preset(self, name: str) -> Preset:
        for preset in self.presets:
            if preset.name == name:
                return preset
        raise UnknownPresetError(self.name, name, [p.name for p in self.presets])

    def build(self, config: dict[str, Any] | ArchitectureConfig | None = None) -> nn.Module:
        """Build the model on the current default device (``torch.device('meta')`` to allocate nothing)."""
        parsed = self.parse_config(config)
        try:
            model = self.builder(parsed)
        except ValueError as exc:  # builders raise ValueError for configs that cannot be built
            raise ConfigError(f"{self.name}: {exc}", field="config") from None
        model.layerscope_architecture = self.name  # type: ignore[assignment]
        return model

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: schema, defaults, presets, default input."""
        defaults = self.config_cls()
        return {
            "name": self.name,
            "family": self.name,
            "title": self.title,
            "description": self.description,
            "input_kind": self.kind(defaults).value,
            "default_input": list(self.default_input(defaults)),
            "config_schema": self.config_cls.model_json_schema(),
            "defaults": defaults.model_dump(mode="json"),
            "presets": [
                {
                    "name": p.name,
                    "title": p.title,
                    "config": self.parse_config(p.overrides).model_dump(mode="json"),
                    "params": p.params,
                }
                for p in self.presets
            ],
            "default_params": self.default_params,
            "live": {
                "feature_maps": self.preprocessing is not None,
                "preprocessing": self.preprocessing.describe() if self.preprocessing else None,
                "attention_maps": bool(self.attention_modules) and self.text_input,
                "attention_modules": [cls.__name__ for cls in self.attention_modules],
                "context": self.context(defaults) if self.context else None,
                "preset": self.live_preset,
            },
            "generates": self.generate is not None,
            # How its generation's KV cache can store keys and values besides the compute dtype (fp8, int8).
            "kv_cache_dtypes": list(self.generate.STORED_DTYPES) if self.generate is not None else [],
        }


class Registry:
    """Name -> Architecture; strict about duplicates and unknown names."""

    def __init__(self) -> None:
        self._items: dict[str, Architecture] = {}

    def register(self, arch: Architecture) -> Architecture:
        if arch.name in self._items:
            raise ValueError(f"architecture {arch.name!r} is already registered")
        names = [p.name for p in arch.presets]
        if len(names) != len(set(names)):
            raise ValueError(f"architecture {arch.name!r} has duplicate preset names: {names}")
        if arch.live_preset is not None and arch.live_preset not in names:
            raise ValueError(f"architecture {arch.name!r}: live preset {arch.live_preset!r} is not one of {names}")
        self._items[arch.name] = arch
        return arch

    def get(self, name: str) -> Architecture:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownArchitectureError(name, self.names()) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self):
        return iter(self._items.values())


REGISTRY = Registry()


def register(arch: Architecture) -> Architecture:
    """Add a family to the global registry (called once, at import of its module)."""
    return REGISTRY.register(arch)
