"""The inspection engine: pure functions over an ``nn.Module``, no web imports.

Rooms: ``tracing`` (models, inputs, the tracer), ``summary`` (shapes, parameters,
FLOPs, the graph), ``explain`` (worked formulas), ``memory`` (estimated and measured
peaks), ``sizing`` (max batch, step time), ``live`` (feature and attention maps from
real runs), ``labs`` (the course's worked examples). ``step.py`` is the one typed
description of a step; ``jobs.py`` the typed entry points the service's workers run.

>>> from app.engine import summarize
>>> report = summarize("alexnet", batch_size=2)
>>> report.totals.params
62378344
"""

from .choices import DTYPES, MODES, OPTIMIZERS, PRECISIONS, SHARDINGS, describe_choices
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
from .gpus import GPUS, GpuFit
from .live import FeatureMapsReport, attention, feature_maps
from .memory import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula, estimate_memory
from .sizing import MaxBatchReport, MaxContextReport, StepTimeReport, estimate_step_time, max_batch, max_context
from .step import Step
from .summary import LayerRow, SummaryReport, Totals, summarize, trace_graph

__all__ = [
    "DTYPES",
    "GPUS",
    "MODES",
    "OPTIMIZERS",
    "PRECISIONS",
    "SHARDINGS",
    "ConfigError",
    "EngineError",
    "FeatureMapsReport",
    "GpuFit",
    "InputError",
    "LayerMemory",
    "LayerRow",
    "MaxBatchReport",
    "MaxContextReport",
    "MemoryBreakdown",
    "MemoryBudgetError",
    "MemoryReport",
    "ModelRunError",
    "NeedsRealRunError",
    "ShapeMismatchError",
    "Step",
    "StepTimeReport",
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
    "estimate_step_time",
    "feature_maps",
    "max_batch",
    "max_context",
    "summarize",
    "trace_graph",
]
