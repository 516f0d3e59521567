"""Finished reports as the service caches them: the report and its JSON, serialized once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass
class CachedReport:
    """A report, its JSON, and other renderings (CSV) made on first use."""

    report: BaseModel
    json: bytes
    extras: dict[str, Any] = field(default_factory=dict)

    def weight(self) -> int:
        """Bytes it costs to keep: its JSON, twice for the parsed report beside it, and its renderings."""
        return 3 * len(self.json) + sum(len(v) for v in self.extras.values() if isinstance(v, str | bytes))
