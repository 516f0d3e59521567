"""Sizing for a GPU: the largest batch (``max_batch.py``) and the longest context (``max_context.py``) that fit,
found by ``search.py`` in three estimates where the peak is affine, the KV-cache blocks and concurrent
requests a GPU serves (``serving.py``), and a roofline of a step's time
(``step_time.py``), all from the memory room's exact estimates and the GPU catalog (``app/engine/gpus.py``)."""

from .max_batch import MaxBatchReport, max_batch
from .max_context import MaxContextReport, max_context
from .serving import ServingReport, serving_capacity
from .step_time import StepTimeReport, estimate_step_time

__all__ = [
    "MaxBatchReport",
    "MaxContextReport",
    "ServingReport",
    "StepTimeReport",
    "estimate_step_time",
    "max_batch",
    "max_context",
    "serving_capacity",
]
