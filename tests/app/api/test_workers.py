"""Engine worker processes: a deadline or a memory limit stops the process itself, and the lane carries on."""

from __future__ import annotations

import os
import time

import pytest

from app.api.errors import ComputeTimeoutError, WorkerFailure
from app.api.workers import Lane, MemoryLimitError, resident_bytes
from app.engine.jobs import MemoryJob, SelectionSpec, SummaryJob
from app.engine.step import Step

LENET = SelectionSpec.normalized("lenet5", {})
BIG = SelectionSpec.normalized("gpt", {"preset": "gpt3-6.7b"}, shape=[2048])
TRAIN = Step.of(mode="train", optimizer="adam", precision="fp32")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def lane():
    each = Lane("test", 1)
    yield each
    each.shutdown()


def test_a_job_runs_in_another_process(lane) -> None:
    import json

    stages = []
    report = json.loads(
        lane.run(SummaryJob(selection=LENET), time.monotonic() + 60, progress=lambda *a: stages.append(a))
    )
    assert report["totals"]["params"] == 61_706  # LeNet-5, as published
    assert stages[0][0] == "queued"
    (pid,) = lane.pids()
    assert pid != os.getpid() and resident_bytes(pid) > 0


def test_the_deadline_kills_the_worker_and_the_lane_starts_a_fresh_one(lane) -> None:
    lane.run(SummaryJob(selection=LENET), time.monotonic() + 60)
    (first,) = lane.pids()
    start = time.monotonic()
    with pytest.raises(ComputeTimeoutError):
        lane.run(MemoryJob(selection=BIG, step=TRAIN), start + 0.3)
    assert time.monotonic() - start < 2.0  # stopped at the deadline, not when the estimate ended
    assert lane.stats.killed_pids[-1] == first and _gone(first)
    assert lane.stats.busy == 0
    lane.run(SummaryJob(selection=LENET), time.monotonic() + 60)
    assert lane.pids() and lane.pids()[0] != first


def test_a_worker_past_its_memory_limit_is_stopped(lane) -> None:
    with pytest.raises(MemoryLimitError) as caught:
        lane.run(SummaryJob(selection=BIG), time.monotonic() + 60, memory_limit=64 * 2**20)
    assert "over this server's limit of 64 MiB" in str(caught.value)
    assert _gone(lane.stats.killed_pids[-1])


def test_engine_errors_come_back_as_the_api_answers_them(lane) -> None:
    with pytest.raises(WorkerFailure) as caught:
        tiny = LENET.model_copy(update={"shape": [1, 7, 7]})
        lane.run(SummaryJob(selection=tiny), time.monotonic() + 60)
    assert caught.value.status == 422
    assert caught.value.body["layer"]  # the layer whose shapes did not fit


def test_a_full_lane_queues_until_the_deadline(lane) -> None:
    import threading

    outcome: list[BaseException] = []

    def occupy() -> None:
        try:
            lane.run(MemoryJob(selection=BIG, step=TRAIN), time.monotonic() + 1.5)
        except ComputeTimeoutError as exc:
            outcome.append(exc)

    busy = threading.Thread(target=occupy)
    busy.start()
    while lane.stats.busy == 0:
        time.sleep(0.01)
    with pytest.raises(ComputeTimeoutError) as caught:
        lane.run(SummaryJob(selection=LENET), time.monotonic() + 0.3)
    assert "waited in the queue" in str(caught.value)
    busy.join()
    assert outcome  # the job that held the lane was itself stopped at its deadline
