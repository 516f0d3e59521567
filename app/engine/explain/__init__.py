"""Explanations: the worked formula behind each figure of a layer, with the numbers filled in.

``explain`` (a layer), ``explain_structure`` (a layer recognized by what it holds) and
``explain_block`` (a block: its parameters' sum) read one registry (``base.py``), which
``layers.py`` (the course's layers) and ``llm.py`` (today's language models) fill.
"""

from . import layers, llm  # noqa: F401  (each registers its explainers)
from .base import explain, explain_block, explain_structure
from .llm import inactive_expert_params

__all__ = ["explain", "explain_block", "explain_structure", "inactive_expert_params"]
