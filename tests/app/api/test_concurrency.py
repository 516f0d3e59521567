"""The engine runs off the event loop: /api/health answers while a large model is estimated."""

from __future__ import annotations

import json
import threading
import time
import urllib.request


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def test_health_answers_during_a_slow_request(live_server: str) -> None:
    slow = {"architecture": "gpt", "config": {"preset": "gpt3-6.7b"}, "input": {"shape": [256]}}
    result: dict[str, float] = {}

    def run_slow() -> None:
        start = time.monotonic()
        result["status"] = _post(live_server + "/api/memory", slow)
        result["slow_seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(0.5)  # the slow estimate is under way
    health_times = []
    while thread.is_alive() and len(health_times) < 5:
        start = time.monotonic()
        with urllib.request.urlopen(live_server + "/api/health", timeout=30) as response:
            assert response.status == 200
        health_times.append(time.monotonic() - start)
        time.sleep(0.2)
    thread.join()
    assert result["status"] == 200
    assert health_times, "the slow request finished before health was asked"
    # Health came back well before the slow request finished: it was not queued behind it.
    assert max(health_times) < result["slow_seconds"] / 2
