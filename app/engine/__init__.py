"""The inspection engine: pure functions over an ``nn.Module``, no web imports.

>>> from app.engine import summarize
>>> report = summarize("alexnet", batch_size=2)
>>> report.totals.params
62378344
"""

from .errors import (
    ConfigError,
    EngineError,
    InputError,
    MemoryBudgetError,
    NeedsRealRunError,
    ShapeMismatchError,
    UnknownArchitectureError,
    UnknownPresetError,
)
from .report import LayerRow, SummaryReport, Totals
from .summary import summarize

__all__ = [
    "ConfigError",
    "EngineError",
    "InputError",
    "LayerRow",
    "MemoryBudgetError",
    "NeedsRealRunError",
    "ShapeMismatchError",
    "SummaryReport",
    "Totals",
    "UnknownArchitectureError",
    "UnknownPresetError",
    "summarize",
]
