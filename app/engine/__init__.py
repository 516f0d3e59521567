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
from .memory import estimate_memory
from .memory_report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula
from .report import LayerRow, SummaryReport, Totals
from .summary import summarize

__all__ = [
    "ConfigError",
    "EngineError",
    "InputError",
    "LayerMemory",
    "LayerRow",
    "MemoryBreakdown",
    "MemoryBudgetError",
    "MemoryReport",
    "NeedsRealRunError",
    "ShapeMismatchError",
    "SummaryReport",
    "TextbookFormula",
    "Totals",
    "UnknownArchitectureError",
    "UnknownPresetError",
    "estimate_memory",
    "summarize",
]
