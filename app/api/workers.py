"""Engine work in worker processes that a deadline can stop, in lanes so quick work never waits for slow work.

Threads cannot be cancelled; processes can. Each lane is a small pool of worker
processes forked from a forkserver that has already imported torch, the engine
and the zoo (a new worker starts in a fraction of a second). A job is a call of
a typed engine job (``app.engine.jobs``: a pydantic model); the worker sends back
progress, then the report's JSON or an error. The parent watches each busy
worker: at the request's deadline, or when the worker's resident memory passes
its limit, it kills the worker (the kernel then releases any device lock it held),
waits until it is gone, and starts a fresh one.

Two lanes: ``trace`` (allocation-free work: summaries, estimates, comparisons)
and ``live`` (real runs: measured memory, feature maps, attention), so a quick
summary never queues behind a real run. The pool's waiting happens in threads,
so it works under any event loop; each process keeps one pool per lane.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import DeviceBusyError, EngineError
from .errors import ComputeTimeoutError, WorkerFailure, failure_response

log = logging.getLogger("layerscope.workers")
PRELOAD = [
    "app.engine.jobs",
    "models",
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
]
POLL_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
Progress = Callable[[str, int, int], None]

_context: Any = None
_context_lock = threading.Lock()


def _mp_context() -> Any:
    """A forkserver that preloaded the engine: workers fork from it, safe from the server's threads."""
    global _context
    with _context_lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(PRELOAD)
        return _context


def worker_main(conn: Any) -> None:
    """A worker process: run jobs until told to stop, answering each with progress, then a result or an error."""
    from ..engine import jobs

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job, context = message
        jobs.configure(context)
        try:
            conn.send(("done", jobs.run(job, _throttled(conn))))
        except Exception as exc:  # every failure goes back as the status and body the API would send
            status, body = failure_response(exc)
            if status >= 500:
                log.exception("job %s failed", type(job).__name__)
            conn.send(("failed", status, body))


def _throttled(conn: Any) -> Progress:
    """Progress sent to the parent: a new stage at once; within a stage, at most ten reports a second."""
    last = {"stage": "", "at": 0.0}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != last["stage"] or now - last["at"] >= 0.1 or done == total:
            last.update(stage=stage, at=now)
            conn.send(("progress", stage, done, total))

    return progress


