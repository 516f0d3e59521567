"""The inspection engine: pure functions over an ``nn.Module``, no web imports.

>>> from app.engine import summarize
>>> report = summarize("alexnet", batch_size=2)
>>> report.totals.params
62378344
"""

from .choices import DTYPES, MODES, OPTIMIZERS, PRECISIONS, describe_choices
from .device import default_device, device_info
from .errors import (
    ConfigError,
    EngineError,
    InputError,
    MemoryBudgetError,
    ModelRunError,
    NeedsRealRunError,
    ShapeMismatchError,
    UnknownArchitectureError,
    UnknownPresetError,
)
from .live import FeatureMapsReport, attention, feature_maps
from .memory import estimate_memory
from .memory_report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula
from .report import LayerRow, SummaryReport, Totals
from .summary import summarize

__all__ = [
    "DTYPES",
    "MODES",
    "OPTIMIZERS",
    "PRECISIONS",
    "ConfigError",
    "EngineError",
    "FeatureMapsReport",
    "InputError",
    "LayerMemory",
    "LayerRow",
    "MemoryBreakdown",
    "MemoryBudgetError",
    "MemoryReport",
    "ModelRunError",
    "NeedsRealRunError",
    "ShapeMismatchError",
    "SummaryReport",
    "TextbookFormula",
    "Totals",
    "UnknownArchitectureError",
    "UnknownPresetError",
    "attention",
    "default_device",
    "describe_choices",
    "device_info",
    "estimate_memory",
    "feature_maps",
    "summarize",
]
