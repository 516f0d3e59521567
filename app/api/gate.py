"""Real runs (measured memory, feature maps, attention) go one at a time per device."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import DeviceBusyError


class DeviceGate:
    """A semaphore with a wait limit: past it, the caller gets ``DeviceBusyError`` (HTTP 503)."""

    def __init__(self, slots: int = 1, timeout_s: float | Callable[[], float] = 20.0) -> None:
        self._semaphore = threading.BoundedSemaphore(slots)
        self._timeout = timeout_s
        self.active = 0

    @property
    def timeout_s(self) -> float:
        return self._timeout() if callable(self._timeout) else self._timeout

    @contextmanager
    def held(self) -> Iterator[None]:
        start = time.monotonic()
        if not self._semaphore.acquire(timeout=self.timeout_s):
            raise DeviceBusyError(time.monotonic() - start)
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._semaphore.release()
