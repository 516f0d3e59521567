"""Shared fixtures. Test modules mirror the package layout: tests/models, tests/app/engine, tests/app/api..."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUTPUT_DIR = ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests leave artefacts worth looking at (screenshots, tables)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")


TEST_SETTINGS = dict(access_log=False, memory_budget_mb=512, real_run_timeout_s=5.0, cache_size=64)


@pytest.fixture
def settings():
    """Settings for one test; tests may change fields before making requests."""
    from app.settings import Settings

    return Settings(**TEST_SETTINGS)


@pytest.fixture
def app(settings):
    from app.main import create_app
    from app.settings import get_settings

    application = create_app(settings)
    application.dependency_overrides[get_settings] = lambda: settings
    return application


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server():
    """The app served by uvicorn on a loopback port, for browser and concurrency tests."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LAYERSCOPE_ACCESS_LOG": "false", "LAYERSCOPE_MEMORY_BUDGET_MB": "1024"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the server did not start: " + process.stderr.read().decode()[-2000:]) from None
            time.sleep(0.2)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
