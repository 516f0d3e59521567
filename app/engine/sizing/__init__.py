"""Sizing for a GPU: the largest batch that fits (``max_batch.py``) and a roofline of a step's time
(``step_time.py``), both from the memory room's exact estimates and the GPU catalog (``app/engine/gpus.py``)."""

from .max_batch import MaxBatchReport, max_batch
from .step_time import StepTimeReport, estimate_step_time

__all__ = ["MaxBatchReport", "StepTimeReport", "estimate_step_time", "max_batch"]
