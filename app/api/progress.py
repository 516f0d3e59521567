"""Where each request's engine work stands, by request id: what ``GET /api/progress/{request_id}`` answers.

A client sends ``X-Request-ID`` (or reads the one the server gives back) and polls
while a long request runs. The board keeps the most recent requests only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

Reporter = Callable[[str, int, int], None]


class Progress(BaseModel):
    request_id: str
    state: str = Field(description="queued, running, done or failed.")
    stage: str = Field(description="What the engine is doing, e.g. 'tracing 12 of 48 modules'.")
    done: int
    total: int
    elapsed_s: float = Field(description="Seconds since the request's engine work was asked for.")


class ProgressBoard:
    """The last ``max_items`` requests' progress; thread-safe (workers report from pool threads)."""

    def __init__(self, max_items: int = 1024) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def reporter(self, request_id: str) -> Reporter:
        started = time.monotonic()

        def report(stage: str, done: int, total: int) -> None:
            state = "queued" if stage == "queued" else "running"
            self._set(request_id, state=state, stage=stage, done=done, total=total, started=started)

        return report

    def finish(self, request_id: str, ok: bool) -> None:
        with self._lock:
            item = self._items.get(request_id)
            if item is not None:
                item["state"] = "done" if ok else "failed"
                item["done"] = item["total"] if ok else item["done"]
                item["ended"] = time.monotonic()

    def _set(self, request_id: str, **values: Any) -> None:
        with self._lock:
            item = self._items.pop(request_id, {})
            item.update(values)
            self._items[request_id] = item
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> Progress | None:
        with self._lock:
            item = self._items.get(request_id)
            if item is None:
                return None
            item = dict(item)
        end = item.get("ended", time.monotonic())
        return Progress(
            request_id=request_id,
            state=item["state"],
            stage=item["stage"],
            done=item["done"],
            total=item["total"],
            elapsed_s=round(end - item["started"], 3),
        )
