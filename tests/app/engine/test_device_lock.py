"""The device gate: one real run at a time per instance, and instances do not wait for each other."""

from __future__ import annotations

import threading

import pytest

from app.engine.errors import DeviceBusyError
from app.engine.live.device_lock import DeviceGate


def test_a_second_run_waits_then_gives_up() -> None:
    gate = DeviceGate(1, 0.2, device="cpu", instance="test-a")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.held():
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(DeviceBusyError), gate.held():
            pass
    finally:
        release.set()
        thread.join()
    with gate.held():  # free again
        assert gate.active == 1
    assert gate.active == 0


def test_two_instances_have_their_own_locks() -> None:
    first = DeviceGate(1, 0.2, device="cpu", instance="127.0.0.1:8001")
    second = DeviceGate(1, 0.2, device="cpu", instance="127.0.0.1:8002")
    assert first.lock_path != second.lock_path
    with first.held(), second.held():  # no waiting across instances
        assert first.active == second.active == 1
