"""Finished reports as the service caches them: the JSON a worker sent, and renderings made from it on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..engine.memory.report import MemoryReport
from ..engine.summary.graph_report import GraphReport
from ..engine.summary.report import SummaryReport

REPORT_TYPES: dict[str, type[BaseModel]] = {"summary": SummaryReport, "memory": MemoryReport, "graph": GraphReport}


@dataclass
class CachedReport:
    """A report's JSON (sent as it is), and other renderings (CSV) made on first use.

    The parsed report is not kept: a large transformer's report parses into several
    times its JSON's size, and only the CSV rendering needs it.
    """

    kind: Literal["summary", "memory", "graph", "sizing"]  # sizing: max-batch and step-time JSON, never re-parsed
    json: bytes
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> BaseModel:
        return REPORT_TYPES[self.kind].model_validate_json(self.json)

    def weight(self) -> int:
        """Bytes it costs to keep: its JSON and its renderings."""
        return len(self.json) + sum(len(v) for v in self.extras.values() if isinstance(v, str | bytes))
