"""A model the user composes from a list of layers, without writing (or running) any code.

    {"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "ReLU"},
        {"type": "residual", "layers": [{"type": "Conv2d", "in_channels": 8, "out_channels": 8,
                                         "kernel_size": 3, "padding": 1}]},
        {"type": "Flatten"}, {"type": "Linear", "in_features": 6272, "out_features": 10}]}

Only the torch.nn layer types in ``LAYER_TYPES`` are allowed, with the keyword
arguments their constructors declare; values must be numbers, booleans, short
strings or lists of integers. A ``residual`` block holds its own layer list and
outputs f(x) + x, or f(x) + shortcut(x) when it gives a ``shortcut`` list.
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from typing import Any, Literal

from pydantic import Field, field_validator
from torch import nn

from .registry import PLAIN_PREPROCESSING, Architecture, ArchitectureConfig, InputKind, Preset, register

LAYER_TYPES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        nn.Linear,
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.LocalResponseNorm,
        nn.Dropout,
        nn.Dropout1d,
        nn.Dropout2d,
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.ELU,
        nn.GELU,
        nn.SiLU,
        nn.Mish,
        nn.Sigmoid,
        nn.Tanh,
        nn.Hardswish,
        nn.Softplus,
        nn.Softmax,
        nn.LogSoftmax,
        nn.Flatten,
        nn.Unflatten,
        nn.Identity,
        nn.Embedding,
        nn.Upsample,
        nn.PixelShuffle,
        nn.ZeroPad2d,
        nn.TransformerEncoderLayer,
    )
}
RESIDUAL = "residual"
MAX_LAYERS = 256  # across all nesting levels
MAX_NESTING = 4
MAX_INT = 1 << 20
_SKIPPED_ARGS = {"self", "device", "dtype", "args", "kwargs"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_EMPTY = nn.Sequential()  # a layer name must not shadow one of its attributes (forward, training, _modules...)


class LayerSpecError(ValueError):
    """A layer spec that cannot be built; ``path`` says which one (``layers.2.layers.0``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def allowed_arguments(layer_type: str) -> dict[str, inspect.Parameter]:
    """Keyword arguments a whitelisted layer type accepts, from its constructor's signature."""
    signature = inspect.signature(LAYER_TYPES[layer_type].__init__)
    return {
        name: p
        for name, p in signature.parameters.items()
        if name not in _SKIPPED_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _check_value(path: str, key: str, value: Any) -> Any:
    """Only plain data reaches a constructor: numbers, booleans, short strings, int lists."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise LayerSpecError(path, f"{key}={value} is out of range (|value| <= {MAX_INT:,})")
        return value
    if isinstance(value, float):
        if not -1e6 <= value <= 1e6:
            raise LayerSpecError(path, f"{key}={value} is out of range")
        return value
    if isinstance(value, str):
        if len(value) > 32:
            raise LayerSpecError(path, f"{key} is too long a string")
        return value
    if isinstance(value, list | tuple):
        if len(value) > 8 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise LayerSpecError(path, f"{key} must be a list of at most 8 integers")
        for v in value:
            _check_value(path, key, v)
        return tuple(value)
    raise LayerSpecError(path, f"{key} has an unsupported value type {type(value).__name__}")


def _check_type(path: str, layer_type: str, key: str, value: Any, default: Any) -> None:
    """A value must be of the kind its argument's default is: no strings where a flag or a number goes."""
    if isinstance(default, bool) and not isinstance(value, bool):
        raise LayerSpecError(path, f"{layer_type}.{key} must be true or false, got {value!r}")
    if isinstance(default, int | float) and not isinstance(default, bool) and isinstance(value, str | bool):
        raise LayerSpecError(path, f"{layer_type}.{key} must be a number, got {value!r}")


class Residual(nn.Module):
    """f(x) + shortcut(x); the shortcut is the identity unless the spec gives one."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.body(x)
        if out.shape != identity.shape:
            raise ValueError(
                f"residual branch output {tuple(out.shape)} does not match its input {tuple(identity.shape)}; "
                "add a 'shortcut' layer list that maps one onto the other"
            )
        return out + identity


def build_layers(specs: list[dict[str, Any]], path: str = "layers", depth: int = 0) -> nn.Sequential:
    """Turn validated layer specs into an ``nn.Sequential`` (named by ``name`` keys or indices)."""
    if depth > MAX_NESTING:
        raise LayerSpecError(path, f"residual blocks nest more than {MAX_NESTING} deep")
    modules: dict[str, nn.Module] = {}
    for index, spec in enumerate(specs):
        here = f"{path}.{index}"
        if not isinstance(spec, dict):
            raise LayerSpecError(here, "each layer must be an object with a 'type'")
        spec = dict(spec)
        layer_type = spec.pop("type", None)
        name = spec.pop("name", None) or str(index)
        if not _NAME.match(name) and not name.isdigit():
            raise LayerSpecError(here, f"name {name!r} must be a short identifier")
        if name in modules:
            raise LayerSpecError(here, f"name {name!r} is used twice")
        if hasattr(_EMPTY, name):
            raise LayerSpecError(here, f"name {name!r} is reserved: torch.nn.Module uses it (choose another)")
        if layer_type == RESIDUAL:
            body = spec.pop("layers", None)
            shortcut = spec.pop("shortcut", None)
            if spec:
                raise LayerSpecError(here, f"residual takes only 'layers' and 'shortcut', not {sorted(spec)}")
            if not isinstance(body, list) or not body:
                raise LayerSpecError(here, "residual needs a non-empty 'layers' list")
            modules[name] = Residual(
                build_layers(body, f"{here}.layers", depth + 1),
                build_layers(shortcut, f"{here}.shortcut", depth + 1) if shortcut else None,
            )
            continue
        if layer_type not in LAYER_TYPES:
            known = ", ".join([*sorted(LAYER_TYPES), RESIDUAL])
            raise LayerSpecError(here, f"layer type {layer_type!r} is not allowed; allowed: {known}")
        allowed = allowed_arguments(layer_type)
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise LayerSpecError(
                here, f"{layer_type} has no argument {', '.join(unknown)}; it takes: {', '.join(allowed)}"
            )
        missing = [n for n, p in allowed.items() if p.default is inspect.Parameter.empty and n not in spec]
        if missing:
            raise LayerSpecError(here, f"{layer_type} needs {', '.join(missing)}")
        kwargs = {key: _check_value(here, key, value) for key, value in spec.items()}
        for key, value in kwargs.items():
            _check_type(here, layer_type, key, value, allowed[key].default)
        if layer_type == "TransformerEncoderLayer":
            kwargs.setdefault("batch_first", True)
        try:
            modules[name] = LAYER_TYPES[layer_type](**kwargs)
        except (TypeError, ValueError, RuntimeError, ArithmeticError, AssertionError, IndexError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, ZeroDivisionError):
                reason = "an argument is 0 where the layer divides by it"
            raise LayerSpecError(here, f"{layer_type}({_format_kwargs(kwargs)}): {reason}") from None
    return nn.Sequential(OrderedDict(modules))


def _format_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def count_layers(specs: list[Any]) -> int:
    total = 0
    for spec in specs:
        total += 1
        if isinstance(spec, dict) and spec.get("type") == RESIDUAL:
            total += count_layers(spec.get("layers") or []) + count_layers(spec.get("shortcut") or [])
    return total


DEFAULT_LAYERS: list[dict[str, Any]] = [
    {"type": "Conv2d", "in_channels": 1, "out_channels": 16, "kernel_size": 3, "padding": 1},
    {"type": "BatchNorm2d", "num_features": 16},
    {"type": "ReLU"},
    {
        "type": "residual",
        "layers": [
            {"type": "Conv2d", "in_channels": 16, "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "BatchNorm2d", "num_features": 16},
            {"type": "ReLU"},
        ],
    },
    {"type": "MaxPool2d", "kernel_size": 2},
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 16 * 14 * 14, "out_features": 10},
]


class SequentialConfig(ArchitectureConfig):
    input_shape: list[int] = Field(
        default_factory=lambda: [1, 28, 28],
        min_length=1,
        max_length=4,
        description="One sample's shape (no batch dimension): [C, H, W] for images, [T] for token ids.",
    )
    input_type: Literal["float", "tokens"] = Field(
        "float", description="float: real-valued input; tokens: integer ids for a first Embedding layer."
    )
    layers: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(layer) for layer in DEFAULT_LAYERS],
        min_length=1,
        max_length=MAX_LAYERS,
        description="The layers in order: {'type': 'Conv2d', ...} or {'type': 'residual', 'layers': [...]}.",
        json_schema_extra={"x-editor": "builder"},
    )

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if any(not 1 <= s <= 65_536 for s in shape):
            raise ValueError("every input dimension must be between 1 and 65,536")
        return shape

    @field_validator("layers")
    @classmethod
    def _buildable(cls, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if count_layers(layers) > MAX_LAYERS:
            raise ValueError(f"more than {MAX_LAYERS} layers in all")
        import torch  # validate by building on meta: allocates nothing

        with torch.device("meta"):
            build_layers(layers)
        return layers


class UserSequential(nn.Sequential):
    """The user's layers, applied in order."""


def build(config: SequentialConfig) -> nn.Module:
    return UserSequential(OrderedDict(build_layers(config.layers).named_children()))


ARCHITECTURE = register(
    Architecture(
        name="sequential",
        title="Your own network",
        description="Compose a network from whitelisted torch.nn layers and residual blocks; shapes checked live.",
        config_cls=SequentialConfig,
        builder=build,
        input_kind=lambda c: InputKind.TOKENS if c.input_type == "tokens" else InputKind.IMAGE,
        default_input=lambda c: tuple(c.input_shape),
        preprocessing=PLAIN_PREPROCESSING,
        presets=(
            Preset("small-cnn", "A small residual CNN for 28x28 digits", {}),
            Preset(
                "mlp",
                "A two-layer perceptron on flattened 28x28 images",
                {
                    "layers": [
                        {"type": "Flatten"},
                        {"type": "Linear", "in_features": 784, "out_features": 128},
                        {"type": "ReLU"},
                        {"type": "Linear", "in_features": 128, "out_features": 10},
                    ]
                },
            ),
        ),
    )
)
