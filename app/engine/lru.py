"""One cache utility: a thread-safe least-recently-used map bounded by entries and, optionally, by bytes.

Finished reports, models built on meta and real models for live runs all use it;
each caller gives the bounds (from the service's settings) and how to weigh an entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Least-recently-used entries go first once ``max_items`` or ``max_bytes`` is passed.

    An entry heavier than ``max_bytes`` on its own is not kept at all; ``max_items``
    0 keeps nothing.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None, weigh: Callable[[V], int] | None = None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._weigh = weigh or (lambda _: 0)
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep ``value``; False when it cannot be kept (too heavy, or the cache keeps nothing)."""
        weight = self._weigh(value)
        if self.max_items <= 0 or (self.max_bytes is not None and weight > self.max_bytes):
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, weight)
            self.bytes += weight
            while len(self._items) > self.max_items or (self.max_bytes is not None and self.bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return True

    def pop(self, key: K) -> V | None:
        with self._lock:
            entry = self._items.pop(key, None)
            if entry is None:
                return None
            self.bytes -= entry[1]
            return entry[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items