def resident_bytes(pid: int) -> int:
    """A process's resident set, from /proc (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def _engine_only_main() -> Iterator[None]:
    """Workers need the engine only: keep multiprocessing from re-running the parent's main script in them
    (it does for a script run by path; for ``python -m`` it skips ``__main__`` modules itself)."""
    main = sys.modules.get("__main__")
    saved = None
    if main is not None and getattr(main, "__spec__", None) is None:
        saved = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if saved is not None:
            main.__file__ = saved  # type: ignore[union-attr]


def peak_resident_bytes(pid: int) -> int:
    """A process's peak resident set since it started or since ``reset_peak`` (VmHWM; 0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def reset_peak(pid: int) -> None:
    """Start a process's peak resident set afresh from its current one (Linux: clear_refs 5)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class Worker:
    """One worker process and the pipe to it."""

    def __init__(self, lane: str) -> None:
        context = _mp_context()
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child,), name=f"layerscope-{lane}", daemon=True)
        with _context_lock, _engine_only_main():
            self.process.start()
        child.close()
        self.jobs_done = 0

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """Stop it now and wait until it is gone (its locks are then released)."""
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.process.join(1)
        if self.process.is_alive():
            self.kill()


@dataclass
class LaneStats:
    busy: int = 0
    waiting: int = 0
    started: int = 0
    killed: int = 0
    jobs: int = 0
    killed_pids: list[int] = field(default_factory=list)  # the last few, for checks that they are gone


class Lane:
    """A pool of ``size`` worker processes running jobs one at a time each."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._count = 0
        self._cond = threading.Condition()
        self.stats = LaneStats()

    def _take(self, deadline: float, busy_after: float | None) -> Worker:
        """An idle worker, or a new one while the lane has room; waits in line until the deadline (504), or
        until ``busy_after`` (a device that stays busy: 503)."""
        start = time.monotonic()
        with self._cond:
            self.stats.waiting += 1
            try:
                while not self._idle and self._count >= self.size:
                    now = time.monotonic()
                    if busy_after is not None and now >= busy_after and busy_after < deadline:
                        raise DeviceBusyError(now - start)
                    limit = min(deadline, busy_after) if busy_after is not None else deadline
                    if now >= deadline:
                        raise ComputeTimeoutError(0, queued=True)
                    self._cond.wait(max(0.001, min(limit - now, 0.5)))
                if self._idle:
                    worker = self._idle.pop()
                else:
                    self._count += 1
                    worker = None
            finally:
                self.stats.waiting -= 1
            self.stats.busy += 1
        if worker is None or not worker.alive:
            try:
                worker = self._start()
            except BaseException:
                self._give_back(None, keep=False)
                raise
        with self._cond:
            self._busy.add(worker)
        return worker

    def _start(self) -> Worker:
        worker = Worker(self.name)
        self.stats.started += 1
        return worker

    def _give_back(self, worker: Worker | None, keep: bool) -> None:
        """Back to the idle list, or out of the lane (a slot for a fresh worker) when it is dead or not kept."""
        with self._cond:
            self._busy.discard(worker)  # type: ignore[arg-type]
            self.stats.busy -= 1
            if keep and worker is not None and worker.alive:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify()

    def run(
        self,
        job: Any,
        deadline: float,
        memory_limit: int | None = None,
        progress: Progress | None = None,
        timeout_s: float = 0,
        context: dict[str, Any] | None = None,
        busy_after: float | None = None,
    ) -> Any:
        """Run ``job`` in a worker; blocks the calling thread. Raises WorkerFailure, ComputeTimeoutError,
        DeviceBusyError or MemoryLimitError, as the API answers them."""
        if progress:
            progress("queued", 0, 1)
        worker = self._take(deadline, busy_after)
        keep: Worker | None = worker
        try:
            worker.conn.send((job, context or {}))
            while True:
                if worker.conn.poll(POLL_S):
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        keep = None
                        raise WorkerFailure(500, {"detail": "the engine process ended unexpectedly"}) from None
                    if message[0] != "progress":
                        self.stats.jobs += 1
                        if memory_limit is not None and resident_bytes(worker.process.pid) > memory_limit:
                            keep = None  # it kept more than its limit after the job: a fresh one next time
                        if message[0] == "done":
                            return message[1]
                        raise WorkerFailure(message[1], message[2])
                    if progress:
                        progress(*message[1:])
                elif not worker.alive:
                    keep = None
                    raise WorkerFailure(
                        500, {"detail": "the engine process ended unexpectedly (it may have run out of memory)"}
                    )
                if time.monotonic() > deadline:
                    keep = None
                    self._kill(worker)
                    raise ComputeTimeoutError(timeout_s)
                if memory_limit is not None:
                    used = resident_bytes(worker.process.pid)
                    if used > memory_limit:
                        keep = None
                        self._kill(worker)
                        raise MemoryLimitError(used, memory_limit)
        finally:
            if keep is None and worker.alive:
                worker.kill()
            self._give_back(worker, keep is not None)

    def _kill(self, worker: Worker) -> None:
        """Stop a busy worker at once; returns when it is gone (and the kernel has released its locks)."""
        worker.kill()
        self.stats.killed += 1
        self.stats.killed_pids = [*self.stats.killed_pids[-15:], worker.process.pid]

    def pids(self) -> list[int]:
        """The lane's worker processes, idle and busy."""
        with self._cond:
            return [w.process.pid for w in [*self._idle, *self._busy] if w.process.pid is not None]

    def shutdown(self) -> None:
        with self._cond:
            workers, self._idle = self._idle, []
            self._count -= len(workers)
        for worker in workers:
            worker.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "workers": self.size,
            "busy": self.stats.busy,
            "waiting": self.stats.waiting,
            "jobs": self.stats.jobs,
            "killed": self.stats.killed,
        }


class MemoryLimitError(EngineError):
    """A worker passed its memory limit: stopped, and answered with 413."""

    def __init__(self, used: int, limit: int) -> None:
        super().__init__(
            f"the computation used {used / 2**20:,.0f} MiB, over this server's limit of {limit / 2**20:,.0f} MiB "
            "(the memory budget plus the engine's base): it was stopped"
        )
        self.field = "measure"


_lanes: dict[tuple[str, int], Lane] = {}
_lanes_lock = threading.Lock()
_ids = itertools.count()


def lane(name: str, size: int) -> Lane:
    """This process's lane ``name`` of ``size`` workers (created once, shared by every app in the process)."""
    with _lanes_lock:
        key = (name, size)
        if key not in _lanes:
            _lanes[key] = Lane(name, size)
        return _lanes[key]


def shutdown_all() -> None:
    with _lanes_lock:
        lanes = list(_lanes.values())
    for each in lanes:
        each.shutdown()


atexit.register(shutdown_all)
