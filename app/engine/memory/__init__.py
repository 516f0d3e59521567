"""Memory: the peak of a training step, an inference forward or a generation, estimated and measured.

``estimate.py`` traces one step on fake tensors (``estimate_memory``); ``measure.py``
runs it for real; ``runner.py`` is the step both run; ``generation.py`` and
``checkpointing.py`` are what a step may do besides a forward and a backward;
``sharding.py`` spreads a training step over data-parallel devices; ``report.py``
is the typed report.
"""

from .estimate import estimate_case, estimate_memory, generation_prompt, token_context
from .report import LayerMemory, MemoryBreakdown, MemoryReport, TextbookFormula

__all__ = [
    "LayerMemory",
    "MemoryBreakdown",
    "MemoryReport",
    "TextbookFormula",
    "estimate_case",
    "estimate_memory",
    "generation_prompt",
    "token_context",
]
