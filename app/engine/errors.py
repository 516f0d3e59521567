"""Errors the engine raises for bad input: each says what is wrong and where.

The API turns them into 4xx responses and the CLI into a one-line message with
exit status 2; nothing here knows about either.
"""

from __future__ import annotations

from typing import Any

from models import ConfigError, UnknownArchitectureError, UnknownPresetError

__all__ = [
    "ConfigError",
    "DeviceBusyError",
    "EngineError",
    "InputError",
    "MemoryBudgetError",
    "ModelRunError",
    "NeedsRealRunError",
    "ResponseTooLargeError",
    "ShapeMismatchError",
    "UnknownArchitectureError",
    "UnknownPresetError",
]


class EngineError(Exception):
    """Base of the engine's input errors; ``details()`` is JSON-ready."""

    field: str | None = None
    layer: str | None = None

    def details(self) -> dict[str, Any]:
        return {"detail": str(self), "field": self.field, "layer": self.layer}


class InputError(EngineError, ValueError):
    """An argument outside what the engine accepts (batch size, input size, dtype...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ShapeMismatchError(EngineError, ValueError):
    """A layer whose input does not fit it: names the layer, what it got and what it expects."""

    def __init__(
        self,
        layer: str,
        layer_type: str,
        input_shapes: list[list[int]],
        expected: str | None,
        reason: str,
    ) -> None:
        self.layer = layer
        self.layer_type = layer_type
        self.input_shapes = input_shapes
        self.expected = expected
        self.reason = reason
        got = ", ".join(_shape(s) for s in input_shapes) or "no tensor"
        message = f"layer '{layer}' ({layer_type}) got input {got}"
        if expected:
            message += f" but expects {expected}"
        message += f": {reason}"
        super().__init__(message)
        self.field = "input"

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "layer_type": self.layer_type,
            "input_shape": self.input_shapes[0] if self.input_shapes else None,
            "input_shapes": self.input_shapes,
            "expected": self.expected,
        }


class ModelRunError(EngineError, RuntimeError):
    """The model's own code failed for a reason other than shapes: names the innermost module and the op."""

    def __init__(self, layer: str, layer_type: str, input_shapes: list[list[int]], op: str | None, reason: str) -> None:
        self.layer = layer
        self.layer_type = layer_type
        self.input_shapes = input_shapes
        self.op = op
        self.reason = reason
        got = ", ".join(_shape(s) for s in input_shapes) or "no tensor"
        where = f" in {op}" if op else ""
        super().__init__(f"layer '{layer}' ({layer_type}) failed{where} on input {got}: {reason}")
        self.field = "input"

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "layer_type": self.layer_type,
            "input_shape": self.input_shapes[0] if self.input_shapes else None,
            "input_shapes": self.input_shapes,
            "op": self.op,
        }


REAL_RUN_HINT = (
    "measure=True runs it for real (within the memory budget), and summarize(..., input_data=<real tensors>, "
    "allow_real_run=True) summarizes it on a real forward at a small size"
)


class NeedsRealRunError(EngineError, RuntimeError):
    """The model does something fake tensors cannot (``.item()``, data-dependent shapes): names the module and op."""

    def __init__(self, layer: str | None, reason: str, op: str | None = None, layer_type: str | None = None) -> None:
        self.layer = layer
        self.layer_type = layer_type
        self.op = op
        self.reason = reason
        where = f"layer '{layer}'" + (f" ({layer_type})" if layer_type else "") if layer else "the model"
        what = f"{op}: {reason}" if op else reason
        super().__init__(
            f"{where} needs real data to run ({what}); it cannot be inspected without allocating. {REAL_RUN_HINT}."
        )

    def details(self) -> dict[str, Any]:
        return {**super().details(), "layer_type": self.layer_type, "op": self.op}


class DeviceBusyError(EngineError):
    """The device stayed busy with other real runs past the wait limit."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"the device is busy with other real runs; waited {waited:.1f} s: try again shortly")
        self.field = "device"


class ResponseTooLargeError(EngineError):
    """A response that would pass the service's size cap, refused before the work; says what to select."""

    def __init__(self, expected: int, limit: int, advice: str, field: str | None = None) -> None:
        self.expected = expected
        self.limit = limit
        super().__init__(
            f"the response would be about {expected / 2**20:,.1f} MiB, over the {limit / 2**20:,.1f} MiB limit: "
            + advice
        )
        self.field = field


class MemoryBudgetError(EngineError, RuntimeError):
    """A real run whose estimated peak exceeds the configured memory budget."""

    def __init__(self, needed: int, budget: int) -> None:
        self.needed = needed
        self.budget = budget
        super().__init__(
            f"a real run would need about {needed / 2**20:,.1f} MiB, over the memory budget of "
            f"{budget / 2**20:,.1f} MiB"
        )
        self.field = "measure"


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"
