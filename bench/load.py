"""Concurrent clients against the service on loopback: throughput and latency of cached and uncached summaries.

Starts ``uvicorn app.main:app`` (``--workers`` processes), then for each scenario
runs ``--clients`` threads, each with its own keep-alive connection, for a fixed
number of requests. "cached" repeats one selection (answered from the report
cache); "uncached" gives every request a batch size of its own, so each one is
summarized anew.

The mixed scenario runs the quick requests while another client keeps real runs
going (a measured ResNet-18 training step, VGG-16 feature maps), once against the
service as it runs (engine processes in lanes) and once with
``LAYERSCOPE_ENGINE_ISOLATION=thread`` (the engine in the server's threads, as
before the lanes), and reports the quick requests' p50 and p99.

    .venv/bin/python bench/load.py [--clients 1 8] [--requests 400] [--workers 1] [--mixed-only]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int, **settings: str) -> subprocess.Popen:
    env = {**os.environ, "LAYERSCOPE_ACCESS_LOG": "false", **settings}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def run(
    port: int, clients: int, total: int, make_body, path: str = "/api/summary", keep_going=None
) -> tuple[float, list[float], int]:
    """``total`` requests from ``clients`` threads (more while ``keep_going()`` says so)."""
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (i := next(counter)) < total or (keep_going is not None and keep_going()):
            body = json.dumps(make_body(i))
            start = time.perf_counter()
            connection.request("POST", path, body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += response.status != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


HEAVY = [
    ("/api/memory", {"architecture": "resnet", "config": {"depth": 18}, "measure": True, "input": {"batch_size": 16}}),
    ("/api/feature-maps", {"architecture": "vgg", "sample": "cat"}),
]


class HeavyTraffic:
    """One client that keeps real runs going until stopped; counts them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.done = 0
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        for path, body in itertools.cycle(HEAVY):
            if self.stop.is_set():
                return
            self.running.set()
            connection.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            connection.getresponse().read()
            self.done += 1

    def __enter__(self) -> HeavyTraffic:
        self.thread.start()
        self.running.wait()
        time.sleep(0.5)  # the first real run is under way
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def mixed_rows(clients_list: list[int], requests: int) -> list[list[str]]:
    """Quick requests while real runs go on, with the engine in processes (lanes) and in the server's threads."""
    quick = {
        "cached summary (resnet-50)": lambda i: {"architecture": "resnet", "config": {"depth": 50}},
        "uncached summary (alexnet)": lambda i: {"architecture": "alexnet", "input": {"batch_size": 1 + i}},
    }
    rows = []
    for isolation in ("process", "thread"):
        port = free_port()
        server = start_server(port, 1, LAYERSCOPE_ENGINE_ISOLATION=isolation)
        try:
            for (label, make_body), clients in itertools.product(quick.items(), clients_list):
                run(port, 1, 2, make_body)  # warm: the cached entry, the engine's imports
                count = requests if label.startswith("cached") else max(20, requests // 10)
                offset = 20_000 * clients // 8
                with HeavyTraffic(port) as heavy:  # quick requests until two real runs have finished
                    _, latencies, errors = run(
                        port,
                        clients,
                        count,
                        lambda i, mb=make_body, o=offset: mb(i + o),
                        keep_going=lambda: heavy.done < 2,
                    )
                rows.append(
                    [
                        "processes (lanes)" if isolation == "process" else "threads",
                        label,
                        str(clients),
                        f"{len(latencies):,}",
                        f"{statistics.median(latencies) * 1000:,.1f}",
                        f"{percentile(latencies, 99) * 1000:,.1f}",
                        f"{heavy.done:,}",
                        str(errors),
                    ]
                )
                print(f"  mixed, {isolation}, {label}, {clients} clients: done", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mixed-only", action="store_true", help="only the scenario with real runs going on")
    args = parser.parse_args()
    if not args.mixed_only:
        steady(args)
    rows = mixed_rows(args.clients, args.requests)
    print(f"\nMachine: {machine()}; one server process, loopback; real runs going on throughout\n")
    headers = ["Engine in", "Quick request", "Clients", "Requests", "p50 ms", "p99 ms", "Real runs meanwhile", "Errors"]
    print(markdown_table(headers, rows))


def steady(args: argparse.Namespace) -> None:
    port = free_port()
    server = start_server(port, args.workers)
    scenarios = {
        "cached: resnet-50, same request": lambda i: {"architecture": "resnet", "config": {"depth": 50}},
        "uncached: resnet-50, new batch size each time": lambda i: {
            "architecture": "resnet",
            "config": {"depth": 50},
            "input": {"batch_size": 1000 + i},
        },
        "cached: gpt-2, same request": lambda i: {"architecture": "gpt"},
        "uncached: alexnet, new batch size each time": lambda i: {
            "architecture": "alexnet",
            "input": {"batch_size": 1000 + i},
        },
    }
    rows = []
    try:
        for (label, make_body), clients in itertools.product(scenarios.items(), args.clients):
            run(port, 1, 3, make_body)  # warm: imports, meta models, first cache entry
            count = args.requests if label.startswith("cached") else max(40, args.requests // 4)
            offset = 1_000 * clients + 500  # batch sizes no earlier scenario used
            seconds, latencies, errors = run(port, clients, count, lambda i, mb=make_body, o=offset: mb(i + o))
            rows.append(
                [
                    label,
                    str(clients),
                    f"{len(latencies):,}",
                    f"{len(latencies) / seconds:,.0f}",
                    f"{statistics.median(latencies) * 1000:,.1f}",
                    f"{percentile(latencies, 99) * 1000:,.1f}",
                    str(errors),
                ]
            )
            print(f"  {label}: done", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"Machine: {machine()}; server: uvicorn, {args.workers} worker(s), loopback\n")
    headers = ["Scenario", "Clients", "Requests", "Requests/s", "p50 ms", "p99 ms", "Errors"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
