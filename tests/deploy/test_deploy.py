"""The Dockerfile, compose file and Kubernetes manifests: linted, validated, and consistent with the app."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml

from app.main import app
from app.settings import Settings, memory_ceiling_mb

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SETTINGS = {f"LAYERSCOPE_{name.upper()}" for name in Settings.model_fields}
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


def _docker_env() -> dict[str, str]:
    runtime = DOCKERFILE[DOCKERFILE.index("AS runtime") :]
    block = re.search(r"^ENV .*?(?=^\S)", runtime, flags=re.S | re.M).group(0)
    return dict(re.findall(r"(LAYERSCOPE_\w+)=(\S+)", block))


def _cmd() -> list[str]:
    return json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, flags=re.M).group(1))


def test_hadolint_has_no_warnings() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_dockerfile_shape() -> None:
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") >= 2, "multi-stage"
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, flags=re.M), "a non-root numeric user"
    assert "EXPOSE 8000" in DOCKERFILE and "/api/health" in DOCKERFILE
    copy_code = DOCKERFILE.index("COPY app ./app")
    assert DOCKERFILE.index("-r deps.txt") < copy_code, "dependencies before code"
    assert "COPY requirements.lock" in DOCKERFILE, "dependencies from the lock file"
    assert "pypi.org" not in DOCKERFILE and '--extra-index-url "${TORCH_CPU_INDEX}"' in DOCKERFILE, (
        "pip's default index is not named; the CPU wheel index is the only extra one"
    )
    runtime = DOCKERFILE[DOCKERFILE.index("AS runtime") :]
    assert "pip install" not in runtime and "apt-get" not in runtime, "no build tools in the final stage"
    assert "ARG TORCH_FLAVOR=cpu" in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "tests", ".git"} <= set(ignored)


def test_image_settings_are_ones_the_app_reads() -> None:
    env = _docker_env()
    assert env and set(env) <= SETTINGS, set(env) - SETTINGS
    parsed = Settings(**{k.removeprefix("LAYERSCOPE_").lower(): v for k, v in env.items()})
    assert (parsed.host, parsed.port, parsed.workers, parsed.engine_workers) == ("0.0.0.0", 8000, 1, 2)
    assert "/api/health" in app.openapi()["paths"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a process started from a worker thread is listed under it)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def test_the_image_start_command_serves_with_its_settings() -> None:
    command = _cmd()
    assert command[:3] == ["python3", "-m", "app.cli"] and command[3] == "serve"
    port = _free_port()
    env = {
        **os.environ,
        **_docker_env(),
        "LAYERSCOPE_HOST": "127.0.0.1",
        "LAYERSCOPE_PORT": str(port),
        "LAYERSCOPE_ACCESS_LOG": "true",
        "LAYERSCOPE_GRACEFUL_SHUTDOWN_S": "5",
    }
    process = subprocess.Popen(
        [sys.executable, *command[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    assert json.load(response)["status"] == "ok"
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/summary",
            data=b'{"architecture": "lenet5"}',
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
        engine = _descendants(process.pid)
        assert engine, "the summary ran in an engine process"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # a graceful stop
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in engine if Path(f"/proc/{pid}").exists()], "engine processes outlived the server"
        log = process.stdout.read()
        access = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts"')]
        assert any(entry["path"] == "/api/health" and entry["status"] == 200 for entry in access)
    finally:
        if process.poll() is None:
            process.kill()


def test_compose_file_is_valid() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    for name, service in compose["services"].items():
        assert set(service["environment"]) <= SETTINGS, name
        assert "/api/health" in " ".join(service["healthcheck"]["test"])
        assert service["restart"] == "unless-stopped"
        limit = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        if limit is not None:  # every process at its limit fits under the container's
            settings = Settings(**{k.removeprefix("LAYERSCOPE_").lower(): v for k, v in service["environment"].items()})
            assert int(limit.removesuffix("g")) * 1024 >= memory_ceiling_mb(settings), name


def _documents() -> list[dict]:
    docs = []
    for path in MANIFESTS:
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_manifests_are_valid_kubernetes(version: str) -> None:
    import kubernetes_validate

    for doc in _documents():
        kubernetes_validate.validate(doc, version, strict=True)


def _memory(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(value[:-2]) * units[value[-2:]]


def test_manifests_match_the_app_and_the_budget() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _documents()}
    config = docs[("ConfigMap", "layerscope")]["data"]
    assert set(config) <= SETTINGS
    kinds = {kind for kind, _ in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    for name in ("layerscope", "layerscope-gpu"):
        container = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        env = {**config, **{e["name"]: e["value"] for e in container.get("env", [])}}
        assert set(env) <= SETTINGS
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/api/health"
        settings = Settings(**{k.removeprefix("LAYERSCOPE_").lower(): v for k, v in env.items()})
        limits = container["resources"]["limits"]
        # Every process at its limit: the server and its cache, the engine processes, the real-run budget.
        assert _memory(limits["memory"]) >= memory_ceiling_mb(settings) * 2**20
        assert _memory(container["resources"]["requests"]["memory"]) <= _memory(limits["memory"])
    gpu = docs[("Deployment", "layerscope-gpu")]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    hpa = docs[("HorizontalPodAutoscaler", "layerscope")]["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and hpa["scaleTargetRef"]["name"] == "layerscope"


def test_lock_files_pin_every_dependency_within_pyproject() -> None:
    """requirements.lock pins the runtime dependencies, requirements-test.lock those and the test tools: every
    name pyproject.toml asks for, at a version its specifier accepts."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def pins(name: str) -> dict[str, Version]:
        lines = (ROOT / name).read_text().splitlines()
        pairs = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
        return {canonicalize_name(n.strip()): Version(v.strip()) for n, v in pairs}

    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    for wanted, locked in ((project["dependencies"], runtime), (project["optional-dependencies"]["test"], test)):
        for line in wanted:
            requirement = Requirement(line)
            version = locked[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    assert all(test[name] == version for name, version in runtime.items()), "the test lock extends the runtime one"
    assert str(runtime["torch"]).startswith("2.13.0")
