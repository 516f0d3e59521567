"""What every lab shares: the input base class, a worked step, an erratum, and small formatting helpers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError

F64 = torch.float64
MAX_SIDE = 32  # matrices and vectors the student types stay small: every value is shown
Number = float
Matrix = list[list[Number]]

NOTES_MATRIX: Matrix = [
    [1, 3, 2, 0, 1, 2],
    [4, 6, 5, 1, 3, 1],
    [7, 2, 8, 2, 0, 4],
    [3, 5, 0, 6, 7, 3],
    [2, 1, 9, 8, 2, 4],
    [1, 0, 3, 5, 2, 1],
]


class LabStep(BaseModel):
    """One value of a lab, with the formula it came from."""

    label: str
    formula: str
    value: Any = None


class Erratum(BaseModel):
    section: str = Field(description="The notes' section, e.g. '4.4 dropout example'.")
    notes_say: str
    correct: str
    convention: bool = Field(description="True: the notes are right in another convention; False: a slip.")
    example: bool = Field(
        False,
        description="True: about the numbers of the notes' own worked example, shown only when the lab's inputs "
        "are that example; False: about what the notes teach, whatever the inputs.",
    )


class LabInput(BaseModel):
    """A lab's inputs: no unknown field, and only finite numbers (NaN and infinities are refused, naming the
    field)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def as_text_when_not_finite(value: Any) -> tuple[Any, bool]:
    """``value`` with every NaN or infinity written as text ("nan", "inf", "-inf"), so the JSON stays valid for
    strict parsers; and whether there was one."""
    if isinstance(value, float) and not math.isfinite(value):
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf"), True
    if isinstance(value, dict):
        pairs = {k: as_text_when_not_finite(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(flag for _, flag in pairs.values())
    if isinstance(value, list | tuple):
        pairs = [as_text_when_not_finite(v) for v in value]
        return [v for v, _ in pairs], any(flag for _, flag in pairs)
    return value, False


def _matrix(rows: Matrix, what: str) -> torch.Tensor:
    if not rows or not all(rows) or len({len(r) for r in rows}) != 1:
        raise InputError(f"{what} must be a non-empty list of rows of equal length", what)
    if len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE:
        raise InputError(f"{what} is at most {MAX_SIDE} x {MAX_SIDE} here: every value is shown", what)
    return torch.tensor(rows, dtype=F64)


def _list(t: torch.Tensor, digits: int = 6) -> Any:
    return [_list(x, digits) for x in t] if t.dim() else round(float(t), digits)


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.3e}"


@dataclass(frozen=True)
class Lab:
    name: str
    title: str
    section: str  # where the notes teach it
    input_cls: type[LabInput]
    compute: Callable[[Any], dict[str, Any]]
    layer_types: tuple[str, ...] = ()  # the explorer links these layers' rows to the lab
    example: Literal["notes", "layerscope"] = "layerscope"  # whose example the defaults are
    example_source: str = "an example written for Layerscope"  # where the defaults come from, in words

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "section": self.section,
            "example": self.example,
            "example_source": self.example_source,
            "layer_types": list(self.layer_types),
            "input_schema": self.input_cls.model_json_schema(),
            "defaults": self.input_cls().model_dump(mode="json"),
        }
