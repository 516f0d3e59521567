"""Real runs (measured memory, feature maps, attention) go one at a time per device.

A thread semaphore orders the runs of one process; an advisory file lock orders
the processes of one instance: the lock file is named after the instance (its
address, port and device, from its settings), so two Layerscope instances on one
host never wait for each other. The process that does the work holds the lock, so
when it ends, or is killed at a deadline, the kernel releases it. Past the wait
limit the caller gets ``DeviceBusyError`` (HTTP 503).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import DeviceBusyError


class DeviceGate:
    """At most ``slots`` real runs at once in this process, and one at a time across processes."""

    def __init__(
        self, slots: int = 1, timeout_s: float | Callable[[], float] = 20.0, device: str = "cpu", instance: str = ""
    ) -> None:
        self._semaphore = threading.BoundedSemaphore(slots)
        self._timeout = timeout_s
        safe = "".join(c if c.isalnum() else "-" for c in f"{instance}-{device}")
        self.lock_path = os.path.join(tempfile.gettempdir(), f"layerscope-{safe}-{os.getuid()}.lock")
        self.active = 0

    @property
    def timeout_s(self) -> float:
        return self._timeout() if callable(self._timeout) else self._timeout

    @contextmanager
    def held(self) -> Iterator[None]:
        start = time.monotonic()
        timeout = self.timeout_s
        if not self._semaphore.acquire(timeout=timeout):
            raise DeviceBusyError(time.monotonic() - start)
        try:
            with self._process_lock(start, timeout):
                self.active += 1
                try:
                    yield
                finally:
                    self.active -= 1
        finally:
            self._semaphore.release()

    @contextmanager
    def _process_lock(self, start: float, timeout: float) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - start > timeout:
                        raise DeviceBusyError(time.monotonic() - start) from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
